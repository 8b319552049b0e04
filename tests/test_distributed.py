"""DistributedDataParallel on CPU: two gloo processes train in lockstep and evaluate every image once."""

import json
import subprocess
from pathlib import Path

import pytest
import torch

from fashionattr.distributed import DistributedContext
from fashionattr.evaluation import evaluate_checkpoint
from fashionattr.synthetic.generate import generate_dataset
from helpers import cli_command, torchrun

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    root = tmp_path_factory.mktemp("ddp-data")
    # 7 validation images per attribute-class mix: an odd count, so sharding over 2 ranks is uneven.
    generate_dataset(root, per_class=9, size=48, seed=2, progress=False)
    return root


def test_two_processes_train_to_identical_weights_and_evaluate_each_image_once(dataset, tmp_path):
    """Both ranks end with the same weights and the same moving average, batch-norm statistics included."""
    out = tmp_path / "run"
    worker = Path(__file__).with_name("distributed_worker.py")
    torchrun(str(worker), str(dataset), str(out))
    for name in ("rank{}.pt", "rank{}-ema.pt"):  # the raw weights, and the moving average that is validated
        rank0, rank1 = torch.load(out / name.format(0)), torch.load(out / name.format(1))
        assert rank0.keys() == rank1.keys()
        assert any("running_var" in key for key in rank0)
        for key in rank0:
            assert torch.equal(rank0[key], rank1[key]), (name, key)

    single = evaluate_checkpoint(out, DistributedContext(), workers=0)
    torchrun("-m", "fashionattr", "evaluate", str(out), "--device", "cpu", "--workers", "0", "--out", str(out / "ddp"))
    distributed = json.loads((out / "ddp" / "scores.json").read_text())
    total = sum(len(p) for p in single.predictions.values())
    assert distributed["count"] == single.scores.count == total
    for name, entry in single.scores.to_dict()["attributes"].items():
        assert distributed["attributes"][name]["count"] == entry["count"]
        assert distributed["attributes"][name]["confusion"] == entry["confusion"]
        assert distributed["attributes"][name]["accuracy"] == pytest.approx(entry["accuracy"])


def test_ranks_agree_on_bad_images_and_list_every_ranks_skips(tmp_path):
    """Truncated JPEGs (intact headers) show only when a rank decodes them: all ranks must count them together."""
    import shutil

    from fashionattr.data.scan import scan_headers
    from fashionattr.data.split import read_split

    data = tmp_path / "data"
    generate_dataset(data, per_class=6, size=48, seed=5, progress=False)
    assert subprocess.run(cli_command("split", data), capture_output=True).returncode == 0
    train = sorted(path for (path, _), subset in read_split(data / "Annotations" / "split.csv").items()
                   if subset == "train")  # fmt: skip
    broken = train[::40][:6]
    for rel in broken:
        file = data / rel
        file.write_bytes(file.read_bytes()[: file.stat().st_size // 2])
    common = ["-m", "fashionattr", "train", str(data), "--arch", "test_resnet", "--img-size", "32", "--epochs", "1",
              "--batch-size", "8", "--workers", "0", "--no-progress", "--device", "cpu", "--cache", "off"]  # fmt: skip

    out = tmp_path / "run"
    result = torchrun(*common, "--out", str(out), "--max-bad-fraction", "0.5", codes=None)
    assert result.returncode == 0, result.stderr[-3000:]
    listed = {line.split("\t")[0] for line in (out / "skipped_images.txt").read_text().splitlines()}
    assert listed == set(broken)  # rank 0 wrote the file, and it holds both ranks' skips

    refused = tmp_path / "refused"
    # Some halves fail already at the header scan; set the limit just above those, so it is crossed only once
    # the ranks have decoded the rest, each its own share.
    found_early = len(scan_headers(data, broken))
    assert found_early < len(broken)
    limit = (found_early + 0.5) / len(train)
    result = torchrun(*common, "--out", str(refused), "--max-bad-fraction", f"{limit:.5f}", codes=None)
    assert result.returncode != 0
    # Both ranks refuse alike, with the count of both ranks' skips; nobody waits forever in a collective.
    assert result.stderr.count(f"{len(broken)} of {len(train)} training images") == 2, result.stderr[-2000:]
    shutil.rmtree(refused, ignore_errors=True)
