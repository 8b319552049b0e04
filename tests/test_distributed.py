"""DistributedDataParallel on CPU: two gloo processes train in lockstep and evaluate every image once."""

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from fashionattr.data.synth import generate_dataset
from fashionattr.distributed import DistributedContext
from fashionattr.evaluation import evaluate_checkpoint

pytestmark = pytest.mark.slow


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def torchrun(*args: str) -> subprocess.CompletedProcess:
    command = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_addr", "127.0.0.1",
               "--master_port", str(free_port()), *args]  # fmt: skip
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    result = subprocess.run(command, capture_output=True, text=True, timeout=600, env=env)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return result


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    root = tmp_path_factory.mktemp("ddp-data")
    # 7 validation images per attribute-class mix: an odd count, so sharding over 2 ranks is uneven.
    generate_dataset(root, per_class=9, size=48, seed=2, progress=False)
    return root


def test_two_processes_train_to_identical_weights_and_evaluate_each_image_once(dataset, tmp_path):
    out = tmp_path / "run"
    worker = Path(__file__).with_name("distributed_worker.py")
    torchrun(str(worker), str(dataset), str(out))
    rank0, rank1 = torch.load(out / "rank0.pt"), torch.load(out / "rank1.pt")
    assert rank0.keys() == rank1.keys()
    for key in rank0:
        assert torch.equal(rank0[key], rank1[key]), key

    single = evaluate_checkpoint(out, DistributedContext(), workers=0)
    torchrun("-m", "fashionattr", "evaluate", str(out), "--device", "cpu", "--workers", "0", "--out", str(out / "ddp"))
    distributed = json.loads((out / "ddp" / "scores.json").read_text())
    total = sum(len(p) for p in single.predictions.values())
    assert distributed["count"] == single.scores.count == total
    for name, entry in single.scores.to_dict()["attributes"].items():
        assert distributed["attributes"][name]["count"] == entry["count"]
        assert distributed["attributes"][name]["confusion"] == entry["confusion"]
        assert distributed["attributes"][name]["accuracy"] == pytest.approx(entry["accuracy"])
