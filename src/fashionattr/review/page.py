"""The review page: one self-contained HTML file, a row per candidate label with its thumbnail, the label beside the
model's suggestion, shown alike (the model is not assumed right; a person decides, in `fashionattr serve --review`).

Thumbnails are embedded (base64 JPEG), so the page opens anywhere without the dataset at hand; the rows after the
first `MAX_THUMBNAILS` are listed without one (label_issues.csv has them all).
"""

from __future__ import annotations

import base64
import html
import io
from collections.abc import Sequence
from pathlib import Path

from PIL import Image

from fashionattr.data.images import ImageError, open_image
from fashionattr.review.issues import LabelIssue, ReviewScore

MAX_THUMBNAILS = 500
THUMBNAIL = 128

STYLE = """
body { font-family: system-ui, sans-serif; margin: 1.5rem; color: #1d232b; }
h1 { font-size: 1.3rem; } p { color: #555; max-width: 60rem; }
table { border-collapse: collapse; }
td, th { border-bottom: 1px solid #e3e6ea; padding: 0.4rem 0.7rem; text-align: left; vertical-align: middle; }
th { font-size: 0.8rem; text-transform: uppercase; color: #66707c; }
img { width: 128px; height: 128px; object-fit: contain; background: #f6f7f9; }
.given, .suggested { font-weight: 600; }
.path { font-family: monospace; font-size: 0.8rem; color: #66707c; }
.score { font-variant-numeric: tabular-nums; }
"""


def thumbnail(path: Path) -> str | None:
    """A data URL of a small JPEG of the image, or None when it cannot be read."""
    try:
        with open_image(path, target_size=THUMBNAIL) as image:
            picture = image.convert("RGB")
            picture.thumbnail((THUMBNAIL, THUMBNAIL), Image.Resampling.BILINEAR)
    except (ImageError, OSError):
        return None
    buffer = io.BytesIO()
    picture.save(buffer, format="JPEG", quality=80)
    return "data:image/jpeg;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def review_page(root: Path, issues: Sequence[LabelIssue], source: str, reviewed: int,
                score: ReviewScore | None = None) -> str:  # fmt: skip
    """The HTML of the review page, most likely wrong first."""
    lines = ["<!doctype html>", '<html lang="en"><head><meta charset="utf-8"><title>fashionattr label review</title>',
             f"<style>{STYLE}</style></head><body>", "<h1>Check these labels</h1>",
             f"<p>{len(issues)} of {reviewed} reviewed labels are candidates: confident learning (cleanlab) finds "
             f"the out-of-sample probabilities disagreeing with them ({html.escape(source)}). Some are wrong, some "
             "are right and the model is not. Sorted by score, the model's probability that the given class is not "
             "the image's. The label file was not changed; decide on each in <code>fashionattr serve MODEL --review "
             "DIR</code>, which records the decisions in Annotations/corrections.csv.</p>"]  # fmt: skip
    if score is not None:
        lines.append(f"<p>Against {score.known} known errors among the reviewed rows: precision "
                     f"{score.precision:.1%}, recall {score.recall:.1%}, precision at {score.known} "
                     f"{score.precision_at_known:.1%}.</p>")  # fmt: skip
    lines.append("<table><tr><th>#</th><th>image</th><th>attribute</th><th>label</th><th>model suggests</th>"
                 "<th>score</th></tr>")  # fmt: skip
    for number, issue in enumerate(issues, start=1):
        url = thumbnail(root / issue.record.path) if number <= MAX_THUMBNAILS else None
        picture = f'<img src="{url}" alt="">' if url else ""
        lines.append(
            f"<tr><td>{number}</td><td>{picture}<div class='path'>{html.escape(issue.record.path)}</div></td>"
            f"<td>{html.escape(issue.record.attribute)}</td>"
            f"<td class='given'>{html.escape(issue.given)} ({issue.given_probability:.0%})</td>"
            f"<td class='suggested'>{html.escape(issue.suggested)} ({issue.suggested_probability:.0%})</td>"
            f"<td class='score'>{issue.score:.3f}</td></tr>"
        )
    lines += ["</table>", "</body></html>", ""]
    return "\n".join(lines)
