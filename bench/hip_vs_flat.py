"""HiP vs a flat Perceiver IO of about the same size: cost as the input grows, and MAE + linear probe.

**scaling**: for images of S² pixels (64² .. 512²) and audio of 16k .. 1M samples, one masked
auto-encoding training step (batch 1, 75 % of the inputs hidden, MSE on the hidden ones) of

* ``hip-cpu``: 16 -> 4 -> 1 -> 4 -> 16 groups, latents (32, 64, 64, 64, 32) per group, widths
  (64, 128, 256, 128, 64);
* ``flat-cpu``: one block of 256 × 256 latents over all inputs, 5 self-attention layers;

with the same embedding width (32), learned positions and reconstruction head. Reported: forward
FLOPs (``FlopCounterMode`` on the meta device, attention on its einsum path), forward+backward time
(median after a warm-up) and whole-process peak RSS, each point in a fresh process. A model stops
at the first size where a step exceeds ``--time-limit`` or the process exceeds ``--memory-gib``.

**probe** (``--runs HIP_DIR FLAT_DIR``, run directories of ``perceiver-io train hip-mae``): the
linear-probe accuracy and the test reconstruction of both trained models, beside the same probe on
untrained models of each architecture and on the raw 28² pixels (without ``--runs``: the untrained
models of ``configs/hip-mae*.yaml`` and the raw pixels only).

    python bench/hip_vs_flat.py --sections scaling
    python bench/hip_vs_flat.py --sections probe --runs runs/hip-mae runs/hip-mae-flat
    python bench/hip_vs_flat.py --sections probe     # untrained and raw-pixel controls only
    python bench/hip_vs_flat.py --quick            # smoke run
"""

from __future__ import annotations

import argparse
import json
import platform
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch

import perceiver_io
from perceiver_io.models.hip import HiP

sys.path.insert(0, str(Path(__file__).resolve().parent))
from flops import count_flops  # noqa: E402

MODELS = ("hip-cpu", "flat-cpu")
ROOT = Path(__file__).resolve().parents[1]


def build(name: str, num_inputs: int) -> HiP:
    return perceiver_io.create_model(name, input_index_dims=(num_inputs,), input_channels=(1,))


def trunk_parameters(model: HiP) -> int:
    """Parameters without the per-input position embeddings (which grow with the input)."""
    return model.num_parameters() - sum(p.numel() for p in model.positions.parameters())


def forward_flops(name: str, num_inputs: int) -> int:
    with torch.device("meta"):
        model = build(name, num_inputs)
        x = torch.empty(1, num_inputs, 1)
        visible = torch.ones(1, num_inputs, dtype=torch.bool)
        return count_flops(lambda: model({"image": x}, {"image": visible}), model)


def measure(name: str, num_inputs: int, args: argparse.Namespace) -> dict:
    """One configuration, inside a worker process."""
    limit = int(args.memory_gib * 2**30)
    resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    torch.manual_seed(0)
    model = build(name, num_inputs)
    x = torch.randn(1, num_inputs, 1)
    visible = torch.rand(1, num_inputs) > 0.75
    times = []
    for i in range(args.reps + 1):
        t0 = time.perf_counter()
        out = model({"image": x}, {"image": visible}).reconstruction["image"]
        ((out - x).square().squeeze(-1) * ~visible).sum().backward()
        model.zero_grad(set_to_none=True)
        dt = time.perf_counter() - t0
        if i > 0 or args.reps == 0:
            times.append(dt)
        if dt > args.time_limit:
            break
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return {"step_s": statistics.median(times), "peak_rss_mib": peak}


def run_point(name: str, num_inputs: int, args: argparse.Namespace) -> dict:
    cmd = [sys.executable, __file__, "--worker", name, str(num_inputs), "--reps", str(args.reps),
           "--time-limit", str(args.time_limit), "--memory-gib", str(args.memory_gib)]  # fmt: skip
    if args.threads:
        cmd += ["--threads", str(args.threads)]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        err = (proc.stderr.strip().splitlines() or ["?"])[-1]
        return {"failed": "out of memory" if "memory" in err.lower() or proc.returncode < 0 else err[:80]}
    return json.loads(proc.stdout.strip().splitlines()[-1])


