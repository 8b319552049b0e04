"""Numbers a model file carries are bounded before use: a checkpoint or an ONNX file whose stored sizes,
normalisation, temperatures or weights are absurd, or whose metadata promises what its graph does not do, is refused
in one line naming the file (exit 2) by every command that loads it; a forward pass that yields NaN is an error,
never an answer."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import onnx
import pytest
import torch

from corpus import TAMPERED_CHECKPOINTS, TAMPERED_ONNX, TamperCase
from fashionattr.checkpoint import load_checkpoint, save_checkpoint
from fashionattr.cli import main
from fashionattr.errors import ModelOutputError
from fashionattr.inference import Predictor
from helpers import TrainedRun, cli_command


def first_image(run: TrainedRun) -> Path:
    return sorted((run.data / "Images" / "coat_length_labels").glob("*.jpg"))[0]


def tampered_checkpoint(run: TrainedRun, folder: Path, edit: Callable[[dict[str, Any]], None]) -> Path:
    payload = load_checkpoint(run.checkpoint)
    edit(payload)
    path = folder / "tampered.pt"
    save_checkpoint(path, payload)
    return path


@pytest.mark.parametrize("case", TAMPERED_CHECKPOINTS, ids=[case.id for case in TAMPERED_CHECKPOINTS])
def test_a_checkpoint_holding_absurd_numbers_is_refused_by_every_reader(trained_run, tmp_path, capsys,
                                                                       case: TamperCase):  # fmt: skip
    path = tampered_checkpoint(trained_run, tmp_path, case.edit)
    for argv in (["predict", str(path), str(first_image(trained_run)), "--workers", "0"],
                 ["export", str(path), "--out", str(tmp_path / "out.onnx")],
                 ["evaluate", str(path), "--data", str(trained_run.data), "--workers", "0", "--out",
                  str(tmp_path / "eval")]):  # fmt: skip
        assert main(argv) == 2, argv
        err = capsys.readouterr().err
        assert str(path) in err and case.words in err, (argv[0], err)
        assert len(err.strip().splitlines()) == 1, err
    assert not (tmp_path / "out.onnx").exists()


def test_serve_refuses_a_model_whose_stored_input_size_is_absurd(trained_run, tmp_path):
    path = tampered_checkpoint(trained_run, tmp_path, lambda p: p["preprocessing"].update(img_size=1_000_000_000))
    result = subprocess.run(cli_command("serve", path, "--port", "0"), capture_output=True, text=True, timeout=120)
    assert result.returncode == 2, result.stderr[-2000:]
    assert "image size" in result.stderr and str(path) in result.stderr and "Traceback" not in result.stderr


def test_a_forward_pass_that_yields_nan_is_an_error_not_an_answer(trained_run, tmp_path, capsys):
    """Finite weights can still give NaN (a negative batch-norm variance has no square root)."""

    def negative_variance(payload: dict[str, Any]) -> None:
        name = next(key for key in payload["model"] if key.endswith("running_var"))
        payload["model"][name] = -torch.ones_like(payload["model"][name])

    path = tampered_checkpoint(trained_run, tmp_path, negative_variance)
    with pytest.raises(ModelOutputError, match="NaN or infinite"):
        list(Predictor.from_path(path, device="cpu").predict_paths([first_image(trained_run)], workers=0))
    assert main(["predict", str(path), str(first_image(trained_run)), "--workers", "0"]) == 2
    out, err = capsys.readouterr()
    assert "NaN" not in out and "gives no answer" in err


@pytest.fixture(scope="module")
def exported(trained_run: TrainedRun, tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("onnx") / "model.onnx"
    assert main(["export", str(trained_run.run), "--out", str(path)]) == 0
    return path


def tampered_onnx(source: Path, folder: Path, edit: Callable[[dict[str, Any]], None]) -> Path:
    """The exported file with its fashionattr metadata edited (the graph untouched)."""
    model = onnx.load(str(source))
    metadata = {entry.key: json.loads(entry.value) for entry in model.metadata_props}
    edit(metadata)
    for entry in model.metadata_props:
        entry.value = json.dumps(metadata[entry.key])
    path = folder / "tampered.onnx"
    onnx.save(model, str(path))
    return path


@pytest.mark.parametrize("case", TAMPERED_ONNX, ids=[case.id for case in TAMPERED_ONNX])
def test_onnx_metadata_that_is_absurd_or_disagrees_with_the_graph_is_refused(trained_run, exported, tmp_path, capsys,
                                                                             case: TamperCase):  # fmt: skip
    path = tampered_onnx(exported, tmp_path, case.edit)
    assert main(["predict", str(path), str(first_image(trained_run)), "--workers", "0"]) == 2
    err = capsys.readouterr().err
    assert str(path) in err and case.words in err, err
    assert len(err.strip().splitlines()) == 1, err


def test_the_untampered_files_still_load(trained_run, exported, capsys):
    for model in (trained_run.checkpoint, exported):
        assert main(["predict", str(model), str(first_image(trained_run)), "--workers", "0"]) == 0
        assert "coat_length" in capsys.readouterr().out
