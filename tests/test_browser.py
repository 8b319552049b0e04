"""The web pages in a real headless Chromium: upload a photo and see every attribute and, on a click, where the
model looks for one; the predict page on a phone; no heatmaps offered for an ONNX model; filter the catalogue by a
tag, open an item, export the selection; a catalogue of close-ups and full figures shows only tags that apply; work
through the review queue; read the API docs with no internet.

Uses Debian's Chromium (`/usr/bin/chromium`) driven by Playwright for Python; Playwright's own browser download
is never used. Skipped only on a developer machine without Chromium; under CI (CI=true) a missing browser fails.
Set FASHIONATTR_SCREENSHOTS=DIR to keep screenshots of both views (docs/ holds the published ones).
"""

from __future__ import annotations

import csv
import io
import json
import os
import re
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from fashionattr.bench.service_process import ServiceProcess as Server
from fashionattr.bench.service_process import serve_in_child as start_server
from fashionattr.catalog import index_catalog
from fashionattr.schema import FASHIONAI
from helpers import TrainedRun, catalogue_predictor, make_photo_folder, make_review_folder

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


CLOSE_UPS = ("collar_design_labels", "neckline_design_labels")
"""Upper-body close-ups added to the catalogue beside full figures: no hem of a skirt, coat or trousers shows."""
LENGTHS = ("skirt_length_labels", "coat_length_labels", "pant_length_labels")


def mixed_catalog(trained_run: TrainedRun, workdir: Path) -> Path:
    """A catalogue of full figures (coat, sleeve and pant length photos) and close-ups (collar, neckline)."""
    import shutil

    photos = make_photo_folder(trained_run.data, workdir / "photos")
    for attribute in CLOSE_UPS:
        target = photos / attribute.removesuffix("_labels")
        target.mkdir()
        for source in sorted((trained_run.data / "Images" / attribute).glob("*.jpg"))[:3]:
            shutil.copy(source, target / source.name)
    db = workdir / "catalog.sqlite"
    predictor = catalogue_predictor(trained_run.run)
    index_catalog(db, photos, trained_run.run, predictor=predictor, batch_size=8, workers=0, progress=False)
    return db