def scaling(args: argparse.Namespace) -> list[dict]:
    sizes = [("image", s * s, f"{s}²") for s in args.image_sizes] + [
        ("audio", n, f"{n // 1024}k" if n < 2**20 else f"{n / 2**20:g}M") for n in args.audio_sizes
    ]
    rows, stopped = [], set()
    for kind, m, label in sizes:
        for name in MODELS:
            row = {"modality": kind, "inputs": m, "label": label, "model": name}
            with torch.device("meta"):
                model = build(name, m)
            row["params"], row["trunk_params"] = model.num_parameters(), trunk_parameters(model)
            row["fwd_gflops"] = forward_flops(name, m) / 1e9
            if (kind, name) in stopped:
                row["skipped"] = True
            else:
                row.update(run_point(name, m, args))
                if "failed" in row or row["step_s"] > args.time_limit:
                    stopped.add((kind, name))
            rows.append(row)
            print(_fmt(row), flush=True)
    return rows


def _fmt(r: dict) -> str:
    cost = (
        "skipped (stopped at a smaller size)"
        if r.get("skipped")
        else r["failed"]
        if "failed" in r
        else f"{r['step_s']:8.2f} s  {r['peak_rss_mib']:9,.0f} MiB"
    )
    sizes = f"{r['modality']:5} {r['label']:>6} {r['inputs']:>9,} {r['model']:9}"
    return f"{sizes} {r['params']:>12,} {r['trunk_params']:>11,} {r['fwd_gflops']:9.2f}  {cost}"


def probe(args: argparse.Namespace) -> list[dict]:
    """Linear probes of trained runs (``--runs``) beside untrained models of the same configs; with no
    runs, the untrained controls of ``--configs``. Always the raw-pixel control."""
    from perceiver_io.checkpoints import from_pretrained
    from perceiver_io.tasks import build_config, get_task_class
    from perceiver_io.tasks.hip_mae import linear_probe
    from perceiver_io.training.overrides import flatten
    from perceiver_io.training.run import load_run_config

    sources = [("run", r) for r in args.runs] or [("config", c) for c in args.configs]
    rows, task = [], None
    for kind, where in sources:
        if kind == "run":
            _, saved = load_run_config(where, "hip-mae")
            cfg = build_config("hip-mae", base=flatten(saved))
        else:
            cfg = build_config("hip-mae", config_file=where)
        task = get_task_class("hip-mae")(cfg, log=lambda m: None)
        d = cfg.data
        n_train, n_test = args.probe_train or d.probe_train, args.probe_test or d.probe_test
        name = "HiP" if cfg.model.num_blocks > 1 else "flat"
        torch.manual_seed(cfg.train.seed)
        fresh = HiP(cfg.model).eval()
        row = {"model": name, "source": str(where), "params": fresh.num_parameters()}
        row["untrained_probe_accuracy"] = linear_probe(task, fresh, n_train, n_test)["probe_accuracy"]
        text = f"untrained probe {row['untrained_probe_accuracy']:.2%}"
        if kind == "run":
            model = from_pretrained(Path(where) / "model")
            row.update(task.evaluate(model.eval(), "test"))
            row["probe_accuracy"] = linear_probe(task, model, n_train, n_test)["probe_accuracy"]
            text = (
                f"MSE {row['loss']:.4f} PSNR {row['psnr']:.2f} dB (mean-visible "
                f"{row['baseline_mean_visible_psnr']:.2f})  probe {row['probe_accuracy']:.2%}  " + text
            )
        row.update(probe_train=n_train, probe_test=n_test)
        rows.append(row)
        print(f"{name:5} {text}", flush=True)
    if task is not None:
        rows.append({"model": "raw pixels", "probe_accuracy": raw_pixel_probe(task, n_train, n_test)})
        print(f"raw 28² pixels: probe {rows[-1]['probe_accuracy']:.2%} ({n_train:,} / {n_test:,} images)")
    return rows


