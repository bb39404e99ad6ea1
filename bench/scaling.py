"""Scaling of Perceiver IO vs a standard Transformer encoder in input size M and query count O.

Measures forward and forward+backward wall time (median after warm-up) and peak memory for

* Perceiver IO (N latents × D channels, one cross-attention, L latent self-attention layers,
  a decoder with O queries) as M grows, and as O grows at fixed M;
* a standard Transformer encoder of the same width D and depth L on all M inputs (a linear
  embedding, L self-attention blocks, mean pool), until it runs past ``--time-limit``.

Both use the same SDPA attention and blocks. Each point runs in a fresh subprocess so that
peak memory (resident set growth on CPU, ``max_memory_allocated`` on CUDA) is its own.
Prints a table, writes a log-log PNG, and prints the fitted slopes as JSON on the last line.

    python bench/scaling.py                       # full run (2^10 .. 2^20), ~10 min on 2 cores
    python bench/scaling.py --max-log2 14 --quick # smoke test
"""

from __future__ import annotations

import argparse
import json
import math
import platform
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch
from torch import nn

from perceiver_io import DecoderConfig, EncoderConfig, PerceiverIO, PerceiverIOConfig, QueryConfig
from perceiver_io.layers.blocks import SelfAttentionBlock


def build(kind: str, args: argparse.Namespace) -> nn.Module:
    if kind == "perceiver":
        return PerceiverIO(
            PerceiverIOConfig(
                num_input_channels=args.channels,
                encoder=EncoderConfig(
                    num_latents=args.latents,
                    num_latent_channels=args.width,
                    num_blocks=1,
                    num_self_attends_per_block=args.depth,
                    num_self_attention_heads=args.heads,
                    num_cross_attention_heads=1,
                    self_attention_widening_factor=4,
                ),
                decoder=DecoderConfig(num_query_channels=args.channels, num_output_channels=args.channels),
                queries=QueryConfig(kind="given"),
            )
        )
    return StandardTransformer(args.channels, args.width, args.depth, args.heads)


