"""The web pages in a real headless Chromium: upload a photo and see every attribute and, on a click, where the
model looks for one; filter the catalogue by a tag; read the API docs with no internet.

Uses Debian's Chromium (`/usr/bin/chromium`) driven by Playwright for Python; Playwright's own browser download
is never used. Skipped only on a developer machine without Chromium; under CI (CI=true) a missing browser fails.
Set FASHIONATTR_SCREENSHOTS=DIR to keep screenshots of both views (docs/ holds the published ones).
"""

from __future__ import annotations

import os
import re
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from conftest import TrainedRun
from fashionattr.schema import FASHIONAI
from test_serve import Server, build_catalog, start_server

CHROMIUM_CANDIDATES = ("/usr/bin/chromium", "/usr/bin/chromium-browser")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]  # fmt: skip
TIMEOUT_MS = 30_000

pytestmark = pytest.mark.slow


def find_chromium() -> str | None:
    for candidate in (os.environ.get("CHROMIUM"), *CHROMIUM_CANDIDATES, shutil.which("chromium")):
        if candidate and Path(candidate).is_file():
            return candidate
    return None


def require(what: str) -> None:
    """Skip on a developer machine; fail under CI, where the browser test must run."""
    if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
        pytest.fail(f"{what}; CI must run the browser test (.ci/run installs chromium)")
    pytest.skip(f"{what}; install it (apt-get install chromium) to run the browser test")


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    executable = find_chromium()
    if executable is None:
        require("Chromium is not installed")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        require("the playwright Python package is not installed (pip install -e '.[dev]')")
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=executable, args=CHROMIUM_ARGS)
        yield launched
        launched.close()


@pytest.fixture(scope="module")
def served(trained_run: TrainedRun, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    workdir = tmp_path_factory.mktemp("browser")
    db = build_catalog(trained_run, workdir / "photos", workdir / "catalog.sqlite")
    with start_server(trained_run.run, workdir / "server.log", "--catalog", str(db)) as server:
        yield server


@pytest.fixture
def page(browser: Any) -> Iterator[Any]:
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    opened = context.new_page()
    opened.set_default_timeout(TIMEOUT_MS)
    errors: list[str] = []
    opened.on("pageerror", lambda error: errors.append(str(error)))
    yield opened
    context.close()
    assert errors == [], f"JavaScript errors on the page: {errors}"


def screenshot(page: Any, name: str) -> None:
    folder = os.environ.get("FASHIONATTR_SCREENSHOTS")
    if folder:
        Path(folder).mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(Path(folder) / name), full_page=True)


def test_uploading_a_photo_shows_every_attribute_with_its_probabilities(page, served, trained_run):
    photo = sorted((trained_run.data / "Images" / "sleeve_length_labels").glob("*.jpg"))[0]
    page.goto(served.url + "/")
    page.set_input_files("[data-testid=file-input]", str(photo))
    cards = page.locator("[data-testid=attribute]")
    cards.first.wait_for()
    assert cards.count() == len(FASHIONAI)
    for attribute in FASHIONAI:
        card = page.locator(f"[data-attribute={attribute.name}]")
        value = card.locator("[data-testid=value]").inner_text()
        assert any(value.startswith(cls) for cls in attribute.classes), (attribute.name, value)
        assert card.locator(".probs li").count() == attribute.num_classes
    assert photo.name in page.locator("#status").inner_text()
    page.locator("#similar .item").first.wait_for()  # the served model is the catalogue's: similar items show
    screenshot(page, "screenshot-predict.png")


