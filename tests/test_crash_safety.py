"""Faults injected into training and into model files: the run survives or stops cleanly, and says why.

- A NaN or infinite loss (or weight) stops the run with exit 1 and keeps the last good checkpoint.
- SIGKILL at seeded random moments: `--resume` ends with exactly the weights of an uninterrupted run, also when the
  kill came before the first checkpoint; every checkpoint left behind is whole (atomic writes).
- A grid killed in the middle of a cell resumes that cell on its rerun.
- A truncated, byte-flipped, empty or foreign checkpoint is a clear error (exit 2) from predict, evaluate and serve.
- A checkpoint carrying a malicious pickle is refused without running it.
"""

from __future__ import annotations

import json
import math
import os
import random
import shutil
import signal
import subprocess
import time
from pathlib import Path

import pytest
import torch

import fashionattr.training.loop as loop
import fashionattr.training.run as training
from fashionattr.checkpoint import FORMAT, FORMAT_VERSION, load_checkpoint
from fashionattr.cli import main
from fashionattr.errors import CheckpointError, UserError
from fashionattr.synthetic.generate import generate_dataset
from helpers import TrainedRun, assert_no_traceback, cli_command

ATTRIBUTES = "coat_length,sleeve_length"
EPOCHS = 3
TRAIN_OPTIONS = ["--arch", "test_resnet", "--attributes", ATTRIBUTES, "--img-size", "32", "--epochs", str(EPOCHS),
                 "--batch-size", "16", "--workers", "0", "--deterministic", "--cache", "off"]  # fmt: skip
KILL_SEED = 20240601
KILL_TRIALS = 3
RUN_TIMEOUT_S = 180


@pytest.fixture(scope="module")
def dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("crash") / "data"
    generate_dataset(root, per_class=5, size=48, test_fraction=0.0, workers=1, progress=False)
    return root


# --- NaN and infinity -------------------------------------------------------------------------------------------


@pytest.mark.parametrize("fault", ["nan-loss", "inf-loss", "nan-weight", "nan-weight-after-last-step"])
def test_a_diverging_run_stops_with_exit_1_and_keeps_the_last_good_checkpoint(dataset, tmp_path, monkeypatch,
                                                                             capsys, fault):  # fmt: skip
    """Epoch 1 trains normally; in epoch 2 the loss (or a weight) turns NaN/inf."""
    epochs: list[int] = []
    real_epoch, real_loss = training.train_one_epoch, loop.masked_cross_entropy

    def poison(model: torch.nn.Module) -> None:
        with torch.no_grad():
            next(model.parameters()).view(-1)[0] = math.nan

    def train_one_epoch(model, *args, **kwargs):
        epochs.append(len(epochs) + 1)
        if epochs[-1] == 2 and fault == "nan-weight":
            poison(model)
        stats = real_epoch(model, *args, **kwargs)
        if epochs[-1] == 2 and fault == "nan-weight-after-last-step":
            poison(model)  # the loss of every step was finite; only the weights are broken
        return stats

    def masked_cross_entropy(*args, **kwargs):
        loss, extra = real_loss(*args, **kwargs)
        if epochs[-1] == 2 and fault.endswith("-loss"):
            loss = loss * (math.nan if fault == "nan-loss" else math.inf)
        return loss, extra

    monkeypatch.setattr(training, "train_one_epoch", train_one_epoch)
    monkeypatch.setattr(loop, "masked_cross_entropy", masked_cross_entropy)
    out = tmp_path / "run"
    code = main(["train", str(dataset), "--out", str(out), "--no-progress", *TRAIN_OPTIONS])
    err = capsys.readouterr().err
    assert code == 1, err
    assert_no_traceback(err)
    assert "training diverged in epoch 2" in err and f"{out / 'last.pt'} (epoch 1), is kept" in err
    last = load_checkpoint(out / "last.pt")
    assert last["epoch"] == 0 and [row["epoch"] for row in last["history"]] == [1]
    for name, value in {**last["model"], **last["train_model"]}.items():
        assert not value.is_floating_point() or torch.isfinite(value).all(), name
    assert (out / "best.pt").is_file() and not (out / "summary.json").exists()


# --- SIGKILL at random moments ----------------------------------------------------------------------------------


def train_command(data: Path, out: Path, *extra: str) -> list[str]:
    return cli_command("train", data, "--out", out, "--no-progress", *TRAIN_OPTIONS, *extra)


