"""The seed study's comparison grid: architectures x attributes (and layouts), one run directory per cell.

Every cell trains with `fashionattr.training.train` on the same split, so the columns of the result table differ
only in the network. A grid folder is shared state: finished cells are skipped, interrupted ones resumed, and
`--shard K/N` lets N machines work through one folder. Results are always rebuilt from the run directories.

    GRID_DIR/grid.json                          what the grid is: data, archs, layouts, attributes, command
    GRID_DIR/split.csv                          the shared split, unless the dataset or --split-file brings one
    GRID_DIR/<layout>/<arch>/<attribute>/       a per-attribute cell (a run directory)
    GRID_DIR/<layout>/<arch>/                   a multitask or grouped cell
    GRID_DIR/results.md, results.csv, results.png, failures.json
"""

from __future__ import annotations

import csv
import io
import json
import math
import sys
import traceback
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from fashionattr.config import TrainConfig
from fashionattr.errors import UserError
from fashionattr.io import atomic_write_text, write_json
from fashionattr.metrics import NO_ANSWER_COUNTED
from fashionattr.models.layouts import LAYOUTS, layout_of
from fashionattr.names import child, name_problem
from fashionattr.parsing import read_document
from fashionattr.run_dir import FolderBusyError, RunDir, lock_folder
from fashionattr.schema import Attribute, Schema, SchemaError

MANIFEST_NAME = "grid.json"
SPLIT_NAME = "split.csv"
FAILURES_NAME = "failures.json"
RESULTS_MD, RESULTS_CSV, RESULTS_PNG = "results.md", "results.csv", "results.png"
MISSING_MD = "–"


@dataclass(frozen=True)
class Cell:
    """One run of the grid: an architecture trained in one layout on one attribute (per-attribute) or all of them."""

    layout: str
    arch: str
    attributes: tuple[str, ...]
    name: str
    directory: Path

    @property
    def column(self) -> str:
        """The result table's column: the study's network name, with the layout added for non-study layouts."""
        return self.arch if self.one_model_per_attribute else f"{self.arch} ({self.layout})"

    @property
    def one_model_per_attribute(self) -> bool:
        return layout_of(self.layout).one_model_per_attribute


@dataclass(frozen=True)
class GridSpec:
    """What a grid trains, saved as grid.json so results can be rebuilt from the folder alone (no dataset needed)."""

    data: str
    archs: list[str]
    layouts: list[str]
    schema: Schema
    command: str

    def to_dict(self) -> dict[str, Any]:
        return {"data": self.data, "archs": self.archs, "layouts": self.layouts, "schema": self.schema.to_dict(),
                "command": self.command}  # fmt: skip

    @classmethod
    def from_dict(cls, data: dict[str, Any], source: str) -> GridSpec:
        schema = Schema.from_dict(data["schema"], source=source)
        return cls(data=str(data["data"]), archs=list(data["archs"]), layouts=list(data["layouts"]), schema=schema,
                   command=str(data.get("command", "")))  # fmt: skip


def parse_list(text: str | Sequence[str], what: str) -> list[str]:
    """A comma-separated option as a list without blanks or repeats, in the order given."""
    items = text.split(",") if isinstance(text, str) else list(text)
    result = list(dict.fromkeys(item.strip() for item in items if item.strip()))
    if not result:
        raise UserError(f"no {what} given")
    return result


def check_layouts(layouts: Sequence[str]) -> None:
    unknown = [layout for layout in layouts if layout not in LAYOUTS]
    if unknown:
        raise UserError(f"unknown layout(s) {', '.join(unknown)} in --layouts; choose from {', '.join(LAYOUTS)}")


def check_archs(archs: Sequence[str]) -> None:
    """Fail before the first cell, not after hours of training, on a misspelt network name."""
    from fashionattr.models.backbones import timm_model_name

    for arch in archs:
        problem = name_problem(arch)
        if problem:
            raise UserError(f"architecture {arch!r} cannot name a cell folder ({problem}); give a plain timm or "
                            "study name")  # fmt: skip
        timm_model_name(arch)


def parse_shard(text: str | None) -> tuple[int, int] | None:
    """`K/N` (1-based) -> (K, N); None means the whole grid."""
    if text is None:
        return None
    parts = text.split("/")
    try:
        index, count = (int(part) for part in parts) if len(parts) == 2 else (0, 0)
    except ValueError:
        index, count = 0, 0
    if count < 1 or not 1 <= index <= count:
        raise UserError(f"--shard must be K/N with 1 <= K <= N, e.g. 1/4 for the first of four machines; got {text!r}")
    return index, count


