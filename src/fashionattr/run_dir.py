"""The run folder: one owner for the name of every file a training run writes and for the rules that read them.

Training writes through it; evaluation, the grid, the report, the predictor and the demo read through it. Nobody
else spells `best.pt` or `summary.json`.

    RUN/config.yaml          the resolved settings (every value, the recipe and augmentation included)
    RUN/schema.json          the attributes and classes the run trained on
    RUN/split.csv            the train/val split the run trained with
    RUN/metrics.csv, .json   one row per epoch; RUN/tensorboard/ the same for TensorBoard
    RUN/best.pt, last.pt     the best epoch's weights; the last epoch's full training state (for --resume)
    RUN/scores.json          the best epoch's scores; RUN/summary.json written last, when the run is finished
    RUN/skipped_images.txt   images that could not be used, with the reason
    RUN/calibration.json     the temperature per attribute, ECE and scores before and after (also in best.pt)
    RUN/pointing_game.json   where the heatmaps point, scored on the part boxes (`fashionattr explain --pointing-game`)
    RUN/report.md, plots/    the run's report and its figures (plots/confusion_<attribute>.png, plots/reliability.png)
    RUN/<attribute>/         in a per-attribute run, each attribute's own run folder
    RUN/eval-<name>/         what `fashionattr evaluate` writes: scores.json, report.md, confusion_<attribute>.png
    RUN/.lock                held by the process writing the run (see `lock_folder`)
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from fashionattr.errors import CheckpointError, DiskFullError, UserError
from fashionattr.io import is_disk_full
from fashionattr.names import child, path_component


@dataclass(frozen=True)
class RunDir:
    """A training run's folder (it need not exist yet)."""

    path: Path

    def __init__(self, path: str | Path) -> None:
        object.__setattr__(self, "path", Path(path))

    def __str__(self) -> str:
        return str(self.path)

    @property
    def config(self) -> Path:
        return self.path / "config.yaml"

    @property
    def schema(self) -> Path:
        return self.path / "schema.json"

    @property
    def split(self) -> Path:
        return self.path / "split.csv"

    @property
    def metrics_csv(self) -> Path:
        return self.path / "metrics.csv"

    @property
    def metrics_json(self) -> Path:
        return self.path / "metrics.json"

    @property
    def tensorboard(self) -> Path:
        return self.path / "tensorboard"

    @property
    def best(self) -> Path:
        return self.path / "best.pt"

    @property
    def last(self) -> Path:
        return self.path / "last.pt"

    @property
    def scores(self) -> Path:
        return self.path / SCORES_NAME

    @property
    def summary(self) -> Path:
        return self.path / "summary.json"

    @property
    def skipped(self) -> Path:
        return self.path / "skipped_images.txt"

    @property
    def report(self) -> Path:
        return self.path / REPORT_NAME

    @property
    def plots(self) -> Path:
        return self.path / "plots"

    def attribute_run(self, short_name: str) -> RunDir:
        """The run folder of one attribute of a per-attribute run: RUN/<short name>, never anywhere else."""
        return RunDir(child(self.path, short_name, "attribute"))

    @property
    def calibration(self) -> Path:
        return self.path / "calibration.json"

    @property
    def reliability_plot(self) -> Path:
        return self.plots / "reliability.png"

    @property
    def pointing_game(self) -> Path:
        return self.path / "pointing_game.json"

    @property
    def pointing_examples(self) -> Path:
        """A contact sheet of heatmaps from the pointing game, hits and misses."""
        return self.plots / "pointing_game.png"

    def evaluation(self, name: str) -> Path:
        """The folder `fashionattr evaluate` writes a scoring of `name` (val, test, labels) into."""
        return self.path / f"eval-{name}"

    def lock(self) -> contextlib.AbstractContextManager[None]:
        """Hold the run folder for this process while it trains into it; a second writer is refused."""
        return lock_folder(self.path, "run folder")

    @property
    def is_finished(self) -> bool:
        """summary.json is written last, so its presence means the run ended normally."""
        return self.summary.is_file()

    @property
    def has_checkpoint(self) -> bool:
        return self.best.is_file() or self.last.is_file()

    @property
    def checkpoint(self) -> Path:
        """The weights to use: the best epoch's, else the last epoch's (a run cut short before a best was kept)."""
        for path in (self.best, self.last):
            if path.is_file():
                return path
        raise CheckpointError(
            f"{self.path}: no {self.best.name} or {self.last.name} in this folder; is it a finished run directory?"
        )


