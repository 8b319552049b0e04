"""Figure `page`: the catalogue page in a real Chromium on the largest catalogue, as a person browses it.

`fashionattr serve` (the bench's model, random weights) serves the catalogue of the facets figure (or one of the
largest `--catalog-sizes` written the same way); headless Chromium (Debian's, driven by Playwright, as the browser
test runs it) opens the page and changes filters in turn: a sleeve length, then a collar, then the confidence
threshold up and down, then both filters off again. The page itself is timed: a mutation observer notes when the
facet sidebar and the grid of cards are redrawn, against the navigation start (first load) or the moment before
the change. The catalogue's image files do not exist (the items are synthetic): the cards' pictures answer 404 and
are not part of the time. The synthetic catalogue has no saved approximate index, so the service searches similar
items exactly (the page's filters never ask for them) rather than build one at start-up.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from fashionattr.bench.catalog import percentile_ms, size_label
from fashionattr.bench.context import BenchContext
from fashionattr.bench.core import Figure

FIRST_GRID_GOAL_MS = 1000.0
STARTUP_S = 900.0
"""Longest the service may take to start on the largest catalogue (it loads every embedding and tag row once)."""
ROUNDS = 3
TIMEOUT_MS = 120_000
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]  # fmt: skip
MARKS = """
window.__marks = {facets: 0, grid: 0};
new MutationObserver((records) => {
  for (const record of records) {
    const id = record.target.id;
    if (id === "facets" || id === "grid") window.__marks[id] = performance.now();
  }
}).observe(document, {childList: true, subtree: true});
"""
"""Installed before the page's own script: the moment the sidebar's and the grid's children are replaced."""


def find_chromium() -> str | None:
    for candidate in (os.environ.get("CHROMIUM"), "/usr/bin/chromium", "/usr/bin/chromium-browser",
                      shutil.which("chromium")):  # fmt: skip
        if candidate and Path(candidate).is_file():
            return candidate
    return None


def _changes() -> list[tuple[str, str]]:
    """The filter changes of one round, as (what, JavaScript that makes it)."""

    def click(attribute: str, value: str) -> str:
        return f'document.querySelector(\'[data-attribute="{attribute}"][data-value="{value}"]\').click()'

    def threshold(value: float) -> str:
        return (f"(() => {{ const s = document.getElementById('min-confidence'); s.value = '{value}'; "
                "s.dispatchEvent(new Event('change')); })()")  # fmt: skip

    sleeve, collar = ("sleeve_length_labels", "Long Sleeves"), ("collar_design_labels", "Shirt Collar")
    return [("filter sleeve length", click(*sleeve)), ("filter collar too", click(*collar)),
            ("confidence >= 0.85", threshold(0.85)), ("confidence >= 0", threshold(0.0)),
            ("collar filter off", click(*collar)), ("sleeve filter off", click(*sleeve))]  # fmt: skip


def page_figures(context: BenchContext) -> Iterator[Figure]:
    executable = find_chromium()
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        executable = None
    if executable is None:
        yield Figure(key="page", title="the catalogue page in Chromium",
                     skipped="needs Chromium (apt-get install chromium) and the playwright package")  # fmt: skip
        return
    from fashionattr.bench.facets import load_catalogue
    from fashionattr.bench.service import service_checkpoint
    from fashionattr.bench.service_process import serve_in_child

    count, db = context.shared.get("page_catalogue", (0, None))
    if db is None:
        count = max(context.settings.catalog_sizes)
        db = context.workdir / f"page-{count}.sqlite"
        load_catalogue(str(db), count, context.workdir)
    loads: dict[str, list[float]] = {"sidebar": [], "grid": []}
    changes: dict[str, list[float]] = {"sidebar": [], "grid": []}
    with (
        serve_in_child(service_checkpoint(context), context.workdir / "page-service.log", "--catalog", str(db),
                       "--vector-index", "exact", device=str(context.device), timeout_s=STARTUP_S) as service,
        sync_playwright() as playwright,
    ):  # fmt: skip
        browser = playwright.chromium.launch(executable_path=executable, args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1280, "height": 900})
        page.set_default_timeout(TIMEOUT_MS)
        page.add_init_script(MARKS)
        for round_number in range(ROUNDS + 1):  # the first load warms the server's caches and is not counted
            page.goto(f"{service.url}/catalog")
            page.wait_for_function("window.__marks.facets > 0 && window.__marks.grid > 0")
            marks = page.evaluate("window.__marks")
            if round_number:
                loads["sidebar"].append(marks["facets"] / 1000)
                loads["grid"].append(marks["grid"] / 1000)
            for _, action in _changes():
                began = page.evaluate("performance.now()")
                page.evaluate(action)
                page.wait_for_function(f"window.__marks.facets > {began} && window.__marks.grid > {began}")
                marks = page.evaluate("window.__marks")
                if round_number:
                    changes["sidebar"].append((marks["facets"] - began) / 1000)
                    changes["grid"].append((marks["grid"] - began) / 1000)
        browser.close()
    settings = {"items": count, "page_loads": len(loads["grid"]), "filter_changes": len(changes["grid"]),
                "changes": [what for what, _ in _changes()], "chromium": executable}  # fmt: skip
    yield Figure(
        key=f"page.{size_label(count)}", title=f"the catalogue page in Chromium at {count:,} items", unit="ms",
        values={"first load: facet sidebar p50": percentile_ms(loads["sidebar"], 50),
                "first load: first grid p50": percentile_ms(loads["grid"], 50),
                "first load: first grid, slowest": 1000 * max(loads["grid"]),
                "filter change: sidebar p50": percentile_ms(changes["sidebar"], 50),
                "filter change: sidebar p99": percentile_ms(changes["sidebar"], 99),
                "filter change: grid p50": percentile_ms(changes["grid"], 50),
                "filter change: grid p99": percentile_ms(changes["grid"], 99)},
        settings=settings,
        notes=["first load: from the navigation's start to the sidebar's and the grid's first drawing; a filter "
               "change: from the moment before it to the redrawn sidebar and grid (the page asks for the facets, "
               "then for the first page of 48 cards)", "the item images do not exist (synthetic items): their "
               "404s are not waited for"],
    )  # fmt: skip
    yield Figure(
        key="page.first_grid", title=f"the catalogue page's first grid in Chromium at {count:,} items, slowest load",
        ratio=1000 * max(loads["grid"]), goal=FIRST_GRID_GOAL_MS, at_most=True, ratio_unit=" ms", unit="ms",
        settings={"items": count, "p50_ms": round(float(np.median(loads["grid"])) * 1000, 1)},
    )  # fmt: skip