@pytest.fixture(scope="module")
def dataset_copy(trained_run: TrainedRun, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The dataset, copied: the review queue writes its corrections file into the copy's Annotations/."""
    import shutil

    copy = tmp_path_factory.mktemp("browser-data") / "data"
    shutil.copytree(trained_run.data, copy)
    return copy


@pytest.fixture(scope="module")
def served(trained_run: TrainedRun, dataset_copy: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    workdir = tmp_path_factory.mktemp("browser")
    db = mixed_catalog(trained_run, workdir)
    review = make_review_folder(dataset_copy, workdir / "review", candidates=5)
    with start_server(trained_run.run, workdir / "server.log", "--catalog", str(db), "--review", str(review)) as server:
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
        card = page.locator(f"[data-testid=attribute][data-attribute={attribute.name}]")
        value = card.locator("[data-testid=value]").inner_text()
        if card.get_attribute("data-applies") == "false":
            assert value.startswith("n/a"), (attribute.name, value)  # never a value where the part is not shown
        else:
            assert any(value.startswith(cls) for cls in attribute.classes), (attribute.name, value)
        assert card.locator(".probs li").count() == attribute.num_classes
    assert photo.name in page.locator("#status").inner_text()
    page.locator("#similar .item").first.wait_for()  # the served model is the catalogue's: similar items show
    screenshot(page, "screenshot-predict.png")


def test_clicking_an_attribute_shows_where_the_model_looks(page, served, trained_run):
    photo = sorted((trained_run.data / "Images" / "coat_length_labels").glob("*.jpg"))[0]
    page.goto(served.url + "/")
    page.set_input_files("[data-testid=file-input]", str(photo))
    card = page.locator("[data-testid=attribute][data-attribute=coat_length_labels]")
    card.wait_for()
    predicted = card.locator(".probs li.top .name").inner_text()
    card.locator("h3").click()  # the card, not one of its classes
    caption = page.locator("[data-testid=heatmap-caption]")
    caption.wait_for(state="visible")
    page.wait_for_function("document.getElementById('preview').src.startsWith('data:image/png')")
    assert "Coat length" in caption.inner_text() and f"sees {predicted} (" in caption.inner_text()
    assert "explained" in (card.get_attribute("class") or "")
    screenshot(page, "screenshot-heatmap.png")
    card.locator(".probs li").nth(5).click()  # the evidence for another class: Knee Length
    page.wait_for_function("document.getElementById('heatmap-text').textContent.includes('Knee Length')")
    page.locator("#show-photo").click()
    page.wait_for_function("document.getElementById('preview').src.startsWith('blob:')")
    assert caption.is_hidden()


def test_the_catalogue_filters_by_a_clicked_tag_and_opens_an_item(page, served):
    total = httpx.get(f"{served.url}/v1/catalog").json()["items"]
    page.goto(served.url + "/catalog")
    items = page.locator("[data-testid=grid] [data-testid=item]")
    items.first.wait_for()
    assert items.count() == total
    # Cards name what they show: "Coat length: Knee Length", never two bare values.
    first_tags = items.first.locator("[data-testid=card-tags] li").all_inner_texts()
    assert first_tags and all(re.match(r"^[A-Z][a-z ]+: \S", text) for text in first_tags), first_tags
    assert items.first.locator("img").get_attribute("src").startswith("/v1/catalog/thumbnail/")
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
    view = page.locator("[data-testid=item-view]")
    view.wait_for(state="visible")
    rows = page.locator("[data-testid=item-tags] tbody tr")
    rows.first.wait_for()
    assert rows.count() == len(FASHIONAI)  # every tag, with its confidence
    assert f"item={first_id}" in page.url
    image = page.locator("[data-testid=item-image]")
    page.wait_for_function("document.querySelector('[data-testid=item-image]').naturalWidth > 0")
    assert image.get_attribute("src") == f"/v1/catalog/image/{first_id}"  # the large image, not the thumbnail
    assert page.locator("[data-testid=similar-grid] [data-testid=item]").count() > 0
    # The served model is the catalogue's and a PyTorch one: a tag shows its heatmap over the image.
    rows.first.click()
    page.wait_for_function("document.querySelector('[data-testid=item-image]').src.startsWith('data:image/png')")
    assert "where the model sees" in page.locator("#item-heatmap-text").inner_text()
    screenshot(page, "screenshot-item.png")
    page.locator("#back").click()
    view.wait_for(state="hidden")


def test_the_export_link_downloads_the_filtered_selection(page, served):
    facets = httpx.get(f"{served.url}/v1/catalog/facets").json()["facets"]
    attribute, value, count = next((a, v, n) for a, c in facets.items() for v, n in c.items() if n > 0)
    page.goto(f"{served.url}/catalog#filter={attribute}={value}")
    page.locator("[data-testid=grid] [data-testid=item]").first.wait_for()
    with page.expect_download() as csv_download:
        page.locator("[data-testid=export-csv]").click()
    rows = list(csv.reader(io.StringIO(Path(csv_download.value.path()).read_text(encoding="utf-8"))))
    assert rows[0][:4] == ["id", "path", "sha256", "size"] and attribute in rows[0]
    assert len(rows) - 1 == count  # the whole selection, every row carrying the filtered value
    assert all(row[rows[0].index(attribute)] == value for row in rows[1:])
    with page.expect_download() as jsonl_download:
        page.locator("[data-testid=export-jsonl]").click()
    lines = Path(jsonl_download.value.path()).read_text(encoding="utf-8").splitlines()
    assert len(lines) == count and all(json.loads(line)["tags"][attribute]["value"] == value for line in lines)


def test_the_catalogue_page_shows_only_tags_that_apply(page, served):
    """Close-ups and full figures in one catalogue: a close-up's card and item view show no skirt, coat or pant
    length (the item view says n/a), and the facets say how many photos have no value for an attribute.

    The catalogue is indexed through the tests' `catalogue_predictor`, which decides as a trained model does that a
    close-up shows no hem; the store, the API and the page are the real ones end to end."""
    page.goto(served.url + "/catalog")
    page.locator("[data-testid=grid] [data-testid=item]").first.wait_for()
    close_ups = page.locator("[data-testid=grid] [data-testid=item][title^=collar], "
                             "[data-testid=grid] [data-testid=item][title^=neckline]")  # fmt: skip
    assert close_ups.count() == 3 * len(CLOSE_UPS)
    for card in close_ups.all():
        shown = card.locator("[data-testid=card-tags] li").evaluate_all("nodes => nodes.map(n => n.dataset.attribute)")
        assert shown and not set(shown) & set(LENGTHS), shown
    note = page.locator("[data-testid=no-value][data-attribute=skirt_length_labels]")
    assert note.inner_text().startswith(f"{3 * len(CLOSE_UPS)} photos with no skirt length")
    assert page.locator("[data-testid=no-value][data-attribute=collar_design_labels]").count() == 0
    close_ups.first.click()
    skirt = page.locator("[data-testid=item-tags] tr[data-attribute=skirt_length_labels]")
    skirt.wait_for()
    assert skirt.get_attribute("data-applies") == "false"
    assert skirt.locator(".value").inner_text() == "n/a"
    screenshot(page, "screenshot-catalog-not-applying.png")


def test_the_review_queue_records_decisions_in_the_corrections_file(page, served, dataset_copy):
    corrections = dataset_copy / "Annotations" / "corrections.csv"
    labels = (dataset_copy / "Annotations" / "label.csv").read_bytes()
    page.goto(served.url + "/review")
    cards = page.locator("[data-testid=candidate]")
    cards.first.wait_for()
    assert cards.count() == 5
    assert "Check these labels" in page.locator("h1").inner_text()
    first, second, third = cards.nth(0), cards.nth(1), cards.nth(2)
    first.locator("[data-testid=accept]").click()
    first.locator("[data-testid=decided]").filter(has_text="suggestion accepted").wait_for()
    second.locator("[data-testid=relabel-class]").select_option(index=2)
    chosen = second.locator("[data-testid=relabel-class]").input_value()
    second.locator("[data-testid=relabel]").click()
    second.locator("[data-testid=decided]").filter(has_text=f"relabelled: {chosen}").wait_for()
    third.locator("[data-testid=maybe]").click()
    third.locator("[data-testid=decided]").filter(has_text="(m)").wait_for()
    page.wait_for_function("document.querySelector('[data-testid=review-progress]').textContent.startsWith('3 of')")
    screenshot(page, "screenshot-review.png")

    history = corrections.read_text().splitlines()
    assert history[0] == "time,path,attribute,label,decision"
    assert [line.rsplit(",", 1)[1] for line in history[1:]] == ["accept", "relabel", "maybe"]
    assert (dataset_copy / "Annotations" / "label.csv").read_bytes() == labels  # never edited in place
    page.reload()  # only the undecided ones are left to check
    cards.first.wait_for()
    assert cards.count() == 2


def test_the_predict_page_reads_on_a_phone(browser, served, trained_run):
    context = browser.new_context(viewport={"width": 390, "height": 844}, device_scale_factor=2)
    page = context.new_page()
    page.set_default_timeout(TIMEOUT_MS)
    try:
        photo = sorted((trained_run.data / "Images" / "skirt_length_labels").glob("*.jpg"))[0]
        page.goto(served.url + "/")
        page.set_input_files("[data-testid=file-input]", str(photo))
        page.locator("[data-testid=attribute]").first.wait_for()
        assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth")  # nothing off the side
        widths = page.locator(".probs .track").evaluate_all("nodes => nodes.map(n => n.getBoundingClientRect().width)")
        assert len(widths) == sum(FASHIONAI.num_classes) and min(widths) >= 250, widths  # bars a thumb's width or more
        names = page.locator(".probs .name").evaluate_all("nodes => nodes.map(n => n.scrollWidth <= n.clientWidth)")
        assert all(names)  # every class name readable in full
        screenshot(page, "screenshot-predict-narrow.png")
    finally:
        context.close()


def test_an_onnx_model_offers_no_heatmaps(browser, trained_run, tmp_path):
    from fashionattr.cli import main

    exported = tmp_path / "model.onnx"
    assert main(["export", str(trained_run.run), "--out", str(exported), "--no-verify"]) == 0
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    asked: list[str] = []
    page = context.new_page()
    page.set_default_timeout(TIMEOUT_MS)
    page.on("request", lambda request: asked.append(request.url))
    try:
        with start_server(exported, tmp_path / "server.log") as server:
            page.goto(server.url + "/")
            photo = sorted((trained_run.data / "Images" / "coat_length_labels").glob("*.jpg"))[0]
            page.set_input_files("[data-testid=file-input]", str(photo))
            card = page.locator("[data-testid=attribute][data-attribute=coat_length_labels]")
            card.wait_for()
            assert "explainable" not in (card.get_attribute("class") or "")
            assert page.locator("#explain-hint").is_hidden()
            card.locator("h3").click()
            card.locator(".probs li").first.click()
            page.wait_for_timeout(300)
            assert not any("/v1/explain" in url for url in asked)
    finally:
        context.close()


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
