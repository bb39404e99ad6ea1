"""``torch.distributed`` helpers: set up from ``torchrun``'s environment, rank queries, reductions."""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist

__all__ = [
    "raise_on_all_ranks",
    "DistInfo",
    "setup_distributed",
    "cleanup_distributed",
    "all_reduce_sum",
    "broadcast_object",
    "barrier",
]


@dataclass
class DistInfo:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1


def setup_distributed(device: torch.device, single_process_group: bool = False) -> DistInfo:
    """Join the process group when launched by ``torchrun`` (``WORLD_SIZE`` > 1): NCCL on CUDA, gloo on CPU.

    ``single_process_group``: join it under ``torchrun`` with one process too (FSDP on a single GPU).
    """
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1 and not (single_process_group and "RANK" in os.environ):
        return DistInfo()
    rank, local_rank = int(os.environ["RANK"]), int(os.environ.get("LOCAL_RANK", "0"))
    if not dist.is_initialized():
        backend = "nccl" if device.type == "cuda" else "gloo"
        store = _store_for_this_attempt(world)
        if store is None:
            dist.init_process_group(backend=backend)
        else:
            dist.init_process_group(backend=backend, store=store, rank=rank, world_size=world)
    return DistInfo(rank=rank, world_size=world, local_rank=local_rank)


def _store_for_this_attempt(world_size: int) -> dist.Store | None:
    """Under ``torchrun``, the agent's store with a key prefix of this restart attempt; else None (``env://``).

    ``torchrun``'s static rendezvous keeps one store for all restarts, and ``env://`` adds no prefix per
    attempt, so after a worker is restarted the process group could read a peer's address from the
    previous attempt and fail with "Gloo connectFullMesh failed ... Connection refused".
    """
    if os.environ.get("TORCHELASTIC_USE_AGENT_STORE") != "True" or "MASTER_ADDR" not in os.environ:
        return None
    from torch.distributed.constants import default_pg_timeout

    store = dist.TCPStore(
        os.environ["MASTER_ADDR"],
        int(os.environ["MASTER_PORT"]),
        world_size,
        is_master=False,  # the agent hosts it
        timeout=default_pg_timeout,
    )
    return dist.PrefixStore(f"perceiver_io/attempt_{os.environ.get('TORCHELASTIC_RESTART_COUNT', '0')}", store)


def cleanup_distributed() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def _active() -> bool:
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def all_reduce_sum(t: torch.Tensor) -> torch.Tensor:
    """Sum of ``t`` over ranks (in place; a no-op with one process)."""
    if _active():
        dist.all_reduce(t, op=dist.ReduceOp.SUM)
    return t


def broadcast_object(obj: Any, src: int = 0) -> Any:
    """Rank ``src``'s ``obj`` on every rank."""
    if not _active():
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=src)
    return box[0]


def raise_on_all_ranks(message: str | None, error: type[Exception]) -> None:
    """Rank 0 found a problem (``message``): raise ``error(message)`` on every rank, so that no rank is
    left waiting in a collective. Without distributed training, just raise when there is a message."""
    message = broadcast_object(message)
    if message is not None:
        raise error(message)


def barrier() -> None:
    if _active():
        dist.barrier()
