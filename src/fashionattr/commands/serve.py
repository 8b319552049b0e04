"""`fashionattr serve MODEL`: the HTTP prediction service and web page, optionally browsing a tagged catalogue."""

from __future__ import annotations

import argparse
import errno
import ipaddress
import socket
import sys
import time
from dataclasses import replace
from typing import TYPE_CHECKING

from fashionattr.commands.options import (
    VECTOR_INDEX_CHOICES,
    VECTOR_INDEX_HELP,
    add_applicability_threshold,
    add_catalog,
    add_min_confidence,
    add_model,
    add_model_options,
    add_no_calibration,
    add_tta,
    count,
    number,
)

if TYPE_CHECKING:
    from fashionattr.catalog import Catalog
    from fashionattr.serve import ServeSettings
    from fashionattr.serve.limits import ConnectionLimits

LOOPBACK_NAMES = ("localhost",)


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "serve",
        help="HTTP service and web page: attribute prediction for uploaded photos, catalogue browsing",
        description="Serve the model over HTTP: POST /v1/predict (multipart `files` or JSON base64 images), "
        "GET /v1/schema, GET /healthz, API docs at /docs, and a web page at / to drop a photo on. With --catalog, "
        "also browse the catalogue by tags and likeness at /catalog. Concurrent requests are batched together on "
        "the model. Binds to 127.0.0.1 unless --host says otherwise.",
    )
    add_model(parser)
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1: this machine only)")
    parser.add_argument("--port", type=count(0, 65535), default=8000, help="port (default 8000; 0 picks a free one)")
    add_catalog(parser, required=False, help="a catalogue made by `fashionattr catalog index` to browse: an SQLite "
                "file or postgresql://user@host/db (opened read-only)")  # fmt: skip
    parser.add_argument("--review", metavar="DIR", help="a folder made by `fashionattr review` to serve as a "
                        "queue at /review: decisions go to the dataset's Annotations/corrections.csv")  # fmt: skip
    parser.add_argument("--vector-index", choices=VECTOR_INDEX_CHOICES, default="auto",
                        help=f"{VECTOR_INDEX_HELP}, for the catalogue")  # fmt: skip
    parser.add_argument("--max-upload-mb", type=number(0.0, above_minimum=True), default=10.0, metavar="MB",
                        help="largest request body accepted, answered with 413 above it (default 10)")  # fmt: skip
    parser.add_argument("--max-batch", type=count(1), default=32, metavar="N",
                        help="most images run through the model at once (default 32)")  # fmt: skip
    parser.add_argument("--batch-wait-ms", type=number(0.0), default=5.0, metavar="MS",
                        help="how long a batch waits for more images before it runs (default 5)")  # fmt: skip
    parser.add_argument("--decode-threads", type=count(1), default=None, metavar="N",
                        help="uploads decoded at once; each may briefly take ~0.4 GB for a 64-megapixel PNG "
                        "(default: the number of cores, at most 8)")  # fmt: skip
    add_min_confidence(parser)
    add_applicability_threshold(parser)
    add_tta(parser)
    add_model_options(parser, batching=False)
    parser.add_argument("--header-timeout", type=number(0.0, above_minimum=True), default=10.0, metavar="S",
                        help="seconds a client has to send a request's headers (default 10)")  # fmt: skip
    parser.add_argument("--body-timeout", type=number(0.0, above_minimum=True), default=30.0, metavar="S",
                        help="longest pause, in seconds, while a request body arrives (default 30)")  # fmt: skip
    parser.add_argument("--max-connections", type=count(1), default=1000, metavar="N",
                        help="open connections at most; at the cap the longest idle one is closed "
                        "(default 1000)")  # fmt: skip
    add_no_calibration(parser)
    parser.add_argument("--log-level", default="info", choices=["critical", "error", "warning", "info", "debug"],
                        help="how much the server logs (default info: a line per request)")  # fmt: skip
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import uvicorn
    from uvicorn.protocols.http.h11_impl import H11Protocol

    from fashionattr.inference import load_predictor
    from fashionattr.serve import catalog_compatible, create_app
    from fashionattr.serve.limits import ConnectionGuard
    from fashionattr.serve.review import ReviewQueueFile

    settings = _settings(args)
    limits = _limits(args)
    listening = _listen(args.host, args.port)  # before the slow part: a port in use fails at once
    catalog = _open_catalog(args.catalog, args.vector_index)
    review = ReviewQueueFile(args.review) if args.review else None
    predictor = load_predictor(args.model, backend=args.backend, device=args.device, tta=args.tta,
                               min_confidence=args.min_confidence, calibrated=not args.no_calibration,
                               applicability_threshold=args.applicability_threshold)  # fmt: skip
    if not _is_loopback(args.host):
        print(f"fashionattr serve: warning: listening on {args.host}, reachable from other machines; the service "
              "has no authentication", file=sys.stderr)  # fmt: skip
    app = create_app(predictor, catalog, settings, review)
    if catalog is not None and not catalog_compatible(predictor, catalog):
        print(f"fashionattr serve: note: the catalogue was tagged by {catalog.model}, not by {args.model}; "
              "browsing works, searching the catalogue by an uploaded photo does not", file=sys.stderr)  # fmt: skip
    guard = ConnectionGuard(limits)
    # proxy_headers off: scope["client"] must be the connection's own address, which the guard goes by.
    config = uvicorn.Config(guard.app(app), host=args.host, port=args.port, log_level=args.log_level,
                            http=guard.protocol(H11Protocol), proxy_headers=False)  # fmt: skip
    bound = listening.getsockname()[1]
    shown = f"[{args.host}]" if ":" in args.host else args.host
    print(f"fashionattr serve: listening on http://{shown}:{bound} (Ctrl+C to stop)", file=sys.stderr)
    uvicorn.Server(config).run(sockets=[listening])
    return 0


