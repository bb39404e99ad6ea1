"""Interleaved A/B timing of this library vs ``transformers`` in one process.

``bench/compare.py`` times every implementation in its own process, which gives clean peak-memory
figures but lets process-to-process variance (allocation, page placement, a busy neighbour) into
time ratios near 1. This script builds both models from the same weights (as compare.py does),
then alternates their calls, so that both see the same machine state; it reports medians and
the ratio. No memory figures.

    python bench/ab.py --config imagenet --mode train --precision bf16
    python bench/ab.py --config language --batch 4 --mode infer --precision bf16
"""

from __future__ import annotations

import argparse
import contextlib
import json
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from compare_specs import SPECS  # noqa: E402


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", choices=["language", "imagenet"], default="language")
    p.add_argument("--mode", choices=["infer", "train"], default="infer")
    p.add_argument("--precision", choices=["fp32", "bf16"], default="fp32")
    p.add_argument("--batch", type=int, default=1)
    p.add_argument("--rounds", type=int, default=5, help="timed calls of each model, after one warm-up each")
    p.add_argument("--quick", action="store_true", help="tiny sizes (smoke test)")
    args = p.parse_args()
    torch.manual_seed(0)
    spec = SPECS[args.config](args.quick, args)
    hf = spec.build_hf()
    models = {"hf": hf, "ours": spec.build_ours(hf=hf)}
    x = spec.inputs(args.batch)
    train = args.mode == "train"
    steps = {}
    for name, model in models.items():
        model.train(train)
        run = spec.runner(name, model, x, train, models["ours"])
        opt = torch.optim.AdamW(model.parameters(), lr=1e-5) if train else None

        def step(run=run, opt=opt) -> None:
            autocast = (
                torch.autocast("cpu", dtype=torch.bfloat16) if args.precision == "bf16" else contextlib.nullcontext()
            )
            with torch.inference_mode(not train), autocast:
                out = run()
            if opt is not None:
                out.float().square().mean().backward()
                opt.step()
                opt.zero_grad(set_to_none=True)

        steps[name] = step
    times: dict[str, list[float]] = {name: [] for name in steps}
    for i in range(args.rounds + 1):
        for name, step in steps.items():
            t0 = time.perf_counter()
            step()
            if i:  # the first round is the warm-up
                times[name].append(time.perf_counter() - t0)
    medians = {name: statistics.median(t) for name, t in times.items()}
    print(f"# ab: {args.config} batch {args.batch} {args.mode} {args.precision}, {args.rounds} interleaved rounds")
    for name, t in times.items():
        print(f"{name:5} median {medians[name]:.3f} s   " + " ".join(f"{v:.3f}" for v in t))
    ratio = medians["hf"] / medians["ours"]
    print(f"transformers / ours = {ratio:.2f}")
    print(
        json.dumps(
            {"hf_s": round(medians["hf"], 4), "ours_s": round(medians["ours"], 4), "speedup_vs_hf": round(ratio, 3)}
        )
    )


if __name__ == "__main__":
    main()
