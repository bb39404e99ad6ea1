"""Which flow signals does Perceiver IO learn quickly? Synthetic translations vs the procedural pairs.

The CPU flow run stays at zero flow on the procedural pairs (docs/results.md §5). This bench separates
"the model cannot learn flow from appearance" from "the procedural pairs are too hard for this budget":
the same models and loss (mean end-point error, AdamW, gradient clipping 1) train on three sources,

* ``global``: smooth colour noise (3×3 box-filtered Gaussian noise) and the same noise shifted by one
  random ``d`` per pair, ``|d_x|, |d_y| <= max_motion`` (bilinear, sub-pixel); flow is ``d`` everywhere;
* ``local``: the same noise warped by a smooth random field (a 2×2 grid of random shifts, bilinearly
  interpolated over the image), so flow differs from pixel to pixel;
* ``procedural``: the ``flow`` task's training pairs (:class:`~perceiver_io.data.flow.FlowPairs`,
  textures from Fashion-MNIST / MNIST, occluding layers), held-out pairs from its validation split;
* ``procedural-clean``: the same pairs without their photometric changes (frame-2 gain and offset, blur,
  noise) and without the training augmentation, so brightness is constant along the flow;

and five models: a per-pixel MLP on both frames' 3×3 patches (54 -> 128 -> 128 -> 2, no Perceiver),
the flow preset as published (inputs as queries, no query residual), the same with the decoder's
query residual, and two probes of that: the decoder's attention output fixed at zero
(``perceiver-qres-noattn``: each pixel's flow comes from its own query row alone, through the
decoder MLP and the projection), and only started at zero (``perceiver-qres-zeroattn``:
``DecoderConfig.attention_init="zeros"``; the attention's output projection trains). Every pixel is
decoded. Each row reports held-out EPE against zero flow.

    python bench/flow_wiring.py --size 16 --steps 300
    python bench/flow_wiring.py --quick        # smoke run

Prints a table and, as the last line, a JSON summary.
"""

from __future__ import annotations

import argparse
import json
import math
import platform
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn

sys.path.insert(0, str(Path(__file__).resolve().parent))
import perceiver_io  # noqa: E402
from flow_pixel_mlp import neighbourhoods, pixel_mlp  # noqa: E402
from perceiver_io.inference.flow import FLOW_SCALE_FACTOR  # noqa: E402
from perceiver_io.tasks.base import build_config, get_task_class  # noqa: E402
from perceiver_io.tasks.flow import _frames  # noqa: E402
from perceiver_io.training.overrides import parse_overrides  # noqa: E402

SOURCES = ("global", "local", "procedural", "procedural-clean")
MODELS = ("mlp", "perceiver", "perceiver-qres", "perceiver-qres-noattn", "perceiver-qres-zeroattn")


def shifted_noise(batch: int, size: int, max_motion: float, local: bool, gen: torch.Generator) -> tuple[Tensor, Tensor]:
    """Smooth colour noise and its shifted copy: frames ``(B, 2, 3, S, S)`` in [-1, 1], flow ``(B, S·S, 2)`` px.

    Frame 2 at ``x`` is frame 1 at ``x - d(x)``, so frame 1's pixel ``p`` moves to ``p + d``: the flow is
    ``d`` (exact for a uniform ``d``; to first order in the gradient of ``d`` for the smooth field)."""
    m = math.ceil(max_motion) + 2  # margin: no pixel of the crop samples outside the canvas
    n = size + 2 * m
    x = F.avg_pool2d(torch.randn(batch, 3, n, n, generator=gen), 3, 1, 1) * 2
    if local:
        d = (torch.rand(batch, 2, 2, 2, generator=gen) * 2 - 1) * max_motion
        d = F.interpolate(d, size=(n, n), mode="bilinear", align_corners=True).permute(0, 2, 3, 1)
    else:
        d = ((torch.rand(batch, 1, 1, 2, generator=gen) * 2 - 1) * max_motion).expand(batch, n, n, 2)
    ys, xs = torch.meshgrid(torch.arange(n, dtype=torch.float32), torch.arange(n, dtype=torch.float32), indexing="ij")
    grid = (torch.stack([xs, ys], -1) - d) / (n - 1) * 2 - 1
    x2 = F.grid_sample(x, grid, align_corners=True, padding_mode="border")
    frames = torch.stack([x, x2], 1)[..., m:-m, m:-m].clamp(-1, 1)
    return frames, d[:, m:-m, m:-m].reshape(batch, -1, 2)


class PixelMLP(nn.Module):
    """Both frames' 3×3 patches of every pixel -> flow px: ``(B, 2, 3, H, W)`` -> ``(B, H·W, 2)``."""

    def __init__(self, width: int = 128) -> None:
        super().__init__()
        self.net = pixel_mlp(3, width)

    def forward(self, frames: Tensor) -> Tensor:
        return self.net(neighbourhoods(frames, torch.arange(frames.shape[-2] * frames.shape[-1]), 3))


