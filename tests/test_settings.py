"""Typed settings: every wrong value, from the command line or a config file, is one clear line and exit 2.

Table-driven: each case names a setting, how it is given and a word the message must hold. Nothing may print a
traceback, and nothing is trained. Config files are read strictly (a repeated key or a YAML alias is refused by
line; `lr: 1e-3` is a number); numbers out of range are refused by every command (the service's deadlines and
connection cap included), and an output path that cannot be written is refused before any work.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from corpus import CONFIG_CASES as STRICT_CONFIG_CASES
from fashionattr.cli import main
from fashionattr.config import read_config_file, resolve_config
from fashionattr.errors import UserError
from helpers import refused, tiny_root

CONFIG_CASES = [
    ("epochs: ten", "epochs must be a whole number"),
    ('lr: "1e-3"', "lr must be a number"),
    ("lr: true", "lr must be a number"),
    ("epochs: 3.5", "epochs must be a whole number"),
    ("attributes: 5", "attributes must be a list"),
    ("attributes: [coat_length, 3]", "attributes must be a list of texts"),
    ("clip_grad: off", "clip_grad must be a number or empty"),
    ("batch_size: []", "batch_size must be a whole number"),
    ("pretrained: yes please", "pretrained must be true or false"),
    ("img_size: 8", "image size must be 16-4096 px"),
    ("val_fraction: 0", "val fraction must be between 0 and 1"),
    ("val_fraction: 1.5", "val fraction must be between 0 and 1"),
    ("drop_rate: 2", "drop rate must be in [0, 1)"),
    ("workers: -1", "workers must be 0 or more"),
    ("batch_size: 0", "batch size must be at least 1"),
    ("max_steps_per_epoch: 0", "max steps per epoch must be at least 1"),
    ("clip_grad: 0", "clip grad must be positive"),
    ("ema_decay: 1.5", "EMA decay must be in [0, 1)"),
    ("momentum: -0.1", "momentum must be in [0, 1)"),
    ("weight_decay: -1", "weight decay must be 0 or more"),
    ("warmup_epochs: -2", "warm-up epochs must be 0 or more"),
    ("lr: 0", "learning rate must be positive"),
    ("label_smoothing: 1", "label smoothing must be in [0, 1)"),
    ("maybe_weight: 1", "maybe weight must be in [0, 1)"),
    ("layout: two-headed", "layout must be one of per-attribute"),
    ("optimizer: lion", "optimizer must be one of adamw, sgd"),
    ("amp: fp8", "amp must be one of auto, off, bf16, fp16"),
    ("cache: maybe", "cache must be one of auto, build, off"),
    ("select_metric: f1", "select metric must be"),
    ("interpolation: cubic", "interpolation must be one of"),
    # Numbers bounded by what the code can do: infinities, a process per worker, seeds torch and NumPy accept.
    ("lr: 1e999", "lr must be finite"),
    ("weight_decay: 1e999", "weight_decay must be finite"),
    ("workers: 100000", "workers must be at most 256"),
    ("batch_size: 1000000000", "batch size must be at most 65536"),
    ("seed: 99999999999999999999", "seeds must be at most"),
    ("max_bad_fraction: 2", "max bad fraction must be in [0, 1]"),
    ("early_stop: 0", "early stop must be at least 1"),
    ("seed: -1", "seeds must be 0 or more"),
    ("attributes: []", "attributes must name at least one"),
    ("device: bogus", "unknown device 'bogus'"),
    ("device: cuda:x", "unknown device"),
    ("augment: wild", "unknown augmentation preset"),
    ("zoom: [0.9, 1.3]", "zoom out only"),
    ("shift: 3", "shift must be in 0-1"),
    ("color_jitter: 1", "colour jitter must be in [0, 1)"),
    ("recipe: fastest", "unknown recipe"),
    ("backbone_lr_scale: 0", "backbone lr scale must be positive"),
    ("epochs:\n  - 1", "epochs must be a whole number"),
    ("hat_size: 3", "unknown setting(s) hat_size"),
]


@pytest.mark.parametrize(("line", "words"), CONFIG_CASES, ids=[case[0] for case in CONFIG_CASES])
def test_a_wrong_value_in_a_config_file_is_one_clear_error(tmp_path: Path, line: str, words: str) -> None:
    config = tmp_path / "run.yaml"
    config.write_text(f"data: {tmp_path}\n{line}\n")
    with pytest.raises(UserError, match=None) as caught:
        resolve_config(config, {})
    message = str(caught.value)
    assert words in message and "\n" not in message, message


@pytest.mark.parametrize("case", STRICT_CONFIG_CASES, ids=[case.id for case in STRICT_CONFIG_CASES])
def test_config_files_are_read_strictly(synthetic_data, tmp_path, case):
    config = tmp_path / ("config.json" if case.id.startswith("json") else "config.yaml")
    config.write_text(case.text)
    if case.words is None:
        assert read_config_file(config) == {"lr": 0.001, "min_lr": 2.5e-7}
        return
    root = tiny_root(tmp_path / "data", synthetic_data)
    where = f"{config}:{case.line}: " if case.line else f"{config}: "
    refused(["train", str(root), "--config", str(config), "--out", str(tmp_path / "run")], where, case.words)


CLI_CASES = [
    (["--device", "bogus"], "unknown device"),
    (["--val-fraction", "0"], "val fraction must be between 0 and 1"),
    (["--drop-rate", "2"], "drop rate"),
    (["--workers", "-1"], "workers must be 0 or more"),
    (["--batch-size", "0"], "batch size must be at least 1"),
    (["--max-steps-per-epoch", "0"], "max steps per epoch must be at least 1"),
    (["--attributes", "hat_labels"], "--attributes"),
    (["--zoom", "0.9"], "MIN,MAX"),
    (["--recipe", "fastest"], "unknown recipe"),
]


@pytest.mark.parametrize(("extra", "words"), CLI_CASES, ids=[" ".join(case[0]) for case in CLI_CASES])
def test_a_wrong_option_is_one_clear_error_and_exit_2(synthetic_data, tmp_path, capsys, extra, words) -> None:
    out = tmp_path / "run"
    code = main(["train", str(synthetic_data), "--out", str(out), "--arch", "test_resnet", "--img-size", "32",
                 "--epochs", "1", "--no-progress", *extra])  # fmt: skip
    err = capsys.readouterr().err
    assert code == 2, err
    # One line: ours, or argparse's after its usage line (a number out of range is refused as it is parsed).
    last = err.strip().splitlines()[-1]
    assert words in last and "Traceback" not in err, err
    assert len(err.strip().splitlines()) == 1 or (err.startswith("usage:") and "error: argument" in last), err
    assert not (out / "last.pt").exists()


def test_cuda_on_a_machine_without_one_and_an_out_that_is_a_file(trained_run, tmp_path, capsys) -> None:
    import torch

    synthetic_data = trained_run.data
    if not torch.cuda.is_available():
        assert main(["train", str(synthetic_data), "--device", "cuda", "--out", str(tmp_path / "r")]) == 2
        assert "no CUDA GPU is available" in capsys.readouterr().err
        image = next((synthetic_data / "Images").rglob("*.jpg"))
        assert main(["predict", str(trained_run.run), str(image), "--device", "cuda:1"]) == 2
        assert "no CUDA GPU" in capsys.readouterr().err
    taken = tmp_path / "taken.txt"
    taken.write_text("a file the user keeps")
    assert main(["train", str(synthetic_data), "--out", str(taken), "--arch", "test_resnet", "--img-size", "32",
                 "--epochs", "1", "--no-progress", "--attributes", "coat_length"]) == 2  # fmt: skip
    assert "is not a folder" in capsys.readouterr().err and taken.read_text() == "a file the user keeps"


@pytest.mark.parametrize(
    "argv",
    [
        ["predict", "x", "y", "--workers", "-1"],
        ["predict", "x", "y", "--batch-size", "0"],
        ["predict", "x", "y", "--min-confidence", "-0.5"],
        ["predict", "x", "y", "--applicability-threshold", "1.5"],
        ["catalog", "index", "x", "d", "--catalog", "c.sqlite", "--applicability-threshold", "nan"],
        ["predict", "x", "y", "--top-k", "0"],
        ["serve", "x", "--port", "70000"],
        ["serve", "x", "--max-upload-mb", "nan"],
        ["serve", "x", "--batch-wait-ms", "-1"],
        ["submit", "x", "q.csv", "--out", "a.csv", "--workers", "-3"],
        ["evaluate", "x", "--batch-size", "-1"],
        ["catalog", "search", "--catalog", "c.sqlite", "--limit", "0"],
        ["split", "d", "--val-fraction", "1"],
        ["synth", "--out", "d", "--per-class", "0"],
        ["synth", "--out", "d", "--size", "4"],
        ["prepare", "d", "--size", "ten"],
        ["bench", "--rounds", "0"],
        ["export", "x", "--out", "m.onnx", "--opset", "3"],
        ["serve", "x", "--max-batch", "0"],
        ["serve", "x", "--header-timeout", "0"],
        ["serve", "x", "--header-timeout", "nan"],
        ["serve", "x", "--body-timeout", "-1"],
        ["serve", "x", "--max-connections", "0"],
    ],
    ids=lambda argv: " ".join(argv),
)
def test_out_of_range_numbers_are_refused_by_every_command(argv, capsys) -> None:
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "error: argument" in err and "Traceback" not in err
    assert argv[-2] in err  # the option is named


# Every option that names something to write, as (argv with OUT where the path goes, "file" or "folder").
OUTPUT_OPTIONS = [
    (["train", "DATA", "--out", "OUT"], "folder"),
    (["demo", "--out", "OUT"], "folder"),
    (["synth", "--out", "OUT"], "folder"),
    (["synth", "--out", "DATA", "--preview", "OUT"], "file"),
    (["import-folders", "DATA/Images", "OUT"], "folder"),
    (["split", "DATA", "--out", "OUT"], "file"),
    (["grid", "DATA", "--out", "OUT"], "folder"),
    (["evaluate", "RUN", "--out", "OUT"], "folder"),
    (["evaluate", "RUN", "--save-predictions", "OUT"], "file"),
    (["predict", "RUN", "DATA/Images", "--out", "OUT"], "file"),
    (["submit", "RUN", "DATA/Tests/question.csv", "--out", "OUT"], "file"),
    (["export", "RUN", "--out", "OUT"], "file"),
    (["explain", "RUN", "DATA/Images", "--out", "OUT"], "folder"),
    (["review", "RUN", "--out", "OUT"], "folder"),
    (["review", "RUN", "--out", "REVIEW", "--write-corrected", "OUT"], "file"),
]


@pytest.mark.parametrize("blocked", ["by a file above it", "by what stands at it"])
@pytest.mark.parametrize(("argv", "kind"), OUTPUT_OPTIONS, ids=[" ".join(case[0]) for case in OUTPUT_OPTIONS])
def test_an_output_path_that_cannot_be_written_is_refused_before_any_work(
    trained_run, tmp_path, capsys, argv: list[str], kind: str, blocked: str
) -> None:
    kept = tmp_path / "kept.txt"
    kept.write_text("a file the user keeps")
    if blocked == "by a file above it":
        out = kept / "sub" / ("out.csv" if kind == "file" else "folder")
    elif kind == "folder":
        out = kept  # a file where a folder should be
    else:
        out = tmp_path / "a-folder.csv"  # a folder where a file should be
        out.mkdir()
    places = {"DATA": str(trained_run.data), "RUN": str(trained_run.run), "REVIEW": str(tmp_path / "review"),
              "OUT": str(out)}  # fmt: skip
    resolved = [places.get(arg, arg.replace("DATA", str(trained_run.data))) for arg in argv]
    assert main(resolved) == 2
    err = capsys.readouterr().err
    assert "error: argument" in err.strip().splitlines()[-1] and "Traceback" not in err, err  # after argparse's usage
    assert kept.read_text() == "a file the user keeps"


def test_a_file_system_refusal_deep_inside_a_command_is_one_line_naming_the_path(tmp_path, capsys) -> None:
    """What no option check can see (here a file named Images inside the dataset folder) still ends as one line."""
    root = tmp_path / "data"
    root.mkdir()
    (root / "Images").write_text("not a folder")
    assert main(["synth", "--out", str(root), "--per-class", "1", "--size", "32", "--quiet"]) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1, err
    assert str(root / "Images") in err and "a file stands where a folder is needed" in err