def plan_cells(
    grid_dir: str | Path,
    archs: Sequence[str],
    layouts: Sequence[str],
    attributes: Sequence[Attribute],
    shard: tuple[int, int] | None = None,
) -> list[Cell]:
    """Every cell of the grid in a fixed order (layout, arch, attribute); with a shard, every N-th from K-1."""
    grid_dir = Path(grid_dir)
    cells: list[Cell] = []
    for layout in layouts:
        for arch in archs:
            # Every component is checked on its way into the path, so no cell folder can lie outside the grid's.
            folder = child(child(grid_dir, layout, "layout"), arch, "architecture")
            if layout_of(layout).one_model_per_attribute:
                for attribute in attributes:
                    directory = child(folder, attribute.short_name, "attribute")
                    name = f"{layout}/{arch}/{attribute.short_name}"
                    cells.append(Cell(layout, arch, (attribute.name,), name, directory))
            else:
                cells.append(Cell(layout, arch, tuple(a.name for a in attributes), f"{layout}/{arch}", folder))
    if shard is None:
        return cells
    index, count = shard
    return cells[index - 1 :: count]


def write_spec(grid_dir: Path, spec: GridSpec) -> None:
    write_json(grid_dir / MANIFEST_NAME, spec.to_dict())


def read_spec(grid_dir: Path) -> GridSpec:
    path = grid_dir / MANIFEST_NAME
    try:
        return GridSpec.from_dict(json.loads(path.read_text(encoding="utf-8")), source=str(path))
    except FileNotFoundError:
        raise UserError(f"{grid_dir}: not a grid folder (no {MANIFEST_NAME}); `fashionattr grid` makes one") from None
    except (json.JSONDecodeError, KeyError, TypeError, SchemaError) as exc:
        raise UserError(f"{path}: damaged grid description ({exc}); rerun `fashionattr grid` to rewrite it") from None


def resolve_split(config: TrainConfig, grid_dir: Path) -> str:
    """The one split every cell uses, by the split rule, with the grid folder as its own place (GRID_DIR/split.csv).

    A grid's own split is made once; a rerun (or another shard) with options giving a different split is refused,
    because cells on different splits would not be comparable.
    """
    from fashionattr.data.dataset import DatasetRoot
    from fashionattr.data.split import choose_split, write_split

    data_root = DatasetRoot.open(config.data)
    records = data_root.read_labels()
    choice = choose_split(records, config.split_file, data_root.default_split_path, grid_dir / SPLIT_NAME,
                          config.val_fraction, config.split_seed, data_root.path)  # fmt: skip
    if choice.is_new:
        write_split(choice.source, choice.assignment)
    return str(choice.source)


def cell_config(base: TrainConfig, cell: Cell) -> TrainConfig:
    """The base settings with this cell's network, layout and attributes; per-attribute `train` adds the folder."""
    out = cell.directory.parent if cell.one_model_per_attribute else cell.directory
    return replace(base, arch=cell.arch, layout=cell.layout, attributes=list(cell.attributes), out=str(out))


def cell_state(cell: Cell) -> str:
    """`finished` (summary.json written last), `partial` (a checkpoint to resume from) or `new`."""
    run = RunDir(cell.directory)
    if run.is_finished:
        return "finished"
    return "partial" if run.last.is_file() else "new"


def run_cell(cell: Cell, base: TrainConfig, resume: bool) -> None:
    """Train one cell with the one training loop there is."""
    from fashionattr.training import train

    train(cell_config(base, cell), resume=resume)


def record_failure(grid_dir: Path, cell: Cell, error: BaseException | None) -> None:
    """Keep failures.json current: add this cell's error, or drop its old entry once it succeeds."""
    path = grid_dir / FAILURES_NAME
    with lock_folder(grid_dir, "grid folder", wait=True):  # shards sharing the folder update the file in turn
        failures = _read_failures(grid_dir)
        failures.pop(cell.name, None)
        if error is not None:
            failures[cell.name] = {
                "error": f"{type(error).__name__}: {error}",
                "traceback": "".join(traceback.format_exception(error)),
            }
        if failures or path.exists():
            write_json(path, dict(sorted(failures.items())))


