"""Retake the README's screenshots from a trained run: `python docs/screenshots.py RUN DATA [--out docs]`.

Indexes DATA's held-out test images (DATA/Tests/Images, else DATA/Images) into a throwaway catalogue, serves RUN
with it on a free loopback port, uploads one test photo on the predict page (then clicks its skirt-length card
for the heatmap) and filters the catalogue page by the tag most of its photos carry, in Debian's headless Chromium
driven by Playwright, and saves `screenshot-predict.png`, `screenshot-heatmap.png`, `screenshot-catalog.png` and
`screenshot-item.png` (the catalogue's item view). The README shows the ones made from the model `make demo` trains:

    python docs/screenshots.py runs/demo/run runs/demo/data
"""

from __future__ import annotations

import argparse
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]  # fmt: skip
CATALOG_IMAGES = 48
LOADED = "sel => Array.from(document.querySelectorAll(sel)).every(img => img.complete && img.naturalWidth > 0)"
"""Thumbnails load lazily: wait until every one on the page has arrived before the screenshot."""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def fashionattr(*args: str) -> None:
    subprocess.run([sys.executable, "-m", "fashionattr", *args], check=True)


def sample_photos(data: Path, folder: Path) -> list[Path]:
    """An even sample of the test images, copied into one folder for the catalogue (the service serves only files
    that really lie inside the indexed folder, so links out of it would show no thumbnail)."""
    source = data / "Tests" / "Images" if (data / "Tests" / "Images").is_dir() else data / "Images"
    photos = sorted(source.rglob("*.jpg"))
    step = max(1, len(photos) // CATALOG_IMAGES)
    chosen = photos[::step][:CATALOG_IMAGES]
    folder.mkdir(parents=True)
    for number, photo in enumerate(chosen):
        shutil.copyfile(photo, folder / f"{number:03d}-{photo.name}")
    return chosen


def showcase_photo(data: Path) -> Path:
    """A held-out skirt photo whose answer is a visible length (not Invisible), so the page shows a garment."""
    answers = data / "Tests" / "answers.csv"
    for line in answers.read_text(encoding="utf-8").splitlines():
        path, attribute, label = line.split(",")
        if attribute == "skirt_length_labels" and label.index("y") == 3:  # Midi Length
            return data / path
    raise SystemExit(f"{answers}: no midi-length skirt among the test answers; pass --photo")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("run", type=Path, help="run directory (or checkpoint) to serve")
    parser.add_argument("data", type=Path, help="dataset root whose test images fill the catalogue")
    parser.add_argument("--out", type=Path, default=Path(__file__).parent, help="folder for the PNGs (docs/)")
    parser.add_argument("--photo", type=Path, help="the photo to upload (default: a midi-length skirt test image)")
    args = parser.parse_args()

    from playwright.sync_api import sync_playwright

    with tempfile.TemporaryDirectory(prefix="screenshots-") as scratch:
        workdir = Path(scratch)
        sample_photos(args.data, workdir / "photos")
        fashionattr("catalog", "index", str(args.run), str(workdir / "photos"), "--catalog",
                    str(workdir / "catalog.sqlite"), "--workers", "0")  # fmt: skip
        photo = args.photo or showcase_photo(args.data)
        port = free_port()
        server = subprocess.Popen([sys.executable, "-m", "fashionattr", "serve", str(args.run), "--port", str(port),
                                   "--catalog", str(workdir / "catalog.sqlite"), "--log-level", "warning"])  # fmt: skip
        url = f"http://127.0.0.1:{port}"
        try:
            deadline = time.monotonic() + 120
            while True:
                try:
                    if httpx.get(f"{url}/healthz", timeout=2).status_code == 200:
                        break
                except httpx.HTTPError:
                    pass
                if time.monotonic() > deadline or server.poll() is not None:
                    raise SystemExit("the server did not start")
                time.sleep(0.5)
            with sync_playwright() as playwright:
                browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
                page = browser.new_page(viewport={"width": 1280, "height": 900})
                page.goto(url + "/")
                page.set_input_files("[data-testid=file-input]", str(photo))
                page.locator("[data-testid=attribute]").first.wait_for()
                page.locator("#similar .item").first.wait_for()
                page.wait_for_function(LOADED, arg="#similar img")
                args.out.mkdir(parents=True, exist_ok=True)
                page.screenshot(path=str(args.out / "screenshot-predict.png"), full_page=True)
                card = page.locator("[data-testid=attribute][data-attribute=skirt_length_labels]")
                card.locator("h3").click()  # where the model looks
                page.locator("[data-testid=heatmap-caption]").wait_for(state="visible")
                page.wait_for_function("document.getElementById('preview').src.startsWith('data:image/png')")
                page.screenshot(path=str(args.out / "screenshot-heatmap.png"), full_page=True)
                page.goto(url + "/catalog")
                page.locator("[data-testid=grid] [data-testid=item]").first.wait_for()
                # the tag most photos carry, among those that apply (a filter that matches nothing shows nothing)
                facets = httpx.get(url + "/v1/catalog/facets", timeout=30).json()["facets"]
                attribute, value = max(
                    ((a, v) for a, counts in facets.items() for v, n in counts.items() if n and v != "Invisible"),
                    key=lambda pair: facets[pair[0]][pair[1]],
                )
                button = page.locator(f"[data-testid=facet-value][data-attribute={attribute}][data-value='{value}']")
                button.click()
                page.locator("[data-testid=active-filters] .chip").first.wait_for()
                page.wait_for_function(LOADED, arg="[data-testid=grid] img")
                page.screenshot(path=str(args.out / "screenshot-catalog.png"), full_page=True)
                page.locator("#clear-filters").click()  # then the item view of the first photo
                page.locator("[data-testid=grid] [data-testid=item]").first.click()
                page.locator("[data-testid=similar-grid] [data-testid=item]").first.wait_for()
                page.wait_for_function(LOADED, arg="[data-testid=item-view] img")
                page.screenshot(path=str(args.out / "screenshot-item.png"), full_page=True)
                browser.close()
        finally:
            server.terminate()
            server.wait(timeout=30)
    print(f"wrote the predict, heatmap, catalogue and item-view screenshots to {args.out} ({photo.name})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
