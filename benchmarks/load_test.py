"""Load test of the HTTP service: `python benchmarks/load_test.py CKPT [--requests 2000] [--concurrency 16]`.

Starts `fashionattr serve CKPT` on a free loopback port (its default host), sends `--requests` POST /v1/predict
requests, each one small JPEG, from `--concurrency` clients at once, and prints latency percentiles, throughput,
errors, the server's resident memory before and after, and how the server batched the requests. `--url` aims
at a server already running instead. `--json FILE` saves the figures. Nothing here asserts a time: the numbers
depend on the machine (client and server share its cores).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import io
import json
import socket
import statistics
import sys
import time
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path

import httpx
import numpy as np
from PIL import Image

from fashionattr.bench.service_process import serve_in_child


@dataclass
class LoadResult:
    """What one load test measured; latencies in milliseconds, memory in MiB."""

    requests: int
    concurrency: int
    image_bytes: int
    wall_s: float
    statuses: dict[str, int]
    errors: int
    p50_ms: float
    p90_ms: float
    p99_ms: float
    max_ms: float
    mean_ms: float
    requests_per_s: float
    server: dict[str, object] = field(default_factory=dict)


def make_jpegs(count: int, size: int, seed: int = 0) -> list[bytes]:
    """Small photo-like JPEGs (smooth colour fields plus noise), different from each other."""
    rng = np.random.default_rng(seed)
    images = []
    for _ in range(count):
        base = rng.integers(0, 256, (4, 4, 3), dtype=np.uint8)
        field_ = np.asarray(Image.fromarray(base).resize((size, size), Image.Resampling.BILINEAR), dtype=np.int16)
        noisy = np.clip(field_ + rng.integers(-12, 13, field_.shape), 0, 255).astype(np.uint8)
        buffer = io.BytesIO()
        Image.fromarray(noisy).save(buffer, "JPEG", quality=85)
        images.append(buffer.getvalue())
    return images


def outcome(response: httpx.Response) -> str:
    """The status code, or what is wrong with a 200 that does not hold exactly one prediction."""
    if response.status_code != 200:
        return str(response.status_code)
    try:
        predictions = response.json()["predictions"]
    except (ValueError, KeyError, TypeError):
        return "200 with a malformed body"
    return "200" if len(predictions) == 1 else "200 with a wrong number of predictions"


async def run_load(url: str, images: list[bytes], requests: int, concurrency: int, timeout: float) -> LoadResult:
    """`requests` single-image predictions spread over `concurrency` clients sending one after another."""
    latencies: list[float] = []
    statuses: Counter[str] = Counter()
    counter = iter(range(requests))
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)

    async def client(http: httpx.AsyncClient) -> None:
        for number in counter:
            data = images[number % len(images)]
            start = time.perf_counter()
            try:
                response = await http.post(
                    "/v1/predict", files=[("files", (f"photo-{number}.jpg", data, "image/jpeg"))]
                )
                statuses[outcome(response)] += 1
            except httpx.HTTPError as exc:
                statuses[type(exc).__name__] += 1
            latencies.append((time.perf_counter() - start) * 1000)

    async with httpx.AsyncClient(base_url=url, timeout=timeout, limits=limits) as http:
        begin = time.perf_counter()
        await asyncio.gather(*(client(http) for _ in range(concurrency)))
        wall = time.perf_counter() - begin
    cuts = statistics.quantiles(latencies, n=100, method="inclusive")
    return LoadResult(
        requests=requests, concurrency=concurrency, image_bytes=round(statistics.mean(map(len, images))),
        wall_s=round(wall, 3), statuses=dict(statuses), errors=requests - statuses["200"],
        p50_ms=round(cuts[49], 2), p90_ms=round(cuts[89], 2), p99_ms=round(cuts[98], 2),
        max_ms=round(max(latencies), 2), mean_ms=round(statistics.mean(latencies), 2),
        requests_per_s=round(requests / wall, 1),
    )  # fmt: skip


# --- the server process -----------------------------------------------------------------------------------------


def memory_mib(pid: int) -> dict[str, float]:
    """Resident (VmRSS) and peak resident (VmHWM) memory of a process, from /proc (Linux; empty elsewhere)."""
    try:
        lines = Path(f"/proc/{pid}/status").read_text().splitlines()
    except OSError:
        return {}
    values = {}
    for line in lines:
        key, _, rest = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            values[key] = round(int(rest.split()[0]) / 1024, 1)
    return values


def listening_address(port: int) -> str | None:
    """The local address a TCP socket listens on at `port`, from /proc/net/tcp{,6} (Linux; None elsewhere)."""
    for table, width in (("/proc/net/tcp", 8), ("/proc/net/tcp6", 32)):
        with contextlib.suppress(OSError):
            for line in Path(table).read_text().splitlines()[1:]:
                local, state = line.split()[1], line.split()[3]
                address, hex_port = local.split(":")
                if state == "0A" and int(hex_port, 16) == port:  # 0A: LISTEN
                    raw = bytes.fromhex(address)
                    if width == 8:
                        return socket.inet_ntop(socket.AF_INET, raw[::-1])
                    words = b"".join(raw[i : i + 4][::-1] for i in range(0, 16, 4))
                    return socket.inet_ntop(socket.AF_INET6, words)
    return None


def report(result: LoadResult) -> str:
    server = result.server
    lines = [
        f"{result.requests} requests, {result.concurrency} concurrent clients, one {result.image_bytes / 1024:.1f} KiB "
        f"JPEG each: {result.wall_s:.1f} s, {result.requests_per_s:.0f} requests/s",
        f"latency ms: p50 {result.p50_ms:.1f}  p90 {result.p90_ms:.1f}  p99 {result.p99_ms:.1f}  max "
        f"{result.max_ms:.1f}  mean {result.mean_ms:.1f}",
        f"errors: {result.errors}  statuses: {result.statuses}",
    ]
    if "rss_before_mib" in server:
        lines.append(f"server memory MiB: {server['rss_before_mib']} before, {server.get('rss_after_mib')} after "
                     f"(peak {server.get('peak_mib')})")  # fmt: skip
    if "batching" in server:
        lines.append(f"server batching: {server['batching']}")
    if "listening_on" in server:
        lines.append(f"server listening on: {server['listening_on']}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("checkpoint", nargs="?", help="checkpoint or run directory to serve (not with --url)")
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--image-size", type=int, default=128, help="side of the JPEGs sent (default 128)")
    parser.add_argument("--url", help="an already running server instead of starting one")
    parser.add_argument("--timeout", type=float, default=60.0, help="per-request timeout in seconds")
    parser.add_argument("--json", help="also write the figures to this file")
    parser.add_argument("--log", default="load-test-server.log", help="the started server's log (default: here)")
    parser.add_argument("--max-batch", type=int, default=32, help="the started server's --max-batch (default 32)")
    parser.add_argument("--batch-wait-ms", type=float, default=5.0,
                        help="the started server's --batch-wait-ms (default 5)")  # fmt: skip
    args = parser.parse_args(argv)
    if bool(args.url) == bool(args.checkpoint):
        parser.error("give a checkpoint to serve, or --url of a running server (not both)")
    if args.requests < 1 or args.concurrency < 1:
        parser.error("--requests and --concurrency must be at least 1")
    images = make_jpegs(64, args.image_size)

    if args.url:
        result = asyncio.run(run_load(args.url, images, args.requests, args.concurrency, args.timeout))
    else:
        options = ["--max-batch", str(args.max_batch), "--batch-wait-ms", str(args.batch_wait_ms)]
        # host=None: the service's default address, which `listening_on` then reports
        with serve_in_child(args.checkpoint, Path(args.log), *options, host=None) as service:
            url, process, port = service.url, service.process, service.port
            before = memory_mib(process.pid)
            result = asyncio.run(run_load(url, images, args.requests, args.concurrency, args.timeout))
            after = memory_mib(process.pid)
            result.server = {
                "rss_before_mib": before.get("VmRSS"), "rss_after_mib": after.get("VmRSS"),
                "peak_mib": after.get("VmHWM"), "listening_on": listening_address(port),
                "batching": httpx.get(f"{url}/healthz", timeout=10).json()["batching"],
                "still_serving": process.poll() is None,
            }  # fmt: skip
    print(report(result))
    if args.json:
        Path(args.json).write_text(json.dumps(asdict(result), indent=1) + "\n")
    return 0 if result.errors == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
