"""One place for devices and torch.distributed: checking and picking the device a user names, set-up from
torchrun's environment, and sharing results and errors between ranks."""

from __future__ import annotations

import os
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

import torch
import torch.distributed as dist

from fashionattr.errors import DiskFullError, RunError, UserError

T = TypeVar("T")


@dataclass(frozen=True)
class DistributedContext:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


_DEVICE = re.compile(r"auto|cpu|mps|cuda(?::(\d{1,3}))?")


def check_device(requested: str) -> None:
    """Refuse a device name torch does not know, or a GPU this machine does not have, in words."""
    match = _DEVICE.fullmatch(requested)
    if match is None:
        raise UserError(f"unknown device {requested!r}; use auto, cpu, cuda or cuda:N")
    if requested.startswith("cuda"):
        if not torch.cuda.is_available():
            raise UserError(f"device {requested}: no CUDA GPU is available on this machine; use cpu or auto")
        if match.group(1) is not None and int(match.group(1)) >= torch.cuda.device_count():
            raise UserError(f"device {requested}: this machine has {torch.cuda.device_count()} CUDA GPU(s)")
    if requested == "mps" and not torch.backends.mps.is_available():
        raise UserError("device mps: Apple's Metal backend is not available here; use cpu or auto")


def pick_device(requested: str = "auto", local_rank: int = 0) -> torch.device:
    """The torch device for a user's choice (`auto`: this rank's GPU if there is one, else the CPU)."""
    check_device(requested)
    if requested == "auto":
        return torch.device(f"cuda:{local_rank}") if torch.cuda.is_available() else torch.device("cpu")
    device = torch.device(requested)
    if device.type == "cuda" and device.index is None:
        device = torch.device(f"cuda:{local_rank}")
    return device


def init_distributed(requested_device: str = "auto") -> DistributedContext:
    """Start the process group when launched by torchrun (WORLD_SIZE > 1); otherwise a single-process context."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    device = pick_device(requested_device, local_rank)
    if world_size <= 1:
        return DistributedContext(device=device)
    if device.type == "cuda":
        torch.cuda.set_device(device)
    if not dist.is_initialized():
        dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo")
    return DistributedContext(rank=dist.get_rank(), world_size=dist.get_world_size(), local_rank=local_rank,
                              device=device)  # fmt: skip


def gather_objects(obj: Any, context: DistributedContext) -> list[Any]:
    """Every rank's `obj`, in rank order (a one-element list without distribution)."""
    if not context.enabled:
        return [obj]
    gathered: list[Any] = [None] * context.world_size
    dist.all_gather_object(gathered, obj)
    return gathered


def broadcast_object(obj: Any, context: DistributedContext) -> Any:
    if not context.enabled:
        return obj
    holder = [obj]
    dist.broadcast_object_list(holder, src=0)
    return holder[0]


_SHARED_ERRORS: tuple[type[Exception], ...] = (DiskFullError, RunError, UserError)
"""Errors a user must see, from the most to the least specific; a bug's exception stays rank 0's own."""


def on_main(action: Callable[[], T], context: DistributedContext) -> T | None:
    """`action()` on rank 0 only (None elsewhere); a user-facing error there stops every rank with its message.

    Rank 0 alone writes the run folder. Had a full disk stopped it alone, the other ranks would wait for it at
    the next collective for ever; instead each rank raises the same kind of error with the same message.
    """
    if not context.enabled:
        return action()
    result, caught, failure = None, None, None
    if context.is_main:
        try:
            result = action()
        except _SHARED_ERRORS as exc:
            caught = exc
            failure = (next(i for i, kind in enumerate(_SHARED_ERRORS) if isinstance(exc, kind)), str(exc))
    failure = broadcast_object(failure, context)
    if caught is not None:
        raise caught
    if failure is not None:
        kind, message = failure
        raise _SHARED_ERRORS[kind](message)
    return result


def barrier(context: DistributedContext) -> None:
    if context.enabled:
        dist.barrier()


def shutdown(context: DistributedContext) -> None:
    if context.enabled and dist.is_initialized():
        dist.destroy_process_group()