def run_to_end(command: list[str]) -> subprocess.CompletedProcess:
    result = subprocess.run(command, capture_output=True, text=True, timeout=RUN_TIMEOUT_S)
    assert result.returncode == 0, result.stderr[-3000:]
    assert_no_traceback(result.stderr)
    return result


def wait_for(path: Path, process: subprocess.Popen, timeout: float = RUN_TIMEOUT_S) -> float:
    """Seconds until `path` exists (the process must still be running)."""
    start = time.monotonic()
    while not path.exists():
        assert process.poll() is None, f"the process ended before {path} appeared"
        assert time.monotonic() - start < timeout, f"{path} did not appear"
        time.sleep(0.01)
    return time.monotonic() - start


def kill_after(command: list[str], delay: float, started: Path | None = None) -> str:
    """Start `command`, SIGKILL it `delay` seconds after `started` appears (or after launch); what became of it."""
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        if started is not None:
            wait_for(started, process)
        time.sleep(delay)
    finally:
        ended_early = process.poll() is not None
        process.send_signal(signal.SIGKILL)
        process.wait(timeout=30)
    return "had finished" if ended_early else "killed"


def last_epoch(out: Path) -> int | None:
    """The epoch of last.pt (1-based), None without one; loading it proves the file is whole."""
    if not (out / "last.pt").exists():
        return None
    return load_checkpoint(out / "last.pt")["epoch"] + 1


def assert_same_weights(reference: Path, resumed: Path) -> None:
    a, b = load_checkpoint(reference / "last.pt"), load_checkpoint(resumed / "last.pt")
    assert b["epoch"] == a["epoch"] == 2 and [row["epoch"] for row in b["history"]] == [1, 2, 3]
    assert a["train_model"].keys() == b["train_model"].keys()
    for key, value in a["train_model"].items():
        assert torch.equal(value, b["train_model"][key]), key


