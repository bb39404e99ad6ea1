"""Optimizers: LAMB (the paper's), AdamW, and weight-decay parameter groups."""

from __future__ import annotations

import math
from collections.abc import Iterable

import torch
from torch import Tensor, nn

__all__ = ["LAMB", "no_decay", "param_groups", "build_optimizer"]

# Substrings of parameter names that never get weight decay: latent arrays, position embeddings,
# output query arrays. Biases and norm weights are caught by their shape (ndim < 2).
NO_DECAY_NAMES = ("latents", "position", "pos_emb", "query_builder", "queries")


def no_decay(name: str, param: Tensor) -> bool:
    """True for parameters without weight decay: biases, norms (1-D), latents, position embeddings, queries."""
    return param.ndim < 2 or any(s in name for s in NO_DECAY_NAMES)


def param_groups(model: nn.Module, weight_decay: float) -> list[dict]:
    """Two optimizer groups: ``{"params": decayed, "weight_decay": wd}`` and ``{"params": rest, "weight_decay": 0}``.

    Shared parameters appear once (``named_parameters`` deduplicates).
    """
    decay, skip = [], []
    for name, p in model.named_parameters():
        if p.requires_grad:
            (skip if no_decay(name, p) else decay).append(p)
    return [
        {"params": decay, "weight_decay": weight_decay, "group": "decay"},
        {"params": skip, "weight_decay": 0.0, "group": "no_decay"},
    ]


class LAMB(torch.optim.Optimizer):
    """LAMB (You et al., 2019), the optimizer of the Perceiver IO paper.

    Per parameter ``w`` with gradient ``g`` at step ``t``::

        m = β1·m + (1-β1)·g            v = β2·v + (1-β2)·g²
        m̂ = m / (1-β1^t)               v̂ = v / (1-β2^t)
        u = m̂ / (√v̂ + ε) + λ·w          (λ = the group's weight decay)
        r = ‖w‖ / ‖u‖  (1 if either norm is 0)
        w ← w - lr · r · u
    """

    def __init__(
        self,
        params: Iterable,
        lr: float = 1e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-6,
        weight_decay: float = 0.0,
    ) -> None:
        if lr < 0 or eps < 0 or weight_decay < 0 or not (0 <= betas[0] < 1 and 0 <= betas[1] < 1):
            raise ValueError(f"invalid LAMB hyperparameters lr={lr} betas={betas} eps={eps} wd={weight_decay}")
        super().__init__(params, {"lr": lr, "betas": tuple(betas), "eps": eps, "weight_decay": weight_decay})

    @torch.no_grad()
    def step(self, closure=None):  # type: ignore[override]
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            beta1, beta2 = group["betas"]
            for p in group["params"]:
                if p.grad is None:
                    continue
                if p.grad.is_sparse:
                    raise RuntimeError("LAMB does not support sparse gradients")
                state = self.state[p]
                dtype = p.dtype if p.dtype in (torch.float32, torch.float64) else torch.float32  # math precision
                if not state:
                    state["step"] = torch.zeros((), dtype=torch.float64)
                    state["exp_avg"] = torch.zeros_like(p, dtype=dtype, memory_format=torch.preserve_format)
                    state["exp_avg_sq"] = torch.zeros_like(p, dtype=dtype, memory_format=torch.preserve_format)
                state["step"] += 1
                t = float(state["step"])
                g = p.grad.to(dtype)
                m, v = state["exp_avg"], state["exp_avg_sq"]
                m.mul_(beta1).add_(g, alpha=1 - beta1)
                v.mul_(beta2).addcmul_(g, g, value=1 - beta2)
                m_hat = m / (1 - beta1**t)
                v_hat = v / (1 - beta2**t)
                update = m_hat / (v_hat.sqrt() + group["eps"])
                if group["weight_decay"] != 0:
                    update.add_(p.to(dtype), alpha=group["weight_decay"])
                w_norm = float(p.to(dtype).norm())
                u_norm = float(update.norm())
                trust = w_norm / u_norm if w_norm > 0 and u_norm > 0 and math.isfinite(w_norm / u_norm) else 1.0
                p.add_(update.to(p.dtype), alpha=-group["lr"] * trust)
        return loss


def build_optimizer(
    model: nn.Module,
    name: str,
    lr: float,
    weight_decay: float,
    betas: tuple[float, float] = (0.9, 0.999),
    eps: float = 1e-8,
) -> torch.optim.Optimizer:
    """``name`` in ``("adamw", "lamb")``; weight decay only on :func:`param_groups`' decayed group."""
    groups = param_groups(model, weight_decay)
    if name == "adamw":
        return torch.optim.AdamW(groups, lr=lr, betas=betas, eps=eps)
    if name == "lamb":
        return LAMB(groups, lr=lr, betas=betas, eps=eps)
    raise ValueError(f"unknown optimizer {name!r}; choose 'adamw' or 'lamb'")
