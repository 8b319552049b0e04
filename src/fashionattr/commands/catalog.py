"""`fashionattr catalog index|search|facets|similar`: tag a folder of product photos into a catalogue and browse it.

The catalogue is an SQLite file or a PostgreSQL database (`--catalog postgresql://user@host/db`). `index` is incremental
(unchanged files are skipped by content hash, removed ones dropped, changed ones re-tagged), safe to interrupt, and
runs under torchrun with each rank tagging a shard; `search` filters by tags, `facets` counts every tag value, and
`similar` ranks the catalogue by likeness to an image. Only `index` ever writes.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from fashionattr.commands.options import (
    VECTOR_INDEX_CHOICES,
    VECTOR_INDEX_HELP,
    add_applicability_threshold,
    add_catalog,
    add_min_confidence,
    add_model,
    add_model_options,
    count,
)

if TYPE_CHECKING:
    import numpy as np

    from fashionattr.catalog import CatalogItem
    from fashionattr.inference import Predictor

WHERE_HELP = "a tag to match, full or short attribute name (sleeve_length=Long Sleeves); repeat for several"


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "catalog",
        help="tag a folder of images into a searchable catalogue; search by tags; find similar garments",
        description="A tagged catalogue in one SQLite file or a PostgreSQL database: every image under a folder "
        "with each attribute's value, confidence and probabilities, and its backbone embedding for similarity "
        "search. `fashionattr serve MODEL --catalog DB` browses it in the web page.",
    )
    actions = parser.add_subparsers(dest="action", metavar="ACTION", required=True)

    index = actions.add_parser(
        "index",
        help="tag every image under DIR (incremental: unchanged files are skipped)",
        description="Tag every image file under DIR with MODEL and store the answers and embeddings in --catalog. "
        "Re-running skips files whose content is unchanged, re-tags changed ones and drops removed ones; a different "
        "model, categories file or --applicability-threshold re-tags everything. Unreadable images are listed at the "
        "end (exit code 1), not fatal. Each batch is committed on its own, so an interrupted run can simply be "
        "started again. Under torchrun (`torchrun --nproc_per_node N -m fashionattr catalog index ...`) each process "
        "tags its own share of the files into one PostgreSQL catalogue.",
    )
    add_model(index, old_option=True)
    index.add_argument("folder", metavar="DIR", help="folder of images (searched recursively)")
    add_catalog(index, help="the catalogue to write: an SQLite file, or a PostgreSQL database as "
                "postgresql://user@host/db (a new file or an empty database becomes one)")  # fmt: skip
    add_model_options(index)
    add_applicability_threshold(index)
    index.add_argument("--vector-index", choices=VECTOR_INDEX_CHOICES, default="auto", help=VECTOR_INDEX_HELP)
    index.add_argument("--categories", metavar="FILE",
                       help="path,category rows (paths relative to DIR): a photo filed under a product category is "
                       "tagged only with the attributes the schema's categories give it (a skirt: its length), on top "
                       "of the model's own decision; docs/applicability.md")  # fmt: skip
    index.add_argument("--rehash", action="store_true",
                       help="read and hash every file, even those whose size and modification time are as recorded "
                       "(by default those are skipped unread); also tags again images whose stored embedding is "
                       "damaged")  # fmt: skip
    index.set_defaults(func=run_index)

    search = actions.add_parser(
        "search",
        help="list images carrying given tags",
        description="Print the images that carry every --where tag, most confident first, with the confidence of "
        "each filtered attribute. Attribute names may be short (sleeve_length=Long Sleeves).",
    )
    add_catalog(search)
    search.add_argument("--where", action="append", default=[], metavar="ATTRIBUTE=VALUE", help=WHERE_HELP)
    add_min_confidence(search, help="only count a tag when its probability is at least P")
    search.add_argument("--limit", type=count(1), default=50, metavar="N", help="at most N results (default 50)")
    search.set_defaults(func=run_search)

    similar = actions.add_parser(
        "similar",
        help="images that look most like IMAGE",
        description="Rank the catalogue by cosine similarity to IMAGE's embedding. IMAGE is an indexed file (its "
        "stored embedding is used) or any other image file, embedded with the catalogue's model (or --model).",
    )
    similar.add_argument("image", metavar="IMAGE", help="an indexed path (relative to the root, or a file) or a file")
    add_catalog(similar)
    similar.add_argument("-k", type=count(1), default=10, metavar="K", help="how many to list (default 10)")
    similar.add_argument("--model", metavar="MODEL", help="the model to embed an image that is not in the catalogue "
                         "with (default: the catalogue's own)")  # fmt: skip
    add_model_options(similar, batching=False, backend=False)
    similar.add_argument("--vector-index", choices=VECTOR_INDEX_CHOICES, default="auto", help=VECTOR_INDEX_HELP)
    similar.set_defaults(func=run_similar)

    facets = actions.add_parser(
        "facets",
        help="how many images carry each value of every attribute",
        description="Print, for every attribute, how many images carry each of its values, among the images that "
        "match the --where tags of the other attributes (the counts the catalogue page shows beside its filters).",
    )
    add_catalog(facets)
    facets.add_argument("--where", action="append", default=[], metavar="ATTRIBUTE=VALUE", help=WHERE_HELP)
    add_min_confidence(facets, help="only count a tag when its probability is at least P")
    facets.set_defaults(func=run_facets)


def run_index(args: argparse.Namespace) -> int:
    from fashionattr.catalog import index_catalog
    from fashionattr.catalog.backends import shown_location
    from fashionattr.distributed import init_distributed, shutdown
    from fashionattr.inference import load_predictor

    context = init_distributed(args.device)

    def load(path: str | Path) -> Predictor:
        return load_predictor(path, backend=args.backend, device=str(context.device),
                              applicability_threshold=args.applicability_threshold)  # fmt: skip

    try:
        report = index_catalog(args.catalog, args.folder, args.model, batch_size=args.batch_size, workers=args.workers,
                               load=load, context=context, vector_index=args.vector_index,
                               progress=context.is_main, rehash=args.rehash,
                               categories=args.categories)  # fmt: skip
    finally:
        shutdown(context)
    if not context.is_main:
        return 0
    if report.retagged_for_new_model:
        print("the model or the categories changed since the last index: every image was tagged again",
              file=sys.stderr)  # fmt: skip
    for note in report.notes:
        print(f"note: {note}", file=sys.stderr)
    print(f"{shown_location(args.catalog)}: {report.added} added, {report.updated} re-tagged, "
          f"{report.unchanged} unchanged, {report.removed} removed, {len(report.errors)} unreadable "
          f"(root {report.root})"
          + (f"; {context.world_size} processes tagged {', '.join(map(str, report.tagged_per_process))}"
             if context.enabled else ""))  # fmt: skip
    for path, reason in report.errors:
        print(f"  unreadable: {path}: {reason}", file=sys.stderr)
    return 1 if report.errors else 0


def run_search(args: argparse.Namespace) -> int:
    from fashionattr.catalog import Catalog

    catalog = Catalog(args.catalog)
    filters = catalog.parse_filters(args.where)
    result = catalog.search(filters, min_confidence=args.min_confidence, limit=args.limit)
    for item in result.items:
        print(f"{catalog.root / item.path}\t{_tags_text(item, list(filters) or None)}")
    print(f"{len(result.items)} shown of {result.total} matching, {len(catalog)} in the catalogue", file=sys.stderr)
    return 0


def _tags_text(item: CatalogItem, attributes: list[str] | None = None) -> str:
    """`attribute=Value 0.97` per tag (of `attributes`, or all), `attribute=n/a` where the tag does not apply."""
    shown = []
    for attribute in attributes or list(item.tags):
        tag = item.tags[attribute]
        shown.append(f"{attribute}={tag.value} {tag.confidence:.2f}" if tag.applies else f"{attribute}=n/a")
    return "  ".join(shown)


def run_facets(args: argparse.Namespace) -> int:
    from fashionattr.catalog import Catalog

    catalog = Catalog(args.catalog)
    filters = catalog.parse_filters(args.where)
    facets = catalog.facet_counts(filters, min_confidence=args.min_confidence)
    for attribute, counts in facets.counts.items():
        shown = "  ".join(f"{value}={count}" for value, count in counts.items())
        print(f"{attribute}\t{shown}\tno value={facets.no_value[attribute]}")
    print(f"{facets.total} matching, {len(catalog)} in the catalogue; 'no value': the attribute does not apply to "
          "the photo, or its tag is below --min-confidence", file=sys.stderr)  # fmt: skip
    return 0


def run_similar(args: argparse.Namespace) -> int:
    from fashionattr.catalog import Catalog

    catalog = Catalog(args.catalog, vector_index=args.vector_index)
    indexed = catalog.item(args.image)
    if indexed is not None:
        results = catalog.similar(indexed.id, k=args.k)
    else:
        results = catalog.similar(_embed(args.image, args.model or catalog.model, args.device), k=args.k)
    for note in catalog.similarity.notes:
        print(f"note: {note}", file=sys.stderr)
    for item, score in results:
        print(f"{score:.4f}\t{catalog.root / item.path}\t{_tags_text(item)}")
    return 0


def _embed(image: str, model: str, device: str) -> np.ndarray:
    """The embedding of an image that is not in the catalogue, decoded and run exactly as indexing does."""
    from fashionattr.data.images import ImageError
    from fashionattr.errors import UserError
    from fashionattr.inference import load_predictor

    if not Path(image).is_file():
        raise UserError(f"{image}: neither an indexed image nor an image file")
    [entry] = load_predictor(model, device=device).predict_paths([image], batch_size=1, workers=0, embed=True)
    if isinstance(entry, ImageError):
        raise UserError(str(entry))
    assert entry.embedding is not None  # asked for with embed=True
    return entry.embedding
