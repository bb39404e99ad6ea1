"""Data-parallel wrappers on PyTorch's own engine: DDP, and FSDP2 (``fully_shard``) as torchtitan applies it.

FSDP2 shards every attention block (:class:`CrossAttentionBlock`, :class:`SelfAttentionBlock` and
Perceiver AR's blocks) with its own ``fully_shard`` call, then the root, which keeps what is left
(input adapter, latents, queries, head). A processor layer applied ``num_blocks`` times with shared
weights is *one* module, so it is sharded once: FSDP all-gathers its parameters each time it runs
and reduce-scatters its gradient after each use in backward, accumulating into the one shard.
Methods other than ``forward`` that a block's parent calls on it (Perceiver AR's
``keys_values``) are registered with ``register_fsdp_forward_method`` so they see gathered weights.

After :func:`shard` the parameters are ``DTensor`` shards: build the optimizer afterwards, call the
model (``model(x)``, never ``model.forward(x)``), and read or write its state through
:func:`full_state_dict` or ``torch.distributed.checkpoint`` (see :mod:`.checkpoint`).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Literal

import torch
from torch import nn

__all__ = [
    "Strategy",
    "resolve_strategy",
    "shardable_blocks",
    "shard",
    "is_sharded",
    "wrap_ddp",
    "gradient_sync",
    "full_state_dict",
    "grad_norm_value",
]

Strategy = Literal["auto", "single", "ddp", "fsdp"]


def resolve_strategy(strategy: Strategy, world_size: int) -> Literal["single", "ddp", "fsdp"]:
    """``auto`` is DDP under ``torchrun`` with more than one process, else one process. ``fsdp`` with one
    process trains unsharded but keeps FSDP's checkpoint format (DCP), so a run can move between sizes."""
    if strategy == "auto":
        return "ddp" if world_size > 1 else "single"
    if strategy == "ddp" and world_size == 1:
        return "single"
    return strategy  # type: ignore[return-value]


def _block_types() -> tuple[type[nn.Module], ...]:
    from perceiver_io.layers.blocks import CrossAttentionBlock, SelfAttentionBlock
    from perceiver_io.models.perceiver_ar import ARCrossAttention, ARSelfAttention

    return (CrossAttentionBlock, SelfAttentionBlock, ARCrossAttention, ARSelfAttention)


def shardable_blocks(model: nn.Module) -> list[tuple[str, nn.Module]]:
    """``(name, module)`` of each attention block, outermost only, each module once (shared weights)."""
    types, seen, found = _block_types(), set(), []
    for name, module in model.named_modules():  # named_modules already yields a shared module once
        if not isinstance(module, types) or id(module) in seen:
            continue
        if any(name.startswith(outer + ".") for outer, _ in found):
            continue
        seen.add(id(module))
        found.append((name, module))
    return found


def shard(
    model: nn.Module,
    *,
    param_dtype: torch.dtype | None = None,
    reduce_dtype: torch.dtype | None = None,
    reshard_after_forward: bool = True,
) -> nn.Module:
    """``fully_shard`` each attention block, then the root, over all ranks of the default process group.

    ``param_dtype``/``reduce_dtype`` form the ``MixedPrecisionPolicy`` (e.g. bf16 compute with fp32
    gradient reduction on GPU); ``None`` keeps the parameters' dtype. Returns ``model`` (now an
    ``FSDPModule``; its parameters are ``DTensor`` shards).
    """
    from torch.distributed.fsdp import MixedPrecisionPolicy, fully_shard, register_fsdp_forward_method

    policy = MixedPrecisionPolicy(param_dtype=param_dtype, reduce_dtype=reduce_dtype)
    for _, block in shardable_blocks(model):
        fully_shard(block, mp_policy=policy, reshard_after_forward=reshard_after_forward)
        for method in getattr(block, "fsdp_forward_methods", ()):
            register_fsdp_forward_method(block, method)
    # the root's parameters are needed again at once by backward: keep them gathered after forward
    fully_shard(model, mp_policy=policy, reshard_after_forward=False)
    return model


def is_sharded(model: nn.Module) -> bool:
    from torch.distributed.fsdp import FSDPModule

    return isinstance(model, FSDPModule)


def wrap_ddp(model: nn.Module, device: torch.device) -> nn.Module:
    return nn.parallel.DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)


@contextlib.contextmanager
def gradient_sync(net: nn.Module, enabled: bool) -> Iterator[None]:
    """Inside, backward accumulates gradients locally (``enabled=False``) or synchronises them across
    ranks: DDP's ``no_sync`` and FSDP2's ``set_requires_gradient_sync`` (no reduce-scatter until the
    last micro-batch of an accumulation step). ``net`` may be ``torch.compile``'s wrapper of either."""
    net = getattr(net, "_orig_mod", net)
    if is_sharded(net):
        net.set_requires_gradient_sync(enabled)  # type: ignore[operator]
        yield
        return
    if not enabled and isinstance(net, nn.parallel.DistributedDataParallel):
        with net.no_sync():
            yield
        return
    yield


def full_state_dict(model: nn.Module) -> dict[str, torch.Tensor]:
    """The whole model's state on the CPU, as plain tensors. A collective for a sharded model (every
    rank must call it); rank 0 gets the tensors, the other ranks an empty dict."""
    if not is_sharded(model):
        return {k: v.detach().cpu() for k, v in model.state_dict().items()}
    from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict

    return get_model_state_dict(model, options=StateDictOptions(full_state_dict=True, cpu_offload=True))


def grad_norm_value(norm: torch.Tensor) -> float:
    """``clip_grad_norm_``'s result as a float (over sharded gradients it is a ``DTensor``)."""
    full = getattr(norm, "full_tensor", None)
    return float(full() if full is not None else norm)
