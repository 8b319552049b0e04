"""The comparison grid: cells on one split, the study's table, skip/resume on rerun, shards, failures, `report`, and
architecture names that cannot name a cell folder (`..`, `/abs/net`, `-rf`, a division slash) refused."""

from __future__ import annotations

import csv
import json
import math
import shutil
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
import yaml

from fashionattr import grid as grid_study
from fashionattr.config import TrainConfig
from fashionattr.errors import UserError
from fashionattr.schema import FASHIONAI
from fashionattr.synthetic.generate import generate_dataset
from helpers import refused, run_cli, tiny_root

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
ARCHS = ("test_resnet", "test_efficientnet")
COLUMNS = ["test_resnet", "test_efficientnet", "test_resnet (multitask)", "test_efficientnet (multitask)"]
ATTRIBUTE_ROWS = sorted(attribute.short_name for attribute in FASHIONAI)
QUICK = ["--img-size", "32", "--epochs", "1", "--max-steps-per-epoch", "2", "--workers", "0", "--batch-size", "8",
         "--no-progress"]  # fmt: skip


@pytest.fixture(scope="module", autouse=True)
def one_torch_thread() -> Iterator[None]:
    """Tiny models gain nothing from threads, and on a busy shared CPU two threads run 4x slower than one."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def data_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("grid-data")
    generate_dataset(root, per_class=6, size=48, workers=1, progress=False)
    return root


@pytest.fixture(scope="module")
def grid(data_root: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[str], str]:
    """Two tiny networks x 8 attributes per attribute, plus a multitask column group, trained once for the module."""
    grid_dir = tmp_path_factory.mktemp("grid") / "grid"
    argv = ["grid", str(data_root), "--archs", ",".join(ARCHS), "--layouts", "per-attribute,multitask",
            "--out", str(grid_dir), *QUICK]  # fmt: skip
    start = time.perf_counter()
    result = run_cli(*argv)
    print(f"grid of 18 cells took {time.perf_counter() - start:.1f} s")
    assert result.code == 0, result.output
    return grid_dir, argv, result.output


def cell_files(grid_dir: Path, name: str) -> dict[str, float]:
    """Modification time of every cell's summary.json: rewritten if and only if the cell ran."""
    return {str(path.parent.relative_to(grid_dir)): path.stat().st_mtime_ns for path in grid_dir.rglob(name)}


def test_grid_trains_every_cell_on_one_split(grid: tuple[Path, list[str], str]) -> None:
    grid_dir, _, output = grid
    split = grid_dir / "split.csv"
    assert split.is_file()
    summaries = sorted(str(p.parent.relative_to(grid_dir)) for p in grid_dir.rglob("summary.json"))
    expected = [f"per-attribute/{arch}/{a}" for arch in ARCHS for a in ATTRIBUTE_ROWS] + [
        f"multitask/{arch}" for arch in ARCHS
    ]
    assert summaries == sorted(expected)
    for name in expected:
        config = yaml.safe_load((grid_dir / name / "config.yaml").read_text(encoding="utf-8"))
        assert config["split_file"] == str(split)
    assert output.count(": training") == 18
    assert "| BP |" in output  # the table is printed at the end


def test_results_csv_is_the_study_table(grid: tuple[Path, list[str], str]) -> None:
    grid_dir, _, _ = grid
    with open(grid_dir / "results.csv", newline="", encoding="utf-8") as handle:
        rows = list(csv.reader(handle))
    assert rows[0] == ["attribute", *COLUMNS]
    assert [row[0] for row in rows[1:]] == [*ATTRIBUTE_ROWS, "BP", "mAP"]
    for row in rows[1:]:
        values = [float(cell) for cell in row[1:]]
        assert all(0.0 <= value <= 100.0 for value in values)
        assert all(cell == f"{float(cell):.1f}" for cell in row[1:])
    accuracy = [[float(cell) for cell in row[1:]] for row in rows[1:9]]
    bp = [float(cell) for cell in rows[9][1:]]
    for column, value in enumerate(bp):
        # BP is the mean of the unrounded accuracies, so it may differ from the mean of rounded ones by 0.05.
        assert math.isclose(value, sum(r[column] for r in accuracy) / 8, abs_tol=0.06)


def test_results_markdown_and_chart(grid: tuple[Path, list[str], str]) -> None:
    grid_dir, _, _ = grid
    text = (grid_dir / "results.md").read_text(encoding="utf-8")
    assert f"| attribute | {' | '.join(COLUMNS)} |" in text
    assert "fashionattr grid" in text and "--archs test_resnet,test_efficientnet" in text
    assert f"`{grid_dir / 'split.csv'}`" in text
    assert "Image size: 32 px; epochs: 1" in text
    assert "Finished cells: 18 of 18" in text
    assert (grid_dir / "results.png").read_bytes().startswith(PNG_SIGNATURE)
    assert not list(grid_dir.glob(".*.tmp"))


