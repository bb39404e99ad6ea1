"""A control for the flow plateau: can a per-pixel MLP, with no Perceiver, learn flow from the same batches?

The ``flow`` task's training batches (same pairs, augmentation curriculum, subsampled pixels and EPE
loss) train an MLP that sees only both frames' ``k×k`` neighbourhoods of each decoded pixel
(``6·k²`` values -> 256 -> 256 -> 2, GELU, AdamW). If it beats zero flow on held-out pairs where the
Perceiver does not, the Perceiver (or its recipe) is the obstacle; if it does not either, local
appearance alone does not carry a learnable flow signal within that budget.

    python bench/flow_pixel_mlp.py --size 32 --patch 9 --steps 1500
    python bench/flow_pixel_mlp.py --quick        # smoke run: procedural textures, 16x16, 5 steps

Prints a table and, as the last line, a JSON summary.
"""

from __future__ import annotations

import argparse
import json
import platform
import time

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from perceiver_io.tasks.base import build_config, get_task_class
from perceiver_io.tasks.flow import _frames


def neighbourhoods(frames: Tensor, indices: Tensor, k: int) -> Tensor:
    """``frames (B, 2, 3, H, W)``, flat pixel ``indices (P,)`` -> both frames' ``k×k`` patches ``(B, P, 6·k²)``
    (zero-padded at the borders)."""
    patches = F.unfold(frames.flatten(1, 2), k, padding=k // 2)  # (B, 6·k², H·W)
    return patches[:, :, indices].transpose(1, 2)


def pixel_mlp(k: int, width: int = 256) -> nn.Module:
    layers = [nn.Linear(6 * k * k, width), nn.GELU(), nn.Linear(width, width), nn.GELU(), nn.Linear(width, 2)]
    return nn.Sequential(*layers)


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", type=int, default=32, help="square image size (the flow task's model.image_size)")
    ap.add_argument("--patch", type=int, default=9, help="odd neighbourhood size k")
    ap.add_argument("--steps", type=int, default=1500)
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--eval-pairs", type=int, default=64)
    ap.add_argument("--textures", default="auto", help="the flow task's data.textures (auto: Fashion-MNIST/MNIST)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--quick", action="store_true")
    args = ap.parse_args(argv)
    if args.quick:
        args.size, args.steps, args.eval_pairs, args.textures = 16, 5, 4, "none"
    if args.patch % 2 == 0:
        ap.error(f"--patch must be odd, got {args.patch}")

    torch.set_num_threads(1)
    torch.manual_seed(args.seed)
    overrides = {
        "model.image_size": [args.size, args.size],
        "data.eval_pairs": args.eval_pairs,
        "data.textures": args.textures,
        "train.max_steps": args.steps,
        "train.batch_size": args.batch_size,
    }
    task = get_task_class("flow")(build_config("flow", overrides=overrides), log=lambda m: None)
    task.setup()
    net = pixel_mlp(args.patch)
    opt = torch.optim.AdamW(net.parameters(), lr=args.lr)
    t0, curve = time.perf_counter(), {}
    for step in range(args.steps):
        task.step = step  # the curriculum (augmentation severity, final phase) follows the step
        seeds = [args.seed * 10**9 + step * args.batch_size + i for i in range(args.batch_size)]
        batch = task.collate([task.train_data[s] for s in seeds], seeds)
        pred = net(neighbourhoods(batch["frames"], batch["query_indices"], args.patch))
        loss = (pred - batch["targets"]).norm(dim=-1).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        curve[step + 1] = loss.item()
    seconds = time.perf_counter() - t0

    held_out = task.eval_pairs("valid")
    pairs = [held_out[i] for i in range(len(held_out))]
    flows = torch.stack([p["flow"] for p in pairs]).flatten(2).transpose(1, 2)  # (B, H·W, 2)
    with torch.no_grad():
        pred = net(neighbourhoods(_frames(pairs), torch.arange(flows.shape[1]), args.patch))
    epe = float((pred - flows).norm(dim=-1).mean())
    zero = float(flows.norm(dim=-1).mean())
    quarter = max(1, args.steps // 4)
    early = sum(curve[s] for s in range(1, quarter + 1)) / quarter
    late = sum(curve[s] for s in range(args.steps - quarter + 1, args.steps + 1)) / quarter

    print(f"per-pixel MLP on {args.patch}x{args.patch} patches of both frames, {args.size}x{args.size} pairs, "
          f"{args.steps} steps x {args.batch_size} pairs ({seconds:.0f} s)")  # fmt: skip
    print(f"{'':28s} {'EPE (px)':>9s}")
    print(f"{'per-pixel MLP, held-out':28s} {epe:9.4f}")
    print(f"{'zero flow, held-out':28s} {zero:9.4f}")
    print(f"training loss, first / last quarter of the steps: {early:.4f} / {late:.4f}")
    summary = {
        "size": args.size,
        "patch": args.patch,
        "steps": args.steps,
        "batch_size": args.batch_size,
        "eval_pairs": len(pairs),
        "epe_mlp": epe,
        "epe_zero": zero,
        "train_loss_first_quarter": early,
        "train_loss_last_quarter": late,
        "seconds": round(seconds, 1),
        "machine": f"{platform.machine()}, torch {torch.__version__}",
    }
    print(json.dumps(summary))
    return summary


if __name__ == "__main__":
    main()
