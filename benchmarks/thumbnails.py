"""What a catalogue page of 48 cards moves, original photos against the service's thumbnails, and what a thumbnail
costs to make against serving it from the cache. Both sides are measured in this one run.

    python benchmarks/thumbnails.py [--size 512] [--cards 48] [--rounds 5]

Photos are the synthetic generator's (JPEG, SIZE px wide, as FashionAI's are 512); the thumbnails are what
`GET /v1/catalog/thumbnail/{id}` answers (256 px JPEG, `fashionattr.serve.thumbnails`).
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

from fashionattr.serve.thumbnails import DEFAULT_SIDE, Thumbnails, make_thumbnail
from fashionattr.synthetic.generate import generate_dataset


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", type=int, default=512, help="photo width in pixels (default 512)")
    parser.add_argument("--cards", type=int, default=48, help="cards on a page (default 48)")
    parser.add_argument("--rounds", type=int, default=5, help="timing rounds (default 5)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as scratch:
        root = Path(scratch) / "data"
        generate_dataset(root, per_class=1, size=args.size, test_fraction=0.0, workers=1, progress=False)
        photos = sorted((root / "Images").rglob("*.jpg"))[: args.cards]
        original = sum(p.stat().st_size for p in photos)
        small = sum(len(make_thumbnail(p, DEFAULT_SIDE)) for p in photos)
        made, cached = [], []
        for _ in range(args.rounds):
            cache = Thumbnails()
            began = time.perf_counter()
            for n, photo in enumerate(photos):
                cache.get(str(n), photo, DEFAULT_SIDE)
            made.append(time.perf_counter() - began)
            began = time.perf_counter()
            for n, photo in enumerate(photos):
                cache.get(str(n), photo, DEFAULT_SIDE)
            cached.append(time.perf_counter() - began)
    print(f"a page of {len(photos)} cards, {args.size} px synthetic JPEGs:")
    print(f"  original photos: {original / 1024:,.0f} KB")
    print(f"  {DEFAULT_SIDE} px thumbnails: {small / 1024:,.0f} KB ({original / small:.1f}x less)")
    make_ms, hit_ms = 1000 * statistics.median(made), 1000 * statistics.median(cached)
    print(f"  making the page's thumbnails: {make_ms:.0f} ms; from the cache: {hit_ms:.2f} ms "
          f"({make_ms / max(hit_ms, 1e-6):,.0f}x faster; medians of {args.rounds} rounds)")  # fmt: skip


if __name__ == "__main__":
    main()
