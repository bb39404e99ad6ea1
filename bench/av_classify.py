"""Audio-visual classification: which inputs (audio, video, both) × which read-out (attention decoder
vs pooled latents), everything else equal (Perceiver IO's AudioSet comparison, Table 5, at CPU scale).

Each cell trains ``perceiver-io train av-classify`` with the same model, data, steps, batch and
seeds, changing only ``model.modalities`` and ``model.head``; each run's final model is then
evaluated on the test clips (unseen digit images and unseen voices). Printed: test accuracy per
cell (mean ± standard error over ``--seeds``), parameters and training time; the last line is a
JSON summary. Finished runs (``RUN/model`` present) are not trained again, so an interrupted sweep
resumes where it stopped.

    python bench/av_classify.py --seeds 0 1 --jobs 2          # the table in docs/results.md §7
    python bench/av_classify.py --quick --root /tmp/avc       # smoke run: 20 steps
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
MODALITIES = {"audio": ["audio"], "video": ["image"], "audio+video": ["audio", "image"]}
HEADS = ("attention", "pool")


def train(run_dir: Path, modalities: str, head: str, seed: int, args: argparse.Namespace) -> float:
    """Train one cell unless it has finished before; -> seconds spent (0 if it had)."""
    if (run_dir / "model").is_dir():
        return 0.0
    run_dir.parent.mkdir(parents=True, exist_ok=True)
    cmd = [
        sys.executable, "-m", "perceiver_io.cli", "train", "av-classify",
        f"model.modalities=[{','.join(MODALITIES[modalities])}]", f"model.head={head}",
        f"train.seed={seed}", f"train.max_steps={args.steps}", "train.num_threads=1", "train.progress=false",
        f"train.eval_every={args.steps}", f"train.run_dir={run_dir}", *args.overrides,
    ]  # fmt: skip
    t0 = time.perf_counter()
    with open(run_dir.parent / f"{run_dir.name}.log", "w") as log:
        proc = subprocess.run(cmd, stdout=log, stderr=subprocess.STDOUT, cwd=ROOT)
    if proc.returncode != 0:
        raise RuntimeError(f"training {run_dir.name} failed (exit {proc.returncode}); see {run_dir}.log")
    return time.perf_counter() - t0


def evaluate(run_dir: Path) -> dict:
    from perceiver_io.checkpoints import from_pretrained
    from perceiver_io.training.run import run_evaluate

    metrics = run_evaluate("av-classify", str(run_dir), split="test", echo=lambda m: None)
    return {"accuracy": metrics["accuracy"], "params": from_pretrained(run_dir / "model").num_parameters()}


def _mean_se(xs: list[float]) -> tuple[float, float]:
    return statistics.fmean(xs), (statistics.stdev(xs) / len(xs) ** 0.5 if len(xs) > 1 else float("nan"))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--root", default=str(ROOT / "runs" / "av-classify"), help="where the runs go")
    p.add_argument("--seeds", type=int, nargs="+", default=[0])
    p.add_argument("--steps", type=int, default=1500)
    p.add_argument("--jobs", type=int, default=1, help="runs trained at once (one thread each)")
    p.add_argument("--modalities", nargs="+", default=list(MODALITIES), choices=list(MODALITIES))
    p.add_argument("--heads", nargs="+", default=list(HEADS), choices=HEADS)
    p.add_argument("--quick", action="store_true", help="20 steps, small splits (a smoke run, not a result)")
    p.add_argument("overrides", nargs="*", help="extra key=value overrides for every run")
    args = p.parse_args()
    if args.quick:
        args.steps = 20
        args.overrides += ["data.clips.num_train=64", "data.clips.num_valid=16", "data.clips.num_test=16",
                           "train.batch_size=8", "train.warmup_steps=2", "train.checkpoint_every=10"]  # fmt: skip
    root = Path(args.root)
    cells = [(m, h, s) for m in args.modalities for h in args.heads for s in args.seeds]
    runs = {c: root / f"{c[0]}-{c[1]}-s{c[2]}" for c in cells}
    with ThreadPoolExecutor(args.jobs) as pool:
        seconds = dict(zip(cells, pool.map(lambda c: train(runs[c], *c, args), cells), strict=True))
    results = {c: {**evaluate(runs[c]), "train_s": seconds[c]} for c in cells}

    print(f"\naudio-visual digits test accuracy, {args.steps} steps, seeds {args.seeds} (mean ± s.e. over seeds)")
    print(f"{'inputs':12} {'head':10} {'accuracy':>16} {'params':>9}")
    summary = {"steps": args.steps, "seeds": args.seeds, "cells": [], "attention_minus_pool": {}}
    for m in args.modalities:
        for h in args.heads:
            accs = [results[(m, h, s)]["accuracy"] for s in args.seeds]
            mean, se = _mean_se(accs)
            params = results[(m, h, args.seeds[0])]["params"]
            print(f"{m:12} {h:10} {100 * mean:9.1f} ± {100 * se:4.1f} % {params:>9,}")
            cell = {"inputs": m, "head": h, "accuracy": accs, "mean": mean, "se": se, "params": params}
            summary["cells"].append(cell)
    if set(HEADS) <= set(args.heads):  # paired by seed: same data order, same encoder initialisation
        print("\nattention - pool, paired by seed (mean ± s.e.)")
        for m in args.modalities:
            diffs = [results[(m, "attention", s)]["accuracy"] - results[(m, "pool", s)]["accuracy"] for s in args.seeds]
            mean, se = _mean_se(diffs)
            print(f"{m:12} {100 * mean:+9.1f} ± {100 * se:4.1f} points")
            summary["attention_minus_pool"][m] = {"differences": diffs, "mean": mean, "se": se}
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