def test_clicking_an_attribute_shows_where_the_model_looks(page, served, trained_run):
    photo = sorted((trained_run.data / "Images" / "coat_length_labels").glob("*.jpg"))[0]
    page.goto(served.url + "/")
    page.set_input_files("[data-testid=file-input]", str(photo))
    card = page.locator("[data-attribute=coat_length_labels]")
    card.wait_for()
    predicted = card.locator(".probs li.top .name").inner_text()
    card.locator("h3").click()  # the card, not one of its classes
    caption = page.locator("[data-testid=heatmap-caption]")
    caption.wait_for(state="visible")
    page.wait_for_function("document.getElementById('preview').src.startsWith('data:image/png')")
    assert "coat length" in caption.inner_text() and f"sees {predicted} (" in caption.inner_text()
    assert "explained" in (card.get_attribute("class") or "")
    screenshot(page, "screenshot-heatmap.png")
    card.locator(".probs li").nth(5).click()  # the evidence for another class: Knee Length
    page.wait_for_function("document.getElementById('heatmap-text').textContent.includes('Knee Length')")
    page.locator("#show-photo").click()
    page.wait_for_function("document.getElementById('preview').src.startsWith('blob:')")
    assert caption.is_hidden()


def test_the_catalogue_filters_by_a_clicked_tag_and_finds_similar_items(page, served):
    page.goto(served.url + "/catalog")
    items = page.locator("[data-testid=grid] [data-testid=item]")
    items.first.wait_for()
    assert items.count() == 9
    # Pick the value with the fewest matches above zero, so clicking it visibly narrows the grid (where it can).
    facet_buttons = page.locator("[data-testid=facet-value]")
    counts = [(int(b.locator(".count").inner_text()), i) for i, b in enumerate(facet_buttons.all())]
    count, index = min((c, i) for c, i in counts if c > 0)
    chosen = facet_buttons.nth(index)
    attribute, value = chosen.get_attribute("data-attribute"), chosen.get_attribute("data-value")
    chosen.click()

    page.locator("[data-testid=active-filters] .chip").first.wait_for()
    page.wait_for_function(
        "n => document.querySelectorAll('[data-testid=grid] [data-testid=item]').length === n", arg=count
    )
    assert re.match(rf"{count} images? match", page.locator("[data-testid=summary]").inner_text())
    assert f"filter={attribute}" in page.url.replace("%3D", "=")
    active = page.locator(f"[data-testid=facet-value][data-attribute={attribute}].active")
    assert active.get_attribute("data-value") == value
    screenshot(page, "screenshot-catalog.png")

    first_id = items.first.get_attribute("data-id")
    items.first.click()
    similar = page.locator("[data-testid=similar-view]")
    similar.wait_for(state="visible")
    query_card = similar.locator(".item.query")
    query_card.wait_for()
    assert query_card.get_attribute("data-id") == first_id
    assert similar.locator(".item").first.get_attribute("data-id") == first_id
    page.locator("#back").click()
    similar.wait_for(state="hidden")


def test_the_api_docs_render_without_internet(browser, served):
    """/docs (Swagger UI) and /redoc load their scripts from the server itself: with every request that leaves the
    server refused, both pages still render the API."""
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    outside: list[str] = []

    def only_the_server(route: Any) -> None:
        if route.request.url.startswith(served.url):
            route.continue_()
        else:
            outside.append(route.request.url)
            route.abort("internetdisconnected")

    context.route("**/*", only_the_server)
    page = context.new_page()
    page.set_default_timeout(TIMEOUT_MS)
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    try:
        page.goto(served.url + "/docs")
        page.locator(".swagger-ui .info .title").wait_for()
        assert "fashionattr" in page.locator(".swagger-ui .info .title").inner_text()
        page.locator(".opblock-summary-path[data-path='/v1/predict']").first.wait_for()
        assert page.locator(".opblock").count() >= 8  # every route of the API, catalogue included
        assert outside == [], outside  # Swagger UI asked for nothing beyond the server
        page.goto(served.url + "/redoc")
        page.get_by_text("/v1/catalog/search").first.wait_for(state="attached")
        assert "fashionattr" in page.locator("h1").first.inner_text()
    finally:
        context.close()
    # ReDoc's bundle links its "powered by" logo from its own site: a decoration, refused here without harm.
    assert all(url.endswith("logo-mini.svg") for url in outside) and errors == [], (outside, errors)