class PerceiverFlow(nn.Module):
    """A flow preset at ``size``, returning px ``(B, H·W, 2)``."""

    def __init__(self, preset: str, size: int, query_residual: bool, attention: str = "default") -> None:
        """``attention``: the decoder attention's output projection as initialised ("default"), started at
        zero ("zeros") or fixed at zero ("off")."""
        super().__init__()
        cfg = perceiver_io.create_model(preset).config
        decoder = {
            "use_query_residual": query_residual,
            "attention_init": "default" if attention == "default" else "zeros",
        }
        self.model = perceiver_io.models.OpticalFlow(cfg.replace(image_size=(size, size), decoder=decoder))
        if attention == "off":  # the decoder row is its query (+ MLP) alone
            self.model.decoder.cross_attention.attention.o_proj.requires_grad_(False)

    def forward(self, frames: Tensor) -> Tensor:
        return self.model(frames).flow.flatten(1, 2) * FLOW_SCALE_FACTOR


def build(name: str, preset: str, size: int) -> nn.Module:
    if name == "mlp":
        return PixelMLP()
    attention = {"perceiver-qres-noattn": "off", "perceiver-qres-zeroattn": "zeros"}.get(name, "default")
    return PerceiverFlow(preset, size, query_residual=name != "perceiver", attention=attention)


class Source:
    """Training batches by step and a fixed held-out set for one data source."""

    def __init__(
        self,
        name: str,
        size: int,
        max_motion: float,
        batch_size: int,
        eval_pairs: int,
        seed: int,
        textures: str,
        steps: int,
        data: dict | None = None,
    ) -> None:
        """``steps``: the training length, which the procedural pairs' augmentation curriculum follows;
        ``data``: more ``flow`` task overrides for the procedural sources (e.g. ``data.texture_detail``)."""
        self.name, self.size, self.max_motion, self.batch_size, self.seed = name, size, max_motion, batch_size, seed
        if name.startswith("procedural"):
            overrides = {
                "model.image_size": [size, size],
                "data.max_motion": max_motion,
                "data.eval_pairs": eval_pairs,
                "data.num_queries": 0,
                "data.textures": textures,
                "train.batch_size": batch_size,
                "train.max_steps": steps,
                # every texture family at the generator's own detail, as these rows were measured before
                # the task's defaults became fine noise (override with --data)
                "data.texture_families": None,
                "data.texture_detail": [4.0, 8.0],
                **(data or {}),
            }
            if name == "procedural-clean":
                overrides.update({f"data.{k}": 0.0 for k in ("max_flip", "max_gain", "max_offset", "max_noise")})
            self.task = get_task_class("flow")(build_config("flow", overrides=overrides), log=lambda m: None)
            self.task.setup()
            held_out = self.task.eval_pairs("valid")
            if name == "procedural-clean":
                self.task.train_data = self.task.train_data.with_config(photometric=False)
                held_out = held_out.with_config(photometric=False)
            pairs = list(held_out)
            self.held_out = (_frames(pairs), torch.stack([p["flow"] for p in pairs]).flatten(2).transpose(1, 2))
        else:
            gen = torch.Generator().manual_seed(10**6 + seed)
            self.held_out = shifted_noise(eval_pairs, size, max_motion, name == "local", gen)
            self.gen = torch.Generator().manual_seed(seed)

    def batch(self, step: int) -> tuple[Tensor, Tensor]:
        if not self.name.startswith("procedural"):
            return shifted_noise(self.batch_size, self.size, self.max_motion, self.name == "local", self.gen)
        task = self.task
        task.step = step  # the augmentation curriculum follows the step
        seeds = [self.seed * 10**9 + step * self.batch_size + i for i in range(self.batch_size)]
        b = task.collate([task.train_data[s] for s in seeds], seeds)
        return b["frames"], b["targets"]


