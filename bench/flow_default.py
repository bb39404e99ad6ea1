"""The published flow model's default call, ``model(frames)``, across code versions and chunk settings.

Each measurement runs in a fresh process (peak memory is ``ru_maxrss`` growth from before the model
is built); the versions and settings are interleaved, round by round, so that they see the same
machine state. ``--src`` adds another source tree (e.g. a ``git worktree`` of an older commit) whose
``perceiver_io`` is imported instead of this one's; its default call is timed as it was then.
Also times the Fourier features of the 368×496 grid: per axis (``grid_fourier_features``) vs
pointwise (``fourier_features(grid_positions(...))``).

    python bench/flow_default.py                                  # this tree: default, one piece, 16384
    git worktree add /tmp/old 572c211 && python bench/flow_default.py --src old=/tmp/old/src --rounds 2
    python bench/flow_default.py --quick                          # smoke test (tiny model, < 30 s)
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parents[1] / "src"


def worker(setting: str, quick: bool, reps: int) -> dict:
    import torch

    import perceiver_io

    rss0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    torch.manual_seed(0)
    name, size = ("test-optical-flow", (24, 32)) if quick else ("optical-flow-perceiver", (368, 496))
    model = perceiver_io.create_model(name).eval()
    frames = torch.rand(1, 2, 3, *size) * 2 - 1
    kwargs = {} if setting == "default" else {"chunk_size": None if setting == "none" else int(setting)}
    times = []
    with torch.no_grad():
        model(frames, **kwargs)  # warm-up
        for _ in range(reps):
            t0 = time.perf_counter()
            model(frames, **kwargs)
            times.append(time.perf_counter() - t0)
    rss = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - rss0) / 1024
    return {"best_s": min(times), "median_s": sorted(times)[len(times) // 2], "peak_mib": rss}


def grid_timing(quick: bool) -> dict:
    import torch

    from perceiver_io.layers.position import fourier_features, grid_fourier_features, grid_positions

    dims = (24, 32) if quick else (368, 496)

    def best(fn, n=3):
        out = []
        for _ in range(n):
            t0 = time.perf_counter()
            fn()
            out.append(time.perf_counter() - t0)
        return min(out)

    a = fourier_features(grid_positions(dims), 64, dims)
    b = grid_fourier_features(dims, 64, dims)
    return {
        "pointwise_s": best(lambda: fourier_features(grid_positions(dims), 64, dims)),
        "per_axis_s": best(lambda: grid_fourier_features(dims, 64, dims)),
        "bit_identical": bool(torch.equal(a, b)),
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--src", action="append", default=[], help="LABEL=PATH of another tree's src/ (repeatable)")
    p.add_argument("--settings", default="default,none,16384", help="this tree's calls: default, none or N")
    p.add_argument("--rounds", type=int, default=1)
    p.add_argument("--reps", type=int, default=3)
    p.add_argument("--quick", action="store_true")
    p.add_argument("--worker", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.worker:
        print(json.dumps(worker(args.worker, args.quick, args.reps)))
        return
    jobs = [("this", str(HERE), s) for s in args.settings.split(",")]
    for spec in args.src:
        label, path = spec.split("=", 1)
        jobs.append((label, path, "default"))
    results: dict[str, list[dict]] = {}
    for _ in range(args.rounds):
        for label, path, setting in jobs:
            env = {**os.environ, "PYTHONPATH": path}
            cmd = [sys.executable, __file__, "--worker", setting, "--reps", str(args.reps)] + (["--quick"] * args.quick)
            out = subprocess.run(cmd, env=env, capture_output=True, text=True, check=True).stdout
            results.setdefault(f"{label}/{setting}", []).append(json.loads(out.strip().splitlines()[-1]))
    print(f"flow model(frames), fp32, {'tiny' if args.quick else '368×496'}; best of {args.reps} after a warm-up")
    print(f"{'version/call':24s} {'best s per round':>24s} {'peak MiB':>10s}")
    summary = {}
    for key, rows in results.items():
        bests = " / ".join(f"{r['best_s']:.3f}" for r in rows)
        peak = max(r["peak_mib"] for r in rows)
        print(f"{key:24s} {bests:>24s} {peak:10.0f}")
        summary[key] = {"best_s": [round(r["best_s"], 4) for r in rows], "peak_mib": round(peak)}
    grid = grid_timing(args.quick)
    print(
        f"Fourier grid features: pointwise {grid['pointwise_s']:.3f} s, per axis {grid['per_axis_s']:.3f} s, "
        f"bit-identical {grid['bit_identical']}"
    )
    summary["fourier_grid"] = {k: round(v, 4) if isinstance(v, float) else v for k, v in grid.items()}
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