@pytest.mark.slow
def test_sigkill_at_random_moments_then_resume_gives_identical_weights(dataset, tmp_path):
    """One run killed again and again: first before its first checkpoint, then at random moments of its epochs.

    Each restart is `--resume` (from scratch when no checkpoint was left); the last one runs to the end and must
    hold exactly the weights of an uninterrupted run. config.yaml is (re)written as the epoch loop starts, so
    removing it before a restart shows when that restart's training begins.
    """
    reference = tmp_path / "reference"
    process = subprocess.Popen(train_command(dataset, reference), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    to_loop = wait_for(reference / "config.yaml", process)
    loop = wait_for(reference / "summary.json", process)  # the epochs and their checkpoints
    _, stderr = process.communicate(timeout=RUN_TIMEOUT_S)
    assert process.returncode == 0, stderr.decode()[-3000:]

    rng = random.Random(KILL_SEED)
    out = tmp_path / "killed"
    state = kill_after(train_command(dataset, out), rng.uniform(0.2, 0.8) * to_loop)
    outcomes = [f"before the first checkpoint: {state}, last.pt epoch {last_epoch(out)}"]
    assert last_epoch(out) is None, "the early kill came after the first checkpoint; lower its delay"
    for _ in range(KILL_TRIALS):
        (out / "config.yaml").unlink(missing_ok=True)
        delay = rng.uniform(0.0, loop * (EPOCHS - (last_epoch(out) or 0)) / EPOCHS)  # within the epochs left
        state = kill_after(train_command(dataset, out, "--resume"), delay, started=out / "config.yaml")
        outcomes.append(f"{delay:.2f} s into the epochs: {state}, last.pt epoch {last_epoch(out)}")
    run_to_end(train_command(dataset, out, "--resume"))
    assert_same_weights(reference, out)
    print(f"epochs took {loop:.2f} s after {to_loop:.2f} s of start-up; " + "; ".join(outcomes))


# --- the grid survives a killed cell ----------------------------------------------------------------------------


@pytest.mark.slow
def test_a_grid_killed_mid_cell_resumes_that_cell_on_rerun(dataset, tmp_path):
    grid = tmp_path / "grid"
    options = [option for option in TRAIN_OPTIONS if option not in ("--arch", "test_resnet")]
    command = cli_command("grid", dataset, "--archs", "test_resnet", "--layouts", "multitask", "--out", grid,
                          "--no-progress", *options)  # fmt: skip
    cell = grid / "multitask" / "test_resnet"
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_for(cell / "last.pt", process)  # the cell has finished its first epoch
    finally:
        process.send_signal(signal.SIGKILL)
        process.wait(timeout=30)
    assert not (cell / "summary.json").exists()

    result = subprocess.run(command, capture_output=True, text=True, timeout=RUN_TIMEOUT_S)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "multitask/test_resnet: resuming" in result.stdout
    summary = json.loads((cell / "summary.json").read_text())
    assert summary["epochs_run"] == 3
    assert (grid / "results.csv").is_file() and not (grid / "failures.json").exists()


# --- damaged checkpoints ----------------------------------------------------------------------------------------


def damage(path: Path, how: str) -> None:
    data = path.read_bytes()
    if how == "half":
        path.write_bytes(data[: len(data) // 2])
    elif how == "flipped":
        middle = bytearray(data)
        for offset in range(len(data) // 2, len(data) // 2 + 32):
            middle[offset] ^= 0xFF
        path.write_bytes(bytes(middle))
    elif how == "empty":
        path.write_bytes(b"")
    else:
        path.write_text("this is not a checkpoint\n")


@pytest.mark.parametrize("how", ["half", "flipped", "empty", "text"])
def test_a_damaged_checkpoint_is_a_clear_error_everywhere(trained_run: TrainedRun, tmp_path, capsys, how):
    run = tmp_path / "run"
    shutil.copytree(trained_run.run, run)
    damage(run / "best.pt", how)
    with pytest.raises(CheckpointError, match=str(run / "best.pt")):
        load_checkpoint(run)
    photo = next((trained_run.data / "Images" / "coat_length_labels").glob("*.jpg"))
    for argv in (["predict", str(run), str(photo), "--workers", "0"], ["evaluate", str(run), "--workers", "0"],
                 ["serve", str(run), "--port", "0"]):  # fmt: skip
        assert main(argv) == 2, argv
        err = capsys.readouterr().err
        assert str(run / "best.pt") in err and ("damaged" in err or "not a readable checkpoint" in err), err


def test_a_damaged_checkpoint_shows_no_traceback_in_a_subprocess(trained_run: TrainedRun, tmp_path):
    checkpoint = tmp_path / "best.pt"
    shutil.copy(trained_run.checkpoint, checkpoint)
    damage(checkpoint, "flipped")
    photo = next((trained_run.data / "Images" / "coat_length_labels").glob("*.jpg"))
    result = subprocess.run(cli_command("predict", checkpoint, photo), capture_output=True, text=True,
                            timeout=RUN_TIMEOUT_S)  # fmt: skip
    assert result.returncode == 2
    assert_no_traceback(result.stderr)
    assert f"{checkpoint}: the checkpoint is damaged" in result.stderr


# --- malicious model files --------------------------------------------------------------------------------------


class RunsACommand:
    """Unpickling this calls os.system: the classic way a pickle executes code on load."""

    def __reduce__(self):
        return (os.system, ("touch PWNED",))


def malicious_checkpoint(path: Path, trained_run: TrainedRun) -> Path:
    """A real checkpoint's payload, marker and all, with one extra entry that runs a command when unpickled."""
    payload = torch.load(trained_run.checkpoint, weights_only=True)
    assert payload["format"] == FORMAT and payload["format_version"] == FORMAT_VERSION
    torch.save({**payload, "notes": RunsACommand()}, path)
    return path


def test_a_malicious_pickle_is_refused_and_never_run(trained_run: TrainedRun, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    evil = malicious_checkpoint(tmp_path / "evil.pt", trained_run)
    with pytest.raises(CheckpointError, match="refused") as info:
        load_checkpoint(evil)
    assert "system" in str(info.value) and str(evil) in str(info.value)
    photo = next((trained_run.data / "Images" / "coat_length_labels").glob("*.jpg"))
    assert main(["predict", str(evil), str(photo), "--workers", "0"]) == 2
    assert "refused" in capsys.readouterr().err
    from fashionattr.models.backbones import read_state_dict

    with pytest.raises(UserError):  # the same holds for --weights files
        read_state_dict(shutil.copy(evil, tmp_path / "evil.pth"))
    assert not (tmp_path / "PWNED").exists()
    # The file is live: an unsafe load does run the command, so the refusals above are what stopped it.
    torch.load(evil, weights_only=False)
    assert (tmp_path / "PWNED").exists()