def test_report_rebuilds_identical_results(grid: tuple[Path, list[str], str]) -> None:
    grid_dir, _, _ = grid
    before = (grid_dir / "results.md").read_text(encoding="utf-8"), (grid_dir / "results.csv").read_text("utf-8")
    for name in ("results.md", "results.csv", "results.png"):
        (grid_dir / name).unlink()
    result = run_cli("report", str(grid_dir))
    assert result.code == 0, result.output
    assert (
        (grid_dir / "results.md").read_text(encoding="utf-8"),
        (grid_dir / "results.csv").read_text("utf-8"),
    ) == before
    assert (grid_dir / "results.png").is_file()


def test_report_rebuilds_one_run(grid: tuple[Path, list[str], str]) -> None:
    run_dir = grid[0] / "per-attribute" / "test_resnet" / "coat_length"
    (run_dir / "report.md").unlink()
    shutil.rmtree(run_dir / "plots")
    result = run_cli("report", str(run_dir))
    assert result.code == 0, result.output
    assert "# Run report: test_resnet (per-attribute)" in (run_dir / "report.md").read_text(encoding="utf-8")
    assert [path.name for path in (run_dir / "plots").glob("confusion_*.png")] == ["confusion_coat_length.png"]


def test_report_refuses_a_plain_folder(tmp_path: Path) -> None:
    result = run_cli("report", str(tmp_path))
    assert result.code == 2
    assert "neither a finished run" in result.output


def test_rerun_skips_finished_cells(grid: tuple[Path, list[str], str]) -> None:
    grid_dir, argv, _ = grid
    before = cell_files(grid_dir, "summary.json")
    start = time.perf_counter()
    result = run_cli(*argv)
    assert result.code == 0, result.output
    assert result.output.count("skipped (finished)") == 18
    assert ": training" not in result.output and "resuming" not in result.output
    assert cell_files(grid_dir, "summary.json") == before
    print(f"rerun of a finished grid took {time.perf_counter() - start:.1f} s")


def test_rerun_redoes_only_unfinished_cells(grid: tuple[Path, list[str], str]) -> None:
    """A cell without summary.json but with last.pt is resumed; a cell with nothing left is trained anew."""
    grid_dir, argv, _ = grid
    resumed, retrained = "per-attribute/test_resnet/neck_design", "per-attribute/test_efficientnet/coat_length"
    (grid_dir / resumed / "summary.json").unlink()
    shutil.rmtree(grid_dir / retrained)
    before = cell_files(grid_dir, "summary.json")
    result = run_cli(*argv)
    assert result.code == 0, result.output
    assert f"{resumed}: resuming" in result.output and f"{retrained}: training" in result.output
    assert result.output.count("skipped (finished)") == 16
    after = cell_files(grid_dir, "summary.json")
    assert set(after) == set(before) | {resumed, retrained}
    assert {name: after[name] for name in before} == before


def test_shards_cover_every_cell_once(tmp_path: Path) -> None:
    archs = ["resnet50", "resnet152", "se-resnet50"]
    everything = grid_study.plan_cells(tmp_path, archs, ["per-attribute", "multitask"], list(FASHIONAI))
    assert len(everything) == 3 * 8 + 3
    assert len({cell.directory for cell in everything}) == len(everything)
    for count in (1, 2, 5, 40):
        shards = [grid_study.plan_cells(tmp_path, archs, ["per-attribute", "multitask"], list(FASHIONAI), (k, count))
                  for k in range(1, count + 1)]  # fmt: skip
        names = [cell.name for shard in shards for cell in shard]
        assert sorted(names) == sorted(cell.name for cell in everything)
    first, second = (grid_study.plan_cells(tmp_path, archs, ["per-attribute"], list(FASHIONAI), (k, 2)) for k in (1, 2))
    assert [cell.name for cell in first][:2] == [
        "per-attribute/resnet50/skirt_length",
        "per-attribute/resnet50/collar_design",
    ]
    assert second[0].name == "per-attribute/resnet50/coat_length"