def _read_failures(grid_dir: Path) -> dict[str, Any]:
    try:
        data = json.loads((grid_dir / FAILURES_NAME).read_text(encoding="utf-8"))
    except (FileNotFoundError, json.JSONDecodeError):
        return {}
    return data if isinstance(data, dict) else {}


_STATE_WORDS = {"finished": "skipped (finished)", "partial": "resuming", "new": "training"}


@dataclass
class GridRun:
    """What one `run_grid` call left undone: cells that failed, and cells another process was training."""

    failed: list[str]
    busy: list[str]


def run_grid(grid_dir: Path, cells: Sequence[Cell], base: TrainConfig) -> GridRun:
    """Run the cells one after another; a failing cell is recorded and the rest still run.

    A cell another process is training (another shard, or a second grid over the same folder) is passed over: its
    run folder is locked, and that process will finish it.
    """
    outcome = GridRun([], [])
    for number, cell in enumerate(cells, start=1):
        state = cell_state(cell)
        print(f"[{number}/{len(cells)}] {cell.name}: {_STATE_WORDS[state]}", flush=True)
        if state == "finished":
            continue
        try:
            run_cell(cell, base, resume=state == "partial")
        except FolderBusyError as exc:
            print(f"[{number}/{len(cells)}] {cell.name}: passed over: {exc}", flush=True)
            outcome.busy.append(cell.name)
        except Exception as exc:  # one broken cell must not cost the rest of a long grid
            print(f"[{number}/{len(cells)}] {cell.name}: FAILED: {type(exc).__name__}: {exc}", file=sys.stderr)
            outcome.failed.append(cell.name)
            record_failure(grid_dir, cell, exc)
        else:
            record_failure(grid_dir, cell, None)
    return outcome


@dataclass
class GridResults:
    """The study's table: attribute rows (short names, alphabetical) x network columns, fractions per cell."""

    attributes: list[str]
    columns: list[str]
    accuracy: dict[str, dict[str, float]]
    average_precision: dict[str, dict[str, float]]
    notes: list[str]

    def summary(self, values: dict[str, dict[str, float]]) -> dict[str, float]:
        """Mean over attributes per column, only where every attribute's cell has finished (a partial mean misleads).

        A finished cell whose AP is undefined (nan: every answer on an `m` class) is left out of the mean, as
        `Scores.mean_average_precision` does; `notes` names it.
        """
        means = {}
        for column in self.columns:
            found = [values[a][column] for a in self.attributes if column in values[a]]
            defined = [value for value in found if not math.isnan(value)]
            if defined and len(found) == len(self.attributes):
                means[column] = sum(defined) / len(defined)
        return means

    def undefined(self, values: dict[str, dict[str, float]]) -> list[tuple[str, str]]:
        """(attribute, column) of every finished cell whose value is undefined."""
        return [(a, c) for a in self.attributes for c, value in values[a].items() if math.isnan(value)]

    def rows(self, missing: str) -> list[list[str]]:
        """Formatted rows in %, one decimal: the attributes, then BP and mAP; n/a for an undefined value."""
        rows = [[a, *(_percent(self.accuracy[a].get(c), missing) for c in self.columns)] for a in self.attributes]
        for label, values in (("BP", self.accuracy), ("mAP", self.average_precision)):
            means = self.summary(values)
            rows.append([label, *(_percent(means.get(c), missing) for c in self.columns)])
        return rows

    def chart_table(self) -> dict[str, dict[str, float]]:
        """Accuracy in % per attribute, plus the BP group, in the shape `plot_grid_bars` takes."""
        table = {a: {c: 100 * v for c, v in self.accuracy[a].items() if not math.isnan(v)} for a in self.attributes}
        table["BP"] = {c: 100 * v for c, v in self.summary(self.accuracy).items()}
        return table


def _percent(value: float | None, missing: str) -> str:
    if value is None:
        return missing
    return "n/a" if math.isnan(value) else f"{100 * value:.1f}"


