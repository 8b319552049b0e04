"""Figure `service`: service throughput with 8 concurrent clients against 1, through the service's dynamic batching.

A real `fashionattr serve` process (the bench's architecture and input size, random weights) on a loopback
port; each client posts one 512 px JPEG per request and sends the next as soon as the answer arrives. Rounds
alternate between one client and eight, so machine load weighs on both alike; the figure is the ratio of
requests per second, with each side's p99 latency beside it. Clients and server share the machine's cores.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import numpy as np
import torch

from fashionattr.bench.context import BenchContext
from fashionattr.bench.core import Figure, Variant, compared, measure
from fashionattr.bench.inputs import bench_preprocessing
from fashionattr.bench.service_process import serve_in_child
from fashionattr.checkpoint import save_checkpoint
from fashionattr.models.networks import create_model
from fashionattr.run_dir import RunDir

CLIENTS = 8
THROUGHPUT_GOAL = 3.0


def service_checkpoint(context: BenchContext) -> Path:
    """A random-weight checkpoint of the bench's architecture at its input size: what `serve` loads."""
    settings, schema = context.settings, context.data.schema
    torch.manual_seed(0)
    model = create_model(settings.arch, schema)
    path = RunDir(context.workdir / "service").best
    path.parent.mkdir(parents=True, exist_ok=True)
    save_checkpoint(path, {"model": model.state_dict(), "spec": model.spec, "schema": schema.to_dict(),
                           "preprocessing": bench_preprocessing(context).to_dict(),
                           "attributes": schema.names})  # fmt: skip
    return path


async def _load(url: str, image: bytes, clients: int, requests: int, latencies: list[float]) -> int:
    """`requests` single-image predictions from `clients` clients sending back to back; returns how many were 200."""
    import httpx

    todo = iter(range(requests))
    done = 0

    async def client(http: httpx.AsyncClient) -> None:
        nonlocal done
        for number in todo:
            began = time.perf_counter()
            response = await http.post("/v1/predict", files=[("files", (f"photo-{number}.jpg", image, "image/jpeg"))])
            latencies.append(time.perf_counter() - began)
            done += response.status_code == 200

    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
    async with httpx.AsyncClient(base_url=url, timeout=120, limits=limits) as http:
        await asyncio.gather(*(client(http) for _ in range(clients)))
    return done


def service_figures(context: BenchContext) -> list[Figure]:
    import httpx

    settings = context.settings
    checkpoint = service_checkpoint(context)
    image = context.data.images[0].read_bytes()
    latencies: dict[str, list[float]] = {"1 client": [], f"{CLIENTS} clients": []}
    per_round = settings.service_requests
    with serve_in_child(checkpoint, context.workdir / "service.log", device=str(context.device)) as service:
        url = service.url
        many_name = f"{CLIENTS} clients"
        one = Variant("1 client", lambda: asyncio.run(_load(url, image, 1, per_round // 4, latencies["1 client"])))
        many = Variant(many_name, lambda: asyncio.run(_load(url, image, CLIENTS, per_round, latencies[many_name])))
        asyncio.run(_load(url, image, CLIENTS, CLIENTS * 2, []))  # warm-up, its latencies not counted
        measurement = measure([many, one], rounds=settings.rounds, warmup=0, budget_s=180)
        batching = httpx.get(f"{url}/healthz", timeout=30).json()["batching"]
    p99 = {name: float(np.percentile(np.asarray(values) * 1000, 99)) for name, values in latencies.items()}
    figure = compared(
        "service", f"service throughput, {CLIENTS} concurrent clients vs 1 (dynamic batching)", measurement,
        f"{CLIENTS} clients", "1 client", goal=THROUGHPUT_GOAL,
        settings={"arch": settings.arch, "size": settings.img_size, "device": str(context.device),
                  "image_kib": round(len(image) / 1024, 1), "requests_per_round": {"1 client": per_round // 4,
                  f"{CLIENTS} clients": per_round}, "p99_ms": {k: round(v, 1) for k, v in p99.items()},
                  "server_batches": {k: batching[k] for k in ("mean_batch", "largest_batch", "multi_image_batches")}},
        notes=["requests/s; each request one 512 px JPEG, decoded and letterboxed by the server, all eight "
               "attributes and the embedding; client and server share the machine's cores"],
    )  # fmt: skip
    figure.unit = "req/s"
    return [figure, batching_ceiling(context)]


def batching_ceiling(context: BenchContext) -> Figure:
    """What batching can give at best on this device: the model's images/s at a batch of 8 against a batch of 1.

    The service's throughput under 8 clients cannot rise by more than this (decoding and HTTP only add to it).
    """
    from fashionattr.bench.inference import multitask_predictor
    from fashionattr.bench.inputs import image_batch

    predictor = multitask_predictor(context)
    batch = image_batch(context)
    single, eight = batch[:1], batch.repeat(-(-CLIENTS // batch.shape[0]), 1, 1, 1)[:CLIENTS]

    def run(images: torch.Tensor) -> int:
        predictor.probabilities([images], embed=True)
        return int(images.shape[0])

    measurement = measure([Variant(f"batch of {CLIENTS}", lambda: run(eight) + run(eight)),
                           Variant("batch of 1", lambda: sum(run(single) for _ in range(2 * CLIENTS)))],
                          rounds=context.settings.rounds, warmup=1, budget_s=60)  # fmt: skip
    return compared(
        "service.ceiling", f"the model alone: images/s at a batch of {CLIENTS} vs 1 (the most batching can give)",
        measurement, f"batch of {CLIENTS}", "batch of 1", goal=None,
        settings={"arch": context.settings.arch, "size": context.settings.img_size, "device": str(context.device)},
        notes=["Predictor.probabilities with the embedding, as the service runs each batch"],
    )  # fmt: skip