def test_cell_folders_and_columns(tmp_path: Path) -> None:
    cells = grid_study.plan_cells(tmp_path, ["se-resnet50"], ["per-attribute", "grouped"], list(FASHIONAI))
    assert cells[0].directory == tmp_path / "per-attribute" / "se-resnet50" / "skirt_length"
    assert cells[0].attributes == ("skirt_length_labels",) and cells[0].column == "se-resnet50"
    assert cells[-1].directory == tmp_path / "grouped" / "se-resnet50"
    assert cells[-1].attributes == tuple(FASHIONAI.names) and cells[-1].column == "se-resnet50 (grouped)"


@pytest.mark.parametrize("text", ["0/2", "3/2", "1/0", "a/b", "1", "1/2/3", "-1/2", ""])
def test_bad_shard_is_a_user_error(text: str) -> None:
    with pytest.raises(UserError, match="K/N"):
        grid_study.parse_shard(text)


def test_bad_shard_exits_2_before_training(data_root: Path, tmp_path: Path) -> None:
    result = run_cli("grid", str(data_root), "--shard", "3/2", "--out", str(tmp_path / "g"), *QUICK)
    assert result.code == 2 and "--shard must be K/N" in result.output
    assert not (tmp_path / "g").exists()


def test_unknown_arch_or_layout_exits_2(data_root: Path, tmp_path: Path) -> None:
    result = run_cli("grid", data_root, "--archs", "test_resnet,resnet5O", "--out", tmp_path, *QUICK)
    assert result.code == 2 and "resnet5O" in result.output
    result = run_cli("grid", str(data_root), "--layouts", "per-attribute,tower", "--out", str(tmp_path))
    assert result.code == 2 and "tower" in result.output


def test_failing_cell_is_recorded_and_the_grid_goes_on(
    data_root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """No training here: `run_cell` is replaced, so only the grid's bookkeeping runs."""
    ran: list[str] = []

    def fake_run_cell(cell: grid_study.Cell, base: TrainConfig, resume: bool) -> None:
        ran.append(cell.name)
        if cell.name.endswith("coat_length"):
            raise RuntimeError("out of memory")

    monkeypatch.setattr(grid_study, "run_cell", fake_run_cell)
    grid_dir = tmp_path / "grid"
    argv = ["grid", str(data_root), "--archs", "test_resnet", "--attributes", "coat_length,pant_length",
            "--out", str(grid_dir), *QUICK]  # fmt: skip
    result = run_cli(*argv)
    assert result.code == 1
    assert ran == ["per-attribute/test_resnet/coat_length", "per-attribute/test_resnet/pant_length"]
    assert "coat_length: FAILED: RuntimeError: out of memory" in result.output
    failures = json.loads((grid_dir / "failures.json").read_text(encoding="utf-8"))
    assert list(failures) == ["per-attribute/test_resnet/coat_length"]
    assert "out of memory" in failures["per-attribute/test_resnet/coat_length"]["error"]
    text = (grid_dir / "results.md").read_text(encoding="utf-8")
    assert "| coat_length | – |" in text and "| BP | – |" in text and "Failed cells: 1" in text
    assert (grid_dir / "results.csv").read_text(encoding="utf-8").splitlines()[1] == "coat_length,"

    monkeypatch.setattr(grid_study, "run_cell", lambda cell, base, resume: None)
    assert run_cli(*argv).code == 0
    assert json.loads((grid_dir / "failures.json").read_text(encoding="utf-8")) == {}


def test_grid_split_is_made_once_and_guarded(data_root: Path, tmp_path: Path) -> None:
    config = TrainConfig(data=str(data_root), split_seed=0)
    path = grid_study.resolve_split(config, tmp_path)
    assert path == str(tmp_path / "split.csv")
    assert grid_study.resolve_split(config, tmp_path) == path
    with pytest.raises(UserError, match="another split"):
        grid_study.resolve_split(TrainConfig(data=str(data_root), split_seed=1), tmp_path)
    given = TrainConfig(data=str(data_root), split_file=path)
    assert grid_study.resolve_split(given, tmp_path / "other") == path
    with pytest.raises(UserError, match="not found"):
        grid_study.resolve_split(TrainConfig(data=str(data_root), split_file=str(tmp_path / "nope.csv")), tmp_path)


@pytest.mark.parametrize("arch", ["/abs/net", "..", "a\\b", ".hidden", "-rf", "net\u2215x"])
def test_grid_refuses_architecture_names_that_cannot_name_a_cell_folder(synthetic_data, tmp_path, arch):
    root = tiny_root(tmp_path / "data", synthetic_data)
    grid = ["grid", str(root), f"--archs={arch}", "--out", str(tmp_path / "grid")]
    refused(grid, "cannot name a cell folder")
    assert not (tmp_path / "grid").exists()
