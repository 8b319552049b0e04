"""Retake the README's screenshots from a trained run: `python docs/screenshots.py RUN DATA [--out docs]`.

Indexes DATA's held-out test images (DATA/Tests/Images, else DATA/Images) into a throwaway catalogue, serves RUN
with it on a free loopback port, uploads one test photo on the predict page and filters the catalogue page by a
tag, in Debian's headless Chromium driven by Playwright, and saves `screenshot-predict.png` and
`screenshot-catalog.png`. The README shows the ones made from the model `make demo` trains:

    python docs/screenshots.py runs/demo/run runs/demo/data
"""

from __future__ import annotations

import argparse
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


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def fashionattr(*args: str) -> None:
    subprocess.run([sys.executable, "-m", "fashionattr", *args], check=True)


def sample_photos(data: Path, folder: Path) -> list[Path]:
    """An even sample of the test images, linked into one folder for the catalogue."""
    source = data / "Tests" / "Images" if (data / "Tests" / "Images").is_dir() else data / "Images"
    photos = sorted(source.rglob("*.jpg"))
    step = max(1, len(photos) // CATALOG_IMAGES)
    chosen = photos[::step][:CATALOG_IMAGES]
    folder.mkdir(parents=True)
    for number, photo in enumerate(chosen):
        (folder / f"{number:03d}-{photo.name}").symlink_to(photo.resolve())
    return chosen


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("run", type=Path, help="run directory (or checkpoint) to serve")
    parser.add_argument("data", type=Path, help="dataset root whose test images fill the catalogue")
    parser.add_argument("--out", type=Path, default=Path(__file__).parent, help="folder for the PNGs (docs/)")
    parser.add_argument("--photo", type=Path, help="the photo to upload (default: a skirt-length test image)")
    args = parser.parse_args()

    from playwright.sync_api import sync_playwright

    with tempfile.TemporaryDirectory(prefix="screenshots-") as scratch:
        workdir = Path(scratch)
        chosen = sample_photos(args.data, workdir / "photos")
        fashionattr("catalog", "index", str(workdir / "photos"), "--model", str(args.run), "--db",
                    str(workdir / "catalog.sqlite"), "--workers", "0")  # fmt: skip
        photo = args.photo or next((p for p in chosen if "skirt_length" in str(p)), chosen[0])
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
                args.out.mkdir(parents=True, exist_ok=True)
                page.screenshot(path=str(args.out / "screenshot-predict.png"), full_page=True)
                page.goto(url + "/catalog")
                page.locator("[data-testid=grid] [data-testid=item]").first.wait_for()
                button = page.locator("[data-testid=facet-value][data-attribute=skirt_length_labels]").first
                button.click()
                page.locator("[data-testid=active-filters] .chip").first.wait_for()
                page.wait_for_timeout(500)
                page.screenshot(path=str(args.out / "screenshot-catalog.png"), full_page=True)
                browser.close()
        finally:
            server.terminate()
            server.wait(timeout=30)
    print(f"wrote {args.out / 'screenshot-predict.png'} and {args.out / 'screenshot-catalog.png'} ({photo.name})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