def train_and_score(model: nn.Module, source: Source, steps: int, lr: float, seed: int) -> dict[str, float]:
    torch.manual_seed(seed)
    opt = torch.optim.AdamW(model.parameters(), lr=lr)
    curve = []
    t0 = time.perf_counter()
    for step in range(steps):
        frames, flow = source.batch(step)
        loss = (model(frames) - flow).norm(dim=-1).mean()
        opt.zero_grad()
        loss.backward()
        nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        curve.append(loss.item())
    seconds = time.perf_counter() - t0
    frames, flow = source.held_out
    with torch.no_grad():
        epe = float((model(frames) - flow).norm(dim=-1).mean())
    tenth = max(1, steps // 10)
    return {
        "epe": epe,
        "epe_zero": float(flow.norm(dim=-1).mean()),
        "train_loss_first_tenth": sum(curve[:tenth]) / tenth,
        "train_loss_last_tenth": sum(curve[-tenth:]) / tenth,
        "seconds": round(seconds, 1),
    }


def motion_signal(size: int, max_motion: float, textures: str | None, pairs: int = 8, **scene) -> dict[str, float]:
    """How much motion signal the procedural pairs carry (no photometric changes): the mean |frame 1 -
    frame 2 sampled at p + flow(p)| against the mean |frame 1 - frame 2| (zero flow), over
    non-occluded pixels whose target lies inside the frame; and ``gradient``, frame 1's mean |horizontal
    pixel difference| (how much local texture a 3×3 patch sees; [0, 1] units). A ratio near 1: warping by the true flow
    explains nothing the frames show, and the motion is not observable from them. ``scene``: more
    :class:`~perceiver_io.data.flow.FlowSceneConfig` fields (e.g. ``texture_detail``)."""
    from perceiver_io.data.flow import FlowPairs

    data = FlowPairs("valid", size=(size, size), max_motion=max_motion, photometric=False, textures=textures,
                     silhouettes=textures, length=pairs, **scene)  # fmt: skip
    ys, xs = torch.meshgrid(
        torch.arange(size, dtype=torch.float32), torch.arange(size, dtype=torch.float32), indexing="ij"
    )
    warp, zero, grad = [], [], []
    for i in range(pairs):
        p = data[i]
        grad.append(p["frame1"].diff(dim=-1).abs().mean())
        x, y = xs + p["flow"][0], ys + p["flow"][1]
        grid = torch.stack([x, y], -1)[None] / (size - 1) * 2 - 1
        warped = F.grid_sample(p["frame2"][None], grid, align_corners=True)[0]
        keep = (x >= 0) & (x <= size - 1) & (y >= 0) & (y <= size - 1) & ~p["occluded"].bool()
        warp.append((warped - p["frame1"]).abs().mean(0)[keep])
        zero.append((p["frame2"] - p["frame1"]).abs().mean(0)[keep])
    w, z = float(torch.cat(warp).mean()), float(torch.cat(zero).mean())
    return {
        "size": size,
        "textures": textures or "procedural",
        "warp_residual": w,
        "zero_flow_residual": z,
        "ratio": w / z,
        "gradient": float(torch.stack(grad).mean()),
    }


def noise_gradient(size: int, max_motion: float, local: bool, pairs: int = 8) -> float:
    """Mean |horizontal pixel difference| of the ``global`` / ``local`` smooth noise, in [0, 1] units."""
    frames, _ = shifted_noise(pairs, size, max_motion, local, torch.Generator().manual_seed(0))
    return float(frames[:, 0].diff(dim=-1).abs().mean()) / 2  # frames are in [-1, 1]


@torch.no_grad()
def decoder_row_norms(preset: str, size: int, seed: int = 0) -> dict[str, float]:
    """At initialisation, with the query residual, on ``local`` pairs: mean norms of the decoder's query rows
    (and of their patch-feature and Fourier parts) and of the attention output added to them, and how much
    that output varies over pixels (mean norm of its deviation from the per-image mean over pixels)."""
    torch.manual_seed(seed)
    model = PerceiverFlow(preset, size, query_residual=True).model.eval()
    frames, _ = shifted_noise(4, size, 1.0, True, torch.Generator().manual_seed(seed))
    seen: dict[str, Tensor] = {}
    block = model.decoder.cross_attention
    hooks = [
        block.register_forward_hook(lambda m, args, out: seen.__setitem__("query", args[0])),
        block.attention.register_forward_hook(lambda m, args, out: seen.__setitem__("attention", out)),
    ]
    model(frames)
    for h in hooks:
        h.remove()
    q, a = seen["query"], seen["attention"]
    k = model.config.num_patch_channels  # the image adapter puts the patch features first, then Fourier
    return {
        "query": float(q.norm(dim=-1).mean()),
        "query_patch_part": float(q[..., :k].norm(dim=-1).mean()),
        "query_fourier_part": float(q[..., k:].norm(dim=-1).mean()),
        "attention_output": float(a.norm(dim=-1).mean()),
        "attention_output_spread_over_pixels": float((a - a.mean(1, keepdim=True)).norm(dim=-1).mean()),
    }


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", type=int, default=16, help="square image size")
    ap.add_argument("--steps", type=int, default=300)
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--max-motion", type=float, nargs="+", default=[1.0], help="px bound(s) on the motion")
    ap.add_argument("--sources", default=",".join(SOURCES), help=f"comma-separated, of {SOURCES}")
    ap.add_argument("--models", default=",".join(MODELS), help=f"comma-separated, of {MODELS}")
    ap.add_argument("--preset", default="optical-flow-perceiver-small", help="the Perceiver rows' flow preset")
    ap.add_argument("--eval-pairs", type=int, default=64)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--quick", action="store_true", help="smoke run: 8x8, 3 steps, tiny preset, procedural textures")
    ap.add_argument(
        "--motion-signal", type=int, nargs="*", metavar="SIZE",
        help="no training: the motion signal in the procedural pairs at these sizes (see motion_signal)",
    )  # fmt: skip
    ap.add_argument(
        "--row-norms", action="store_true", help="no training: the decoder's query rows and attention output at init"
    )
    ap.add_argument(
        "--data", nargs="*", default=[], metavar="KEY=VALUE",
        help="flow task overrides for the procedural sources, e.g. data.texture_detail=[1.5,3] "
        "data.texture_families=[noise] (texture_* also apply to --motion-signal)",
    )  # fmt: skip
    args = ap.parse_args(argv)
    data = parse_overrides(args.data)
    scene = {k.split(".", 1)[1]: tuple(v) for k, v in data.items() if k.startswith("data.texture_")}
    if args.row_norms:
        norms = decoder_row_norms(args.preset, args.size, args.seed)
        for name, value in norms.items():
            print(f"{name:38s} {value:8.3f}")
        print(json.dumps({"preset": args.preset, "size": args.size, "row_norms": norms}))
        return {"row_norms": norms}
    if args.motion_signal is not None:
        rows = [
            motion_signal(size, args.max_motion[0], textures, **scene)
            for size in args.motion_signal or [16, 32, 64]
            for textures in (None, "fashion-mnist")
        ]
        print("| size | textures | warp residual | zero-flow residual | ratio | gradient |")
        print("|---:|---|---:|---:|---:|---:|")
        for r in rows:
            print(
                f"| {r['size']} | {r['textures']} | {r['warp_residual']:.4f} | "
                f"{r['zero_flow_residual']:.4f} | {r['ratio']:.2f} | {r['gradient']:.3f} |"
            )
        noise = {
            f"{kind}@{size}": noise_gradient(size, args.max_motion[0], kind == "local")
            for size in args.motion_signal or [16, 32, 64]
            for kind in ("global", "local")
        }
        print("gradient of the smooth-noise sources:", ", ".join(f"{k} {v:.3f}" for k, v in noise.items()))
        print(json.dumps({"max_motion": args.max_motion[0], "data": args.data, "motion_signal": rows, "noise": noise}))
        return {"motion_signal": rows}
    sources, models = args.sources.split(","), args.models.split(",")
    for name, chosen, allowed in (("--sources", sources, SOURCES), ("--models", models, MODELS)):
        if bad := [c for c in chosen if c not in allowed]:
            ap.error(f"{name}: unknown {bad}, expected some of {allowed}")
    textures = "auto"
    if args.quick:
        args.size, args.steps, args.eval_pairs, args.preset, textures = 8, 3, 2, "test-optical-flow", "none"
    torch.set_num_threads(1)

    rows = []
    for motion in args.max_motion:
        for src_name in sources:
            source = Source(
                src_name, args.size, motion, args.batch_size, args.eval_pairs, args.seed, textures, args.steps, data
            )
            for model_name in models:
                torch.manual_seed(args.seed)
                model = build(model_name, args.preset, args.size)
                r = train_and_score(model, source, args.steps, args.lr, args.seed)
                rows.append({"source": src_name, "max_motion": motion, "model": model_name, **r})
                print(
                    f"  {src_name:10s} |d|<={motion:<4g} {model_name:15s} EPE {r['epe']:.3f} "
                    f"(zero {r['epe_zero']:.3f}) {r['seconds']:.0f} s",
                    flush=True,
                )

    print(f"\n{args.size}x{args.size}, {args.steps} steps x {args.batch_size} pairs, {args.eval_pairs} held-out pairs, "
          f"Perceiver preset {args.preset}", *args.data)  # fmt: skip
    print("| source | max motion (px) | model | held-out EPE | zero flow | EPE / zero | loss, first / last tenth |")
    print("|---|---:|---|---:|---:|---:|---|")
    for r in rows:
        print(
            f"| {r['source']} | {r['max_motion']:g} | {r['model']} | {r['epe']:.3f} | {r['epe_zero']:.3f} | "
            f"{r['epe'] / r['epe_zero']:.2f} | {r['train_loss_first_tenth']:.3f} / {r['train_loss_last_tenth']:.3f} |"
        )
    summary = {
        "size": args.size,
        "steps": args.steps,
        "batch_size": args.batch_size,
        "preset": args.preset,
        "seed": args.seed,
        "data": args.data,
        "rows": rows,
        "machine": f"{platform.machine()}, torch {torch.__version__}",
    }
    print(json.dumps(summary))
    return summary


if __name__ == "__main__":
    main()