SCORES_NAME = "scores.json"
REPORT_NAME = "report.md"
"""Written by a run (the best epoch's scores, the run's report) and, under the same names, by an evaluation."""
TAGS_NAME = "tags.json"
TAG_PLOT_NAME = "tag-precision-recall.png"
"""Written by an evaluation with complete labels: the tags a catalogue shows, scored, and their curve."""

LOCK_NAME = ".lock"
"""In any folder a process writes as a whole (a run, a per-attribute run's attribute, a grid cell, an eval folder)."""


class FolderBusyError(UserError):
    """Another process is writing the folder; the message names the folder and that process."""


_held_here: dict[tuple[int, int], Path] = {}
"""The lock files this process holds, by (device, inode): a POSIX lock never refuses its own process."""
_held_guard = threading.Lock()


@contextlib.contextmanager
def lock_folder(folder: str | Path, what: str = "folder", wait: bool = False) -> Iterator[None]:
    """Hold `folder/.lock` while the block runs; refuse (:class:`FolderBusyError`) if another process holds it.

    Two `train` runs into one `--out` used to mix their files (best.pt of one seed, last.pt of the other). The lock
    is a POSIX record lock (`lockf`), which the kernel drops when the process ends, however it ends, so a killed run
    can be resumed at once; unlike `flock`, it is not inherited by forked data-loader workers, which may outlive a
    killed parent by seconds. `wait=True` waits for the holder instead of refusing (for short updates of a shared
    file). The lock file is left in place: removing it would let a third process lock a new file while a second
    still holds the old one.
    """
    folder = Path(folder)
    path = folder / LOCK_NAME
    with _held_guard:
        # Opening and closing the lock file would drop this process's lock on it: check before opening.
        held = _held_key(path)
        if held in _held_here:
            raise FolderBusyError(f"{folder}: this process is already writing this {what}")
        try:
            folder.mkdir(parents=True, exist_ok=True)
            fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC | getattr(os, "O_NOFOLLOW", 0), 0o644)
        except OSError as exc:
            if is_disk_full(exc):
                raise DiskFullError.writing(path, exc) from None
            raise UserError(f"{folder}: cannot write into this {what}: {exc.strerror or exc}") from None
    try:
        try:
            fcntl.lockf(fd, fcntl.LOCK_EX if wait else fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            holder = os.pread(fd, 4096, 0).decode("utf-8", "replace").strip()
            raise FolderBusyError(
                f"{folder}: another fashionattr process is writing this {what}"
                f"{f' ({holder})' if holder else ''}; wait for it to end, or choose another output folder"
            ) from None
        with contextlib.suppress(OSError):  # who holds it is only for the message a second writer shows
            os.ftruncate(fd, 0)
            os.pwrite(fd, f"pid {os.getpid()}, started {time.strftime('%Y-%m-%d %H:%M:%S')}".encode(), 0)
        key = _key(os.fstat(fd))
        with _held_guard:
            _held_here[key] = path
        try:
            yield
        finally:
            with _held_guard:
                _held_here.pop(key, None)
    finally:
        os.close(fd)


def _key(info: os.stat_result) -> tuple[int, int]:
    return info.st_dev, info.st_ino


def _held_key(path: Path) -> tuple[int, int] | None:
    try:
        return _key(os.stat(path))
    except OSError:
        return None


def confusion_plot_name(short_name: str) -> str:
    """An attribute's confusion-matrix plot, `confusion_<short name>.png`, in a run's plots/ or an eval folder."""
    return f"confusion_{path_component(short_name, 'attribute')}.png"


def find_runs(path: str | Path) -> list[RunDir]:
    """A run folder itself, or every run folder below `path` (a per-attribute run or a grid), in name order."""
    root = RunDir(path)
    if root.has_checkpoint:
        return [root]
    return [run for run in map(RunDir, sorted(p for p in Path(path).rglob("*") if p.is_dir())) if run.has_checkpoint]
