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
    RUN/report.md, plots/    the run's report and its figures (plots/reliability.png: the reliability diagram)
    RUN/eval-<name>/         what `fashionattr evaluate` writes
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from fashionattr.errors import CheckpointError


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
        return self.path / "scores.json"

    @property
    def summary(self) -> Path:
        return self.path / "summary.json"

    @property
    def skipped(self) -> Path:
        return self.path / "skipped_images.txt"

    @property
    def report(self) -> Path:
        return self.path / "report.md"

    @property
    def plots(self) -> Path:
        return self.path / "plots"

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


def find_runs(path: str | Path) -> list[RunDir]:
    """A run folder itself, or every run folder below `path` (a per-attribute run or a grid), in name order."""
    root = RunDir(path)
    if root.has_checkpoint:
        return [root]
    return [run for run in map(RunDir, sorted(p for p in Path(path).rglob("*") if p.is_dir())) if run.has_checkpoint]