def _listen(host: str, port: int) -> socket.socket:
    """The service's socket, bound as uvicorn would bind it, with a failure as one line naming the address."""
    from fashionattr.errors import UserError

    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family=family, type=socket.SOCK_STREAM, proto=socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        hints = {errno.EADDRINUSE: "another process listens there; stop it or choose another --port",
                 errno.EACCES: "ports below 1024 need privileges; choose a port of 1024 or more",
                 errno.EADDRNOTAVAIL: "this machine has no such address; give one of its own with --host"}  # fmt: skip
        reason = exc.strerror or str(exc)
        hint = hints.get(exc.errno or 0, "check --host and --port")
        raise UserError(f"cannot listen on {host} port {port}: {reason} ({hint})") from None
    sock.set_inheritable(True)
    return sock


def _limits(args: argparse.Namespace) -> ConnectionLimits:
    """The connection limits; argparse has typed and range-checked every value."""
    from fashionattr.serve.limits import ConnectionLimits, connection_budget

    budget = connection_budget(args.max_connections)
    if budget < args.max_connections:
        print(f"fashionattr serve: note: at most {budget} connections, as the process may open only so many files",
              file=sys.stderr)  # fmt: skip
    return ConnectionLimits(header_timeout=args.header_timeout, body_timeout=args.body_timeout,
                            max_connections=budget)  # fmt: skip


def _settings(args: argparse.Namespace) -> ServeSettings:
    """The service's settings; argparse has typed and range-checked every value."""
    from fashionattr.serve import ServeSettings

    settings = ServeSettings(max_upload_mb=args.max_upload_mb, max_batch=args.max_batch,
                             batch_wait_ms=args.batch_wait_ms)  # fmt: skip
    return replace(settings, decode_threads=args.decode_threads) if args.decode_threads else settings


def _open_catalog(db: str | None, vector_index: str) -> Catalog | None:
    """The catalogue, its similarity index loaded (or built) now rather than on the first request."""
    if db is None:
        return None
    from fashionattr.catalog import Catalog

    catalog = Catalog(db, vector_index=vector_index)
    began = time.perf_counter()
    index = catalog.similarity.refresh()
    for note in catalog.similarity.notes:
        print(f"fashionattr serve: note: {note}", file=sys.stderr)
    catalog.similarity.on_note = lambda note: print(f"fashionattr serve: note: {note}", file=sys.stderr, flush=True)
    if index is not None:
        how = "loaded from the catalogue" if catalog.similarity.origin == "saved" else "built"
        print(f"fashionattr serve: catalogue {catalog.name}: {len(index):,} images, {index.kind} similarity index "
              f"{how} in {time.perf_counter() - began:.1f} s", file=sys.stderr)  # fmt: skip
    began = time.perf_counter()
    catalog.facet_index.refresh()
    print(f"fashionattr serve: catalogue {catalog.name}: tags of {len(catalog):,} images ready for facets in "
          f"{time.perf_counter() - began:.1f} s", file=sys.stderr)  # fmt: skip
    return catalog


def _is_loopback(host: str) -> bool:
    if host in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
