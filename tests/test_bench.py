"""`fashionattr bench` end to end at a tiny size, and the pieces it rests on. No timing is ever asserted here."""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from fashionattr.bench import BenchSettings, Variant, measure
from fashionattr.bench.context import BenchContext, BenchData
from fashionattr.bench.core import Figure, format_summary
from fashionattr.bench.gpu import gpu_figures
from fashionattr.cli import main
from fashionattr.data.images import open_image
from fashionattr.data.preprocessing import Preprocessing, letterbox
from fashionattr.schema import FASHIONAI

TINY = ["--arch", "test_resnet", "--img-size", "64", "--per-class", "2", "--rounds", "2", "--workers", "1"]


@pytest.mark.slow
def test_quick_bench_prints_ratios_and_writes_json(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    report = tmp_path / "bench.json"
    code = main(["bench", "--quick", "--only", "a,c", *TINY, "--out", str(report)])
    out = capsys.readouterr().out
    assert code == 0
    assert out.startswith("machine: cpu=")
    for key in ("[a]", "[a.decode]", "[c]", "summary"):
        assert key in out
    assert out.count("ratio ") >= 3
    data = json.loads(report.read_text(encoding="utf-8"))
    assert data["machine"]["torch"] == torch.__version__
    figures = {figure["key"]: figure for figure in data["figures"]}
    assert {"a", "a.decode", "a.draft", "c"} <= set(figures)
    for key in ("a", "c"):
        assert figures[key]["ratio"] > 0
        assert figures[key]["status"] in ("met", "missed")
    assert figures["a.decode"]["status"] == "info"


@pytest.mark.slow
def test_catalogue_figures_print_latencies_recall_and_throughput(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                                 postgres) -> None:  # fmt: skip
    report = tmp_path / "bench.json"
    argv = ["bench", "--quick", "--only", "catalog", *TINY, "--catalog-sizes", "1000", "--embedding-dim", "64",
            "--postgres", postgres.new_database(), "--reindex-files", "300", "--out", str(report)]  # fmt: skip
    assert main(argv) == 0
    out = capsys.readouterr().out
    for key in ("[similar.1k]", "[similar.p99]", "[similar.recall]", "[facets.sqlite.1k]", "[facets.postgresql.1k]",
                "[search.sqlite.1k]", "[search.postgresql.1k]", "[facets.p99]", "[search.p99]", "[reindex.300]",
                "[reindex.seconds]", "[service]", "summary"):  # fmt: skip
        assert key in out
    figures = {figure["key"]: figure for figure in json.loads(report.read_text(encoding="utf-8"))["figures"]}
    sides = ("exact p50", "exact p99", "approximate p50", "approximate p99")
    passes = ("approximate p50, back to back", "approximate p99, back to back")
    assert set(figures["similar.1k"]["values"]) == {*sides, *passes}
    assert figures["similar.p99"]["ratio"] == figures["similar.1k"]["values"]["approximate p99, back to back"]
    recall = figures["similar.recall"]
    assert 0 <= recall["ratio"] <= 1 and recall["status"] in ("met", "missed")
    assert figures["similar.p99"]["goal_kind"] == "at_most"
    for backend in ("sqlite", "postgresql"):
        facets = figures[f"facets.{backend}.1k"]
        assert facets["settings"]["tags"] == 8000 and facets["settings"]["answers_equal"] is True
        assert set(facets["values"]) == {"facet index p50", "facet index p99", "previous (tag rows) p50",
                                         "previous (tag rows) p99"}  # fmt: skip
    assert figures["facets.p99"]["goal_kind"] == "at_most" and figures["search.p99"]["ratio"] > 0
    assert figures["reindex.300"]["settings"]["unchanged"] == {"size and time": 300, "content hash (--rehash)": 300}
    if "page" in figures:  # no Chromium here
        assert figures["page"]["status"] == "skipped"
    else:
        assert figures["page.first_grid"]["ratio"] > 0 and figures["page.1k"]["settings"]["filter_changes"] == 18
    assert set(figures["service"]["values"]) == {"8 clients", "1 client"} and figures["service"]["ratio"] > 0


def test_unknown_figure_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["bench", "--only", "a,z"]) == 2
    assert "--only takes figures from" in capsys.readouterr().err


def test_measure_alternates_and_takes_the_median_of_per_round_ratios() -> None:
    calls: list[str] = []

    def variant(name: str, count: int) -> Variant:
        return Variant(name, lambda: calls.append(name) or count)

    measurement = measure([variant("a", 10), variant("b", 5)], rounds=3, warmup=1)
    assert calls == ["a", "b", "a", "b", "b", "a", "a", "b"]  # warm-up, then A B, B A, A B
    assert measurement.rounds == 3
    assert len(measurement.rates["a"]) == 3


def test_figure_status_follows_the_goal_direction() -> None:
    assert Figure("x", "faster", ratio=4.5, goal=4.0).status == "met"
    assert Figure("x", "faster", ratio=3.0, goal=4.0).status == "missed"
    assert Figure("m", "memory", ratio=1.02, goal=1.1, at_most=True).status == "met"
    assert Figure("i", "info", ratio=2.0).status == "info"
    summary = format_summary([Figure("x", "faster", ratio=4.5, goal=4.0), Figure("s", "gone", skipped="why")])
    assert "4.50x" in summary and ">= 4x" in summary and "skipped" in summary


def test_gpu_section_is_skipped_cleanly_on_cpu(tmp_path: Path) -> None:
    data = BenchData(tmp_path, FASHIONAI, [], "none", 0.0)
    context = BenchContext(BenchSettings(), data, torch.device("cpu"), tmp_path)
    (figure,) = gpu_figures(context)
    assert figure.status == "skipped"
    assert figure.skipped


def _jpeg(image: Image.Image, **options: object) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", quality=95, **options)
    return buffer.getvalue()


@pytest.mark.parametrize("kind", ["rgb", "cmyk", "exif-rotated"])
def test_draft_decoding_matches_full_decoding(kind: str) -> None:
    """`open_image(..., target_size=)` decodes JPEGs at reduced scale; the letterbox must not change visibly."""
    pixels = np.zeros((682, 512, 3), np.uint8)
    pixels[:200, :, 0] = 255  # red top, green bottom left: any wrong rotation or channel order shows
    pixels[400:, :256, 1] = 255
    image = Image.fromarray(pixels)
    if kind == "cmyk":
        data = _jpeg(image.convert("CMYK"))
    elif kind == "exif-rotated":
        exif = Image.Exif()
        exif[0x0112] = 6  # stored rotated; viewers turn it 90 degrees clockwise
        data = _jpeg(image.transpose(Image.Transpose.ROTATE_90), exif=exif.tobytes())
    else:
        data = _jpeg(image)
    drafted = open_image(data, target_size=224)
    assert drafted.mode == "RGB"
    assert max(drafted.size) >= 224
    preprocessing = Preprocessing(img_size=224)
    fast = letterbox(drafted, preprocessing).astype(int)
    assert np.abs(fast - letterbox(open_image(data), preprocessing).astype(int)).mean() < 1.0
    assert np.abs(fast - letterbox(image, preprocessing).astype(int)).mean() < 1.0
