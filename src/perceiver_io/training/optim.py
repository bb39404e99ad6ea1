"""Optimizers: LAMB (the paper's), AdamW, and weight-decay parameter groups."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

import torch
from torch import Tensor, nn

__all__ = ["LAMB", "no_decay_names", "param_groups", "build_optimizer"]


def no_decay_names(model: nn.Module) -> set[str]:
    """Exact names of the parameters without weight decay.

    The model's own rule when it has one (``PerceiverModel.no_weight_decay``: biases and norms,
    latents, position embeddings, learned queries, padding and mask tokens); otherwise every
    parameter with fewer than two dimensions. Names are matched exactly, never by substring.
    """
    rule = getattr(model, "no_weight_decay", None)
    if callable(rule):
        return set(rule())
    return {n for n, p in model.named_parameters() if p.dim() < 2}


def param_groups(model: nn.Module, weight_decay: float) -> list[dict]:
    """Two optimizer groups: ``{"params": decayed, "weight_decay": wd}`` and ``{"params": rest, "weight_decay": 0}``.

    Which parameters skip decay: :func:`no_decay_names`. Shared parameters appear once
    (``named_parameters`` deduplicates).
    """
    skip_names = no_decay_names(model)
    decay, skip = [], []
    for name, p in model.named_parameters():
        if p.requires_grad:
            (skip if name in skip_names else decay).append(p)
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
        r = ‖w‖ / ‖u‖  (1 if either norm is 0 or the ratio is not finite)
        w ← w - lr · r · u

    The step runs as ``torch._foreach_*`` ops over the parameters of a group (per device and math
    dtype) and computes the trust ratios ``r`` with ``torch.where``: no host synchronisation.
    Moments are kept in float32 for float16 / bfloat16 parameters (float64 ones stay float64).
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
            for bucket in self._buckets(group):
                self._update(bucket, group)
        return loss

    def _buckets(self, group: dict) -> list[_Bucket]:
        """The group's parameters with a gradient, by (device, math dtype); initialises state, counts the step."""
        buckets: dict[tuple[torch.device, torch.dtype], _Bucket] = {}
        for p in group["params"]:
            if p.grad is None:
                continue
            if p.grad.is_sparse:
                raise RuntimeError("LAMB does not support sparse gradients")
            dtype = p.dtype if p.dtype in (torch.float32, torch.float64) else torch.float32
            state = self.state[p]
            if not state:
                state["step"] = torch.zeros((), dtype=torch.float64)  # on the CPU: reading it never syncs
                state["exp_avg"] = torch.zeros_like(p, dtype=dtype, memory_format=torch.preserve_format)
                state["exp_avg_sq"] = torch.zeros_like(p, dtype=dtype, memory_format=torch.preserve_format)
            for key in ("exp_avg", "exp_avg_sq"):  # load_state_dict casts moments to the parameter's dtype
                if state[key].dtype != dtype:
                    state[key] = state[key].to(dtype)
            state["step"] += 1
            b = buckets.setdefault((p.device, dtype), _Bucket())
            b.params.append(p)
            b.grads.append(p.grad.to(dtype))
            b.exp_avgs.append(state["exp_avg"])
            b.exp_avg_sqs.append(state["exp_avg_sq"])
            b.steps.append(float(state["step"]))
        return list(buckets.values())

    @staticmethod
    def _update(b: _Bucket, group: dict) -> None:
        """One LAMB step for the bucket's parameters (same device, same math dtype)."""
        beta1, beta2 = group["betas"]
        lr, eps, wd = group["lr"], group["eps"], group["weight_decay"]
        ws = [p if p.dtype == g.dtype else p.to(g.dtype) for p, g in zip(b.params, b.grads, strict=True)]
        ms, vs = b.exp_avgs, b.exp_avg_sqs
        torch._foreach_mul_(ms, beta1)
        torch._foreach_add_(ms, b.grads, alpha=1 - beta1)
        torch._foreach_mul_(vs, beta2)
        torch._foreach_addcmul_(vs, b.grads, b.grads, value=1 - beta2)
        updates = torch._foreach_div(ms, [1 - beta1**t for t in b.steps])  # m̂
        denom = torch._foreach_div(vs, [1 - beta2**t for t in b.steps])  # v̂
        torch._foreach_sqrt_(denom)
        torch._foreach_add_(denom, eps)
        torch._foreach_div_(updates, denom)  # u = m̂ / (√v̂ + ε)
        del denom
        if wd != 0:
            torch._foreach_add_(updates, ws, alpha=wd)
        w_norm = torch.stack(torch._foreach_norm(ws))  # (P,)
        u_norm = torch.stack(torch._foreach_norm(updates))  # (P,)
        ratio = w_norm / u_norm
        trust = torch.where((w_norm > 0) & (u_norm > 0) & torch.isfinite(ratio), ratio, torch.ones_like(ratio))
        torch._foreach_mul_(updates, list((trust * -lr).unbind()))  # -lr · r · u
        torch._foreach_add_(b.params, [u.to(p.dtype) for p, u in zip(b.params, updates, strict=True)])


@dataclass
class _Bucket:
    """Parameters of one LAMB group on one device with one math dtype, and their state (parallel lists)."""

    params: list[Tensor] = field(default_factory=list)
    grads: list[Tensor] = field(default_factory=list)
    exp_avgs: list[Tensor] = field(default_factory=list)
    exp_avg_sqs: list[Tensor] = field(default_factory=list)
    steps: list[float] = field(default_factory=list)


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