class StandardTransformer(nn.Module):
    """Linear embedding -> L pre-LN self-attention blocks over all M inputs -> per-input outputs."""

    def __init__(self, channels: int, width: int, depth: int, heads: int) -> None:
        super().__init__()
        self.embed = nn.Linear(channels, width)
        self.blocks = nn.ModuleList(SelfAttentionBlock(width, heads, widening_factor=4) for _ in range(depth))
        self.head = nn.Linear(width, channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.embed(x)
        for block in self.blocks:
            h = block(h)
        return self.head(h)


def rss_mib() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * resource.getpagesize() / 2**20


def measure(kind: str, m: int, o: int, args: argparse.Namespace) -> dict:
    """Time forward and forward+backward of one configuration; runs inside a worker process."""
    torch.manual_seed(0)
    device = torch.device(args.device)
    base = rss_mib()  # peak memory counts the model, its inputs and all activations
    model = build(kind, args).to(device)
    x = torch.randn(1, m, args.channels, device=device)
    queries = torch.randn(1, o, args.channels, device=device)
    run = (lambda: model(x, queries=queries).outputs) if kind == "perceiver" else (lambda: model(x))
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
        base = 0.0
    result = {"model": kind, "M": m, "O": o}
    for mode in ("fwd", "fwd_bwd"):
        times = []
        deadline = time.perf_counter() + args.min_time
        for i in range(args.max_reps + 1):
            sync()
            t0 = time.perf_counter()
            if mode == "fwd":
                with torch.no_grad():
                    run()
            else:
                run().square().mean().backward()
                model.zero_grad(set_to_none=True)
            sync()
            if i > 0 or args.quick:  # the first call is warm-up
                times.append(time.perf_counter() - t0)
            if times and (time.perf_counter() > deadline or times[-1] > args.time_limit / 4):
                break
        result[f"{mode}_s"] = statistics.median(times)
    if device.type == "cuda":
        peak = torch.cuda.max_memory_allocated() / 2**20
    else:
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB -> MiB on Linux
    result["peak_mib"] = peak - base
    return result


def run_point(kind: str, m: int, o: int, args: argparse.Namespace) -> dict | None:
    cmd = [sys.executable, __file__, "--worker", kind, str(m), str(o), *args.passthrough]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        print(f"  {kind} M={m} O={o} failed ({proc.returncode}): {proc.stderr.strip().splitlines()[-1:]}")
        return None
    return json.loads(proc.stdout.strip().splitlines()[-1])


def slope(rows: list[dict], x: str, y: str, lo: int, hi: int) -> float | None:
    pts = [(math.log2(r[x]), math.log2(r[y])) for r in rows if lo <= r[x] <= hi and r[y] > 0]
    if len(pts) < 2:
        return None
    mx, my = statistics.fmean(p[0] for p in pts), statistics.fmean(p[1] for p in pts)
    den = sum((p[0] - mx) ** 2 for p in pts)
    return sum((p[0] - mx) * (p[1] - my) for p in pts) / den


def plot(rows_m: list[dict], rows_o: list[dict], path: Path, args: argparse.Namespace) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(15, 4.5))
    for kind, style in (("perceiver", "o-"), ("transformer", "s--")):
        rs = [r for r in rows_m if r["model"] == kind]
        if not rs:
            continue
        ms = [r["M"] for r in rs]
        axes[0].loglog(ms, [r["fwd_s"] for r in rs], style, base=2, label=f"{kind} forward")
        axes[0].loglog(ms, [r["fwd_bwd_s"] for r in rs], style, base=2, alpha=0.6, label=f"{kind} fwd+bwd")
        axes[1].loglog(ms, [max(r["peak_mib"], 1e-1) for r in rs], style, base=2, label=kind)
    if rows_o:
        os_ = [r["O"] for r in rows_o]
        axes[2].loglog(os_, [r["fwd_s"] for r in rows_o], "o-", base=2, label="perceiver forward")
        axes[2].loglog(os_, [r["fwd_bwd_s"] for r in rows_o], "o-", base=2, alpha=0.6, label="perceiver fwd+bwd")
    axes[0].set(xlabel="input size M", ylabel="seconds", title=f"time vs M (N={args.latents}, D={args.width})")
    axes[1].set(xlabel="input size M", ylabel="peak memory (MiB)", title="memory vs M (fwd+bwd)")
    axes[2].set(xlabel="number of queries O", ylabel="seconds", title=f"time vs O (M={args.o_sweep_m})")
    for ax in axes:
        ax.grid(True, which="both", alpha=0.3)
        ax.legend()
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--min-log2", type=int, default=10, help="smallest M and O is 2^this")
    p.add_argument("--max-log2", type=int, default=20, help="largest M and O is 2^this")
    p.add_argument("--fit-min-log2", type=int, default=12, help="fit slopes from 2^this upwards")
    p.add_argument("--o-sweep-m", type=int, default=2**12, help="input size M during the O sweep")
    p.add_argument("--o-fixed", type=int, default=256, help="query count O during the M sweep")
    p.add_argument("--latents", type=int, default=256)
    p.add_argument("--width", type=int, default=256)
    p.add_argument("--channels", type=int, default=64, help="input (and query) channels C")
    p.add_argument("--depth", type=int, default=4, help="latent (Perceiver) or encoder (Transformer) layers")
    p.add_argument("--heads", type=int, default=8)
    p.add_argument("--time-limit", type=float, default=60.0, help="stop the Transformer after a point this slow")
    p.add_argument("--min-time", type=float, default=1.0, help="repeat each measurement for at least this long")
    p.add_argument("--max-reps", type=int, default=5)
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--quick", action="store_true", help="no warm-up, one repetition (smoke test)")
    p.add_argument("--out", type=Path, default=Path("bench/out/scaling.png"))
    p.add_argument("--worker", nargs=3, metavar=("KIND", "M", "O"), help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.worker:
        kind, m, o = args.worker
        print(json.dumps(measure(kind, int(m), int(o), args)))
        return
    keep = ("latents", "width", "channels", "depth", "heads", "time_limit", "min_time", "max_reps", "device")
    args.passthrough = [f"--{k.replace('_', '-')}={getattr(args, k)}" for k in keep] + (
        ["--quick"] if args.quick else []
    )

    sizes = [2**k for k in range(args.min_log2, args.max_log2 + 1)]
    print(
        f"# scaling: N={args.latents} D={args.width} C={args.channels} L={args.depth} heads={args.heads} "
        f"device={args.device} torch={torch.__version__} threads={torch.get_num_threads()} {platform.processor()}"
    )
    header = f"{'model':<12}{'M':>9}{'O':>9}{'fwd ms':>12}{'fwd+bwd ms':>13}{'peak MiB':>11}"
    print(header)
    rows_m: list[dict] = []
    transformer_alive = True
    for m in sizes:
        for kind in ("perceiver", "transformer"):
            if kind == "transformer" and not transformer_alive:
                continue
            r = run_point(kind, m, args.o_fixed if kind == "perceiver" else m, args)
            if r is None:
                transformer_alive = transformer_alive and kind != "transformer"
                continue
            rows_m.append(r)
            print(
                f"{kind:<12}{m:>9}{r['O']:>9}{r['fwd_s'] * 1e3:>12.1f}{r['fwd_bwd_s'] * 1e3:>13.1f}"
                f"{r['peak_mib']:>11.0f}",
                flush=True,
            )
            if kind == "transformer" and r["fwd_bwd_s"] * 4 > args.time_limit:  # the next size is ~4x slower
                print(f"  transformer stops: the next size would exceed --time-limit {args.time_limit:.0f} s")
                transformer_alive = False
    rows_o: list[dict] = []
    for o in sizes:
        r = run_point("perceiver", args.o_sweep_m, o, args)
        if r is None:
            continue
        rows_o.append(r)
        print(
            f"{'perceiver':<12}{args.o_sweep_m:>9}{o:>9}{r['fwd_s'] * 1e3:>12.1f}{r['fwd_bwd_s'] * 1e3:>13.1f}"
            f"{r['peak_mib']:>11.0f}",
            flush=True,
        )

    lo, hi = 2**args.fit_min_log2, 2**args.max_log2
    per = [r for r in rows_m if r["model"] == "perceiver"]
    tra = [r for r in rows_m if r["model"] == "transformer"]
    largest = max(per, key=lambda r: r["M"]) if per else None
    summary = {
        "perceiver_time_slope_M": slope(per, "M", "fwd_s", lo, hi),
        "perceiver_fwd_bwd_time_slope_M": slope(per, "M", "fwd_bwd_s", lo, hi),
        "transformer_time_slope_M": slope(tra, "M", "fwd_s", lo, hi),
        "transformer_fwd_bwd_time_slope_M": slope(tra, "M", "fwd_bwd_s", lo, hi),
        "perceiver_time_slope_O": slope(rows_o, "O", "fwd_s", lo, hi),
        "perceiver_fwd_bwd_time_slope_O": slope(rows_o, "O", "fwd_bwd_s", lo, hi),
        "perceiver_memory_slope_M": slope(per, "M", "peak_mib", lo, hi),
        # over the top three octaves, where the fixed latent cost no longer dominates
        "perceiver_time_slope_M_tail": slope(per, "M", "fwd_s", hi // 8, hi),
        "perceiver_fwd_bwd_time_slope_M_tail": slope(per, "M", "fwd_bwd_s", hi // 8, hi),
        "perceiver_time_slope_O_tail": slope(rows_o, "O", "fwd_s", hi // 8, hi),
        "perceiver_largest_M": largest["M"] if largest else None,
        "perceiver_peak_mib_at_largest_M": round(largest["peak_mib"]) if largest else None,
        "transformer_largest_M": max((r["M"] for r in tra), default=None),
        "device": args.device,
    }
    summary = {k: round(v, 3) if isinstance(v, float) else v for k, v in summary.items()}
    print(f"slopes fitted on log2-log2 over {lo} <= size <= {hi} (*_tail: {hi // 8} <= size <= {hi})")
    plot(rows_m, rows_o, args.out, args)
    print(f"wrote {args.out}")
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
