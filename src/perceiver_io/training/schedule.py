"""Learning-rate schedule: linear warm-up, then cosine decay to ``min_lr_ratio · lr``."""

from __future__ import annotations

import math

import torch

__all__ = ["warmup_cosine", "build_scheduler"]


def warmup_cosine(step: int, warmup_steps: int, total_steps: int, min_lr_ratio: float = 0.0) -> float:
    """Multiplier of the base lr for optimizer step ``step`` (0-based: the lr used by the ``step+1``-th update).

    ``(step+1)/warmup_steps`` during warm-up, then ``min + (1-min)·½(1+cos(π·p))`` with
    ``p = (step-warmup)/(total-warmup)`` in [0, 1]; ``min_lr_ratio`` after ``total_steps``.
    """
    if warmup_steps > 0 and step < warmup_steps:
        return (step + 1) / warmup_steps
    decay_steps = max(1, total_steps - warmup_steps)
    progress = min(1.0, (step - warmup_steps) / decay_steps)
    return min_lr_ratio + (1.0 - min_lr_ratio) * 0.5 * (1.0 + math.cos(math.pi * progress))


def build_scheduler(
    optimizer: torch.optim.Optimizer, warmup_steps: int, total_steps: int, min_lr_ratio: float = 0.0
) -> torch.optim.lr_scheduler.LambdaLR:
    """A ``LambdaLR`` following :func:`warmup_cosine`; call ``scheduler.step()`` after every optimizer step."""
    return torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda s: warmup_cosine(s, warmup_steps, total_steps, min_lr_ratio)
    )
