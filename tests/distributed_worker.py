"""Run under torchrun by tests/test_distributed.py: train with DDP, save this rank's final weights and average."""

import sys
from pathlib import Path

import torch

from fashionattr.config import resolve_config
from fashionattr.distributed import init_distributed, shutdown
from fashionattr.training import fit


def main(data: str, out: str) -> None:
    config = resolve_config(None, dict(data=data, out=out, arch="test_resnet", attributes=["skirt_length_labels",
                            "neckline_design_labels"], img_size=32, epochs=2, batch_size=8, workers=0,
                            progress=False, deterministic=True, device="cpu"))  # fmt: skip
    context = init_distributed("cpu")
    result = fit(config, ["skirt_length_labels", "neckline_design_labels"], Path(out), context)
    torch.save(result.model.state_dict(), Path(out) / f"rank{context.rank}.pt")
    torch.save(result.evaluated.state_dict(), Path(out) / f"rank{context.rank}-ema.pt")
    shutdown(context)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