def collect_results(grid_dir: str | Path) -> GridResults:
    """Read every finished cell's best-epoch scores (scores.json) into the table; unfinished cells stay empty."""
    grid_dir = Path(grid_dir)
    spec = read_spec(grid_dir)
    cells = plan_cells(grid_dir, spec.archs, spec.layouts, list(spec.schema))
    rows = sorted(attribute.short_name for attribute in spec.schema)
    columns = list(dict.fromkeys(cell.column for cell in cells))
    accuracy: dict[str, dict[str, float]] = {row: {} for row in rows}
    average_precision: dict[str, dict[str, float]] = {row: {} for row in rows}
    finished = [cell for cell in cells if cell_state(cell) == "finished"]
    for cell in finished:
        scores = _read_json(RunDir(cell.directory).scores)
        for name in cell.attributes:
            entry = scores.get("attributes", {}).get(name)
            if entry and entry.get("count"):
                short = spec.schema.attribute(name).short_name
                accuracy[short][cell.column] = _fraction(entry.get("accuracy"))
                average_precision[short][cell.column] = _fraction(entry.get("average_precision"))
    notes = grid_notes(grid_dir, spec, cells, finished)
    results = GridResults(rows, columns, accuracy, average_precision, notes)
    undefined = results.undefined(average_precision)
    if undefined:
        cells_named = ", ".join(f"{attribute} ({column})" for attribute, column in undefined)
        notes.append(f"AP n/a for {cells_named}: {NO_ANSWER_COUNTED}; that column's mAP is the mean over its other "
                     "attributes (accuracy and BP still count it)")  # fmt: skip
    return results


def _fraction(value: Any) -> float:
    return math.nan if value is None else float(value)


def _read_json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (FileNotFoundError, json.JSONDecodeError) as exc:
        raise UserError(f"{path}: cannot read the cell's scores ({exc}); rerun the grid to redo the cell") from None
    return data if isinstance(data, dict) else {}


def _read_config(path: Path) -> dict[str, Any]:
    """A cell's saved settings, or nothing if unreadable: the notes then say less, the table stays right."""
    try:
        data = read_document(path)
    except UserError:
        return {}
    return data if isinstance(data, dict) else {}


def grid_notes(grid_dir: Path, spec: GridSpec, cells: Sequence[Cell], finished: Sequence[Cell]) -> list[str]:
    """How the numbers were made, from what the finished cells actually used (their saved config.yaml)."""
    configs = [_read_config(RunDir(cell.directory).config) for cell in finished]

    def used(key: str) -> str:
        values = list(dict.fromkeys(str(config[key]) for config in configs if key in config))
        return ", ".join(values) if values else MISSING_MD

    notes = [
        f"Command: `{spec.command}`" if spec.command else "Command: not recorded",
        f"Split: `{used('split_file')}` (every cell trains and validates on it)",
        f"Image size: {used('img_size')} px; epochs: {used('epochs')}; layouts: {', '.join(spec.layouts)}",
        f"Finished cells: {len(finished)} of {len(cells)}",
    ]
    failures = _read_failures(grid_dir)
    if failures:
        notes.append(f"Failed cells: {len(failures)} ({', '.join(failures)}); see {FAILURES_NAME}")
    return notes


def results_markdown(results: GridResults) -> str:
    from fashionattr.render.tables import markdown_table

    lines = [
        "# Network comparison: validation accuracy (%)",
        "",
        "Best-epoch validation accuracy of each cell in %; BP is the mean accuracy over the attributes and mAP the "
        f"mean of the per-attribute average precision, both in %. {MISSING_MD} marks a cell that has not finished, "
        "n/a an AP no answer counted toward (see the notes).",
        "",
        markdown_table(results.rows(MISSING_MD), ["attribute", *results.columns]),
        f"![validation accuracy per attribute and network]({RESULTS_PNG})",
        "",
        *(f"- {note}" for note in results.notes),
        "",
    ]
    return "\n".join(lines)


def results_csv(results: GridResults) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["attribute", *results.columns])
    writer.writerows(results.rows(""))
    return buffer.getvalue()


def write_results(grid_dir: str | Path, results: GridResults) -> Path:
    """results.md, results.csv and the bar chart, each replaced atomically; returns the Markdown file."""
    from fashionattr.render.plots import plot_grid_bars

    grid_dir = Path(grid_dir)
    plot_grid_bars(results.chart_table(), grid_dir / RESULTS_PNG, "validation accuracy (%)")
    atomic_write_text(grid_dir / RESULTS_CSV, results_csv(results))
    path = grid_dir / RESULTS_MD
    atomic_write_text(path, results_markdown(results))
    return path