def raw_pixel_probe(task, num_train: int, num_test: int) -> float:
    """The same logistic-regression probe on the raw 28² pixels."""
    import torch.nn.functional as F
    from torch import nn

    (xtr, ytr), (xte, yte) = task.split_data("train"), task.split_data("test")
    xtr, xte = xtr[:num_train].flatten(1).float() / 255, xte[:num_test].flatten(1).float() / 255
    ytr, yte = ytr[:num_train], yte[:num_test]
    mu, sd = xtr.mean(0), xtr.std(0).clamp_min(1e-3)
    xtr, xte = (xtr - mu) / sd, (xte - mu) / sd
    head = nn.Linear(xtr.shape[1], int(ytr.max()) + 1)
    opt = torch.optim.LBFGS(head.parameters(), lr=1.0, max_iter=300, line_search_fn="strong_wolfe")

    def closure():
        opt.zero_grad()
        loss = F.cross_entropy(head(xtr), ytr) + 1e-4 * head.weight.square().sum()
        loss.backward()
        return loss

    opt.step(closure)
    with torch.no_grad():
        return float((head(xte).argmax(1) == yte).float().mean())


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--sections", default="scaling", help="comma-separated: scaling, probe")
    p.add_argument("--image-sizes", type=int, nargs="+", default=[64, 128, 256, 512])
    p.add_argument("--audio-sizes", type=int, nargs="+", default=[2**14, 2**16, 2**18, 2**20])
    p.add_argument("--reps", type=int, default=2, help="timed steps after one warm-up")
    p.add_argument("--time-limit", type=float, default=120.0, help="seconds per step before a model stops growing")
    p.add_argument("--memory-gib", type=float, default=16.0, help="address-space limit of each worker")
    p.add_argument("--runs", nargs="*", default=[], help="hip-mae run directories for the probe section")
    p.add_argument(
        "--configs",
        nargs="*",
        default=[str(ROOT / "configs" / "hip-mae.yaml"), str(ROOT / "configs" / "hip-mae-flat.yaml")],
        help="without --runs: the configs whose untrained models are probed",
    )
    p.add_argument("--probe-train", type=int, default=None)
    p.add_argument("--probe-test", type=int, default=None)
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--quick", action="store_true", help="smoke run: tiny sizes, no repeats")
    p.add_argument("--worker", nargs=2, default=None, help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.worker:
        print(json.dumps(measure(args.worker[0], int(args.worker[1]), args)))
        return
    if args.quick:
        args.image_sizes, args.audio_sizes, args.reps = [32], [2048], 0
    sections = set(args.sections.split(","))
    print(f"# hip_vs_flat: torch {torch.__version__}, {platform.processor() or platform.machine()}, "
          f"{torch.get_num_threads()} threads")  # fmt: skip
    summary: dict = {"bench": "hip_vs_flat"}
    if "scaling" in sections:
        head = f"{'':5} {'size':>6} {'inputs':>9} {'model':9} {'params':>12} {'trunk':>11} {'fwd GFLOP':>9}"
        print(head + "  step (fwd+bwd, batch 1), peak RSS")
        rows = scaling(args)
        summary["scaling"] = rows
        for kind in ("image", "audio"):
            pairs = {}
            for r in rows:
                if r["modality"] == kind and "step_s" in r:
                    pairs.setdefault(r["inputs"], {})[r["model"]] = r
            ratios = {
                m: round(v["flat-cpu"]["step_s"] / v["hip-cpu"]["step_s"], 2) for m, v in pairs.items() if len(v) == 2
            }
            summary[f"{kind}_flat_over_hip_time"] = ratios
    if "probe" in sections:
        summary["probe"] = probe(args)
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
