"""Side by side: this library vs ``transformers``' Perceiver vs lucidrains' ``perceiver-pytorch``.

Configurations (``--only`` picks a subset by letter or name):

* ``a`` / ``language``: ``deepmind/language-perceiver`` (2048 bytes, 256 × 1280 latents, 26 layers), ``--batch`` sizes;
* ``b`` / ``imagenet``: ``deepmind/vision-perceiver-fourier`` at 224 × 224 (50,176 pixels, 8 × 6 shared layers);
* ``c`` / ``flow``: ``deepmind/optical-flow-perceiver`` at 368 × 496 (182,528 pixels in and out), inference
  (ours decodes with ``chunk_size=--flow-chunk-size``, default ``auto``: the library's default call;
  transformers and perceiver-pytorch in one piece);
* ``d`` / ``multimodal``: ``deepmind/multimodal-perceiver`` reconstructing all 804,737 output points
  (802,816 video pixels, 1,920 audio patches, 1 label). Ours encodes once and decodes in chunks;
  ``transformers`` runs its documented loop over ``subsampled_output_points`` chunks, which re-runs the
  encoder for every chunk (``--mm-chunks``, 128 as in its docs); to save time only ``--mm-measure-chunks``
  of those chunks are timed and the loop's time is that × chunks / measured (every chunk does the same work);
* ``e`` / ``generic``: a generic encoder–decoder (C = 64 channels, 256 × 256 latents, 4 layers) with
  O = M given queries, as M grows.

``transformers`` models have the identical architecture: each is built with random weights, converted
to ours by this library's checkpoint converters, and the outputs are checked equal (max |diff| printed)
before anything is timed. ``perceiver-pytorch`` (``PerceiverIO``) gets its nearest configuration (same
latents, widths, heads, depth; its MLPs are GEGLU ×4 and untied), so its parameter count and FLOPs are
reported too; it has no adapters, so it is given our adapters' output (preprocessing excluded from its time).

Every measurement (implementation × mode × precision × compile) runs in a fresh subprocess: peak memory
is the growth of ``ru_maxrss`` from before the model is built (model + optimizer state + activations;
``max_memory_allocated`` on CUDA). Times are medians after one warm-up call (a first call slower than
``--long`` seconds counts as a sample instead). ``train`` = forward + backward + AdamW step. FLOPs are
analytic (``bench/flops.py``), checked against ``torch.utils.flop_counter``; MFU = model FLOPs / time /
the matmul peak measured in the same run (large square matmuls, fp32 and bf16).

    python bench/compare.py --quick --no-compile        # smoke test, tiny sizes (< 30 s)
    python bench/compare.py --only a,c --reps 3         # two configurations
"""

from __future__ import annotations

import argparse
import contextlib
import json
import platform
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

sys.path.insert(0, str(Path(__file__).resolve().parent))
from compare_specs import LETTERS, SPECS, Generic, Spec  # noqa: E402
from flops import count_flops  # noqa: E402

# -- worker side ---------------------------------------------------------------------------------


def rss_mib() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * resource.getpagesize() / 2**20


def _autocast(precision: str, device: torch.device):
    if precision == "bf16":
        return torch.autocast(device.type, dtype=torch.bfloat16)
    return contextlib.nullcontext()


def measure(job: dict, args: argparse.Namespace) -> dict:
    """One timing measurement (runs inside its own process)."""
    torch.manual_seed(0)
    device = torch.device(args.device)
    spec = SPECS[job["config"]](args.quick, args)
    impl, train = job["impl"], job["mode"] == "train"
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    base = rss_mib()
    m = job.get("m")
    ours = spec.build_ours()
    if impl == "hf":
        model = spec.build_hf()
    elif impl == "lucid":
        model = spec.build_lucid(ours).eval()
    else:
        model = ours
    if impl != "ours" and not (impl == "lucid" and spec.name in ("imagenet", "flow")):
        ours = None  # the adapters are only needed to feed perceiver-pytorch
    model.to(device)
    if ours is not None:
        ours.to(device)
    x = spec.inputs(job["batch"], m=m) if m else spec.inputs(job["batch"])
    x = _to(x, device)
    if train:
        model.train()
        for mod in model.modules():  # dropout off: same work in every implementation
            if isinstance(mod, nn.Dropout):
                mod.p = 0.0
    with torch.no_grad():
        fn = spec.runner(impl, model, x, train, ours)
    if job["compile"]:
        fn = torch.compile(fn)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-5) if train else None
    ctx = _autocast(job["precision"], device)

    def step() -> None:
        if train:
            with ctx:
                out = fn()
            out.float().square().mean().backward()
            opt.step()
            opt.zero_grad(set_to_none=True)
        else:
            with torch.no_grad(), ctx:
                fn()

    times: list[float] = []
    deadline = time.perf_counter() + args.max_time
    first = None
    for i in range(args.reps + 1):
        sync()
        t0 = time.perf_counter()
        step()
        sync()
        dt = time.perf_counter() - t0
        if i == 0:
            first = dt
            if not (dt > args.long or args.quick) or job["compile"]:
                continue  # warm-up (compilation included)
        times.append(dt)
        if time.perf_counter() > deadline:
            break
    if device.type == "cuda":
        peak = torch.cuda.max_memory_allocated() / 2**20
        base = 0.0
    else:
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    scale = spec.time_scale(impl) if hasattr(spec, "time_scale") else 1.0
    return {
        **job,
        "time_s": statistics.median(times) * scale,
        "reps": len(times),
        "first_s": first * scale,
        "peak_mib": peak - base,
    }


def _to(x: Any, device: torch.device) -> Any:
    if isinstance(x, Tensor):
        return x.to(device)
    if isinstance(x, dict):
        return {k: _to(v, device) for k, v in x.items()}
    if isinstance(x, tuple):
        return tuple(_to(v, device) for v in x)
    return x


def _num_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def check(job: dict, args: argparse.Namespace) -> dict:
    """Parity (transformers → ours, fp32), parameter counts and FLOP counts (runs in its own process)."""
    torch.manual_seed(0)
    spec = SPECS[job["config"]](args.quick, args)
    result: dict[str, Any] = {"config": spec.name}
    big = not args.quick and spec.name in ("flow", "multimodal")  # parity at a reduced input size
    m = job.get("m")
    if "hf" in spec.impls:
        hf = spec.build_hf(check=big)
        ours = spec.build_ours(check=big, hf=hf)
        x = spec.inputs(1, check=big)
        run_ours = spec.runner("ours", ours, x, False, ours)

        def ours_rows(autocast: bool = False) -> Tensor:
            """Our output as transformers lays it out (multimodal video: ``(1, pixels, 3)``)."""
            with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast):
                out = run_ours().float()
            return out.permute(0, 1, 3, 4, 2).reshape(1, -1, 3) if spec.name == "multimodal" else out

        got = ours_rows()
        with torch.no_grad():
            kw = {"check": True} if spec.name == "multimodal" else {}
            expected = spec.runner("hf", hf, x, False, None, **kw)()
        result["max_abs_diff"] = (got - expected).abs().max().item()
        low = ours_rows(autocast=True)  # accuracy of our bf16 path
        result["bf16_rel_err"] = ((low - got).norm() / got.norm()).item()
        result["check_size"] = "reduced" if big else "full"
        result["params_hf"] = _num_params(hf)
        if big:
            with torch.device("meta"):
                hf_full = spec.build_hf()
            result["params_hf"] = _num_params(hf_full)
            del hf_full
        del hf
        if big:
            # FlopCounterMode on the reduced size checks the analytic formula (same code path)
            result["flops_counted_at_check_size"] = count_flops(spec.runner("ours", ours, x, False, ours), ours)
            result["flops_analytic_at_check_size"] = spec.analytic_flops(ours, 1, check=True)
            ours = spec.build_ours()
    else:
        ours = spec.build_ours()
    result["params_ours"] = _num_params(ours)
    batch = 1
    xf = spec.inputs(batch, m=m) if m else spec.inputs(batch)
    analytic = spec.analytic_flops(ours, batch, m=m) if m else spec.analytic_flops(ours, batch)
    result["flops_analytic"] = analytic
    if not big:
        result["flops_counted"] = count_flops(spec.runner("ours", ours, xf, False, ours), ours)
    if "lucid" in spec.impls:
        with torch.no_grad():
            largs, lkw = spec.lucid_args(xf, ours)
        largs = tuple(a.to("meta") for a in largs)
        lkw = {k: v.to("meta") for k, v in lkw.items()}
        with torch.device("meta"):  # perceiver-pytorch materialises every attention matrix: count on meta
            lucid = spec.build_lucid(ours).eval()
        result["params_lucid"] = _num_params(lucid)
        result["flops_lucid"] = count_flops(lambda: lucid(*largs, **lkw))
    return result


def matmul_peak(device: torch.device, quick: bool) -> dict[str, float]:
    """Best of several large square matmuls, in GFLOP/s, for fp32 and bf16."""
    n = 512 if quick else (8192 if device.type == "cuda" else 2048)
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    out = {}
    for name, dtype in (("fp32", torch.float32), ("bf16", torch.bfloat16)):
        a = torch.randn(n, n, device=device, dtype=dtype)
        b = torch.randn(n, n, device=device, dtype=dtype)
        best = float("inf")
        for i in range(3 if quick else 12):
            sync()
            t0 = time.perf_counter()
            a @ b
            sync()
            if i:
                best = min(best, time.perf_counter() - t0)
        out[name] = 2 * n**3 / best / 1e9
    return out


# -- driver --------------------------------------------------------------------------------------


def run_worker(kind: str, job: dict, args: argparse.Namespace) -> dict | None:
    if args.inprocess:  # smoke tests: no subprocess, peak memory is the process's so far
        return (check if kind == "check" else measure)(job, args)
    cmd = [sys.executable, __file__, f"--{kind}", json.dumps(job), *args.passthrough]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        tail = proc.stderr.strip().splitlines()[-3:]
        print(f"  {kind} {job} failed ({proc.returncode}): {' | '.join(tail)}", flush=True)
        return None
    return json.loads(proc.stdout.strip().splitlines()[-1])


def plan(spec: Spec, args: argparse.Namespace, modes: list[str], precisions: list[str]) -> list[dict]:
    """Jobs for one configuration; peers first so that each of our rows can print its ratios."""
    jobs = []
    sizes = [("m", m) for m in spec.sizes()] if isinstance(spec, Generic) else [("batch", b) for b in args.batch]
    for key, value in sizes:
        if spec.name != "language" and key == "batch" and value != args.batch[0]:
            continue
        for mode in modes:
            if key == "batch" and value != args.batch[0] and mode == "train":
                continue  # larger language batches: inference only
            for precision in precisions:
                for impl in sorted(spec.impls, key=lambda i: i == "ours"):
                    if mode == "train" and impl not in spec.train_impls:
                        continue
                    compiles = [False]
                    if (
                        impl == "ours"
                        and not args.no_compile
                        and precision in args.compile_precisions
                        and mode in args.compile_modes
                        and spec.name in args.compile_configs
                    ):
                        compiles.append(True)
                    for comp in compiles:
                        job = {"config": spec.name, "impl": impl, "mode": mode, "precision": precision}
                        job.update({"compile": comp, "batch": 1, "m": None})
                        job[key] = value
                        jobs.append(job)
    return jobs


def parse_only(only: str, args: argparse.Namespace) -> list[tuple[str, list[str], list[str]]]:
    """``a,c:infer:fp32+bf16`` -> [(name, modes, precisions)]; omitted parts use --modes / --precisions."""
    out = []
    for item in only.split(","):
        if not item.strip():
            continue
        parts = item.strip().split(":")
        name = LETTERS.get(parts[0], parts[0])
        if name not in SPECS:
            raise SystemExit(f"--only: unknown configuration {name!r}; choose from {sorted(SPECS)} or a-e")
        modes = parts[1].split("+") if len(parts) > 1 and parts[1] else args.modes
        precisions = parts[2].split("+") if len(parts) > 2 and parts[2] else args.precisions
        out.append((name, modes, precisions))
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument(
        "--only",
        default="a,b,c:infer,d:infer,e",
        help="configurations (letters a-e or names), each optionally :modes:precisions, e.g. c:infer:fp32+bf16",
    )
    p.add_argument("--batch", type=lambda s: [int(v) for v in s.split(",")], default=[1, 4], help="language batches")
    p.add_argument("--modes", type=lambda s: s.split(","), default=["infer", "train"])
    p.add_argument("--precisions", type=lambda s: s.split(","), default=["fp32", "bf16"])
    p.add_argument("--compile-precisions", type=lambda s: s.split(","), default=["fp32", "bf16"])
    p.add_argument("--compile-modes", type=lambda s: s.split(","), default=["infer", "train"])
    p.add_argument(
        "--compile-configs", type=lambda s: s.split(","), default=["language", "imagenet", "flow", "generic"]
    )
    p.add_argument("--no-compile", action="store_true", help="skip torch.compile runs")
    p.add_argument("--reps", type=int, default=3, help="timed repetitions after the warm-up")
    p.add_argument("--max-time", type=float, default=30.0, help="stop repeating a measurement after this long")
    p.add_argument("--long", type=float, default=8.0, help="a first call slower than this counts as a sample")
    p.add_argument("--mm-chunks", type=int, default=128, help="transformers' multimodal loop: number of chunks")
    p.add_argument("--mm-measure-chunks", type=int, default=4, help="time this many of transformers' chunks")
    p.add_argument("--mm-chunk-size", type=int, default=16384, help="our multimodal decoder chunk size")
    p.add_argument(
        "--flow-chunk-size",
        type=lambda v: v if v == "auto" else int(v),
        default="auto",
        help="our flow decoder chunk size: auto (the default call), N, or 0 (one piece)",
    )
    p.add_argument("--generic-sizes", type=lambda s: [int(v) for v in s.split(",")], default=[2**13, 2**15, 2**17])
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--quick", action="store_true", help="tiny sizes, no warm-up (smoke test)")
    p.add_argument("--check-only", action="store_true", help="parity, bf16 accuracy, parameters and FLOPs; no timing")
    p.add_argument("--inprocess", action="store_true", help="no subprocess per measurement (smoke tests)")
    p.add_argument("--worker", help=argparse.SUPPRESS)
    p.add_argument("--check", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.quick:
        args.mm_chunks = min(args.mm_chunks, 4)
        args.mm_chunk_size = min(args.mm_chunk_size, 100)
        if args.flow_chunk_size != "auto":
            args.flow_chunk_size = min(args.flow_chunk_size, 100)
    if args.worker:
        print(json.dumps(measure(json.loads(args.worker), args)))
        return
    if args.check:
        print(json.dumps(check(json.loads(args.check), args)))
        return
    keep = ("reps", "max_time", "long", "mm_chunks", "mm_measure_chunks", "mm_chunk_size", "flow_chunk_size", "device")
    args.passthrough = [f"--{k.replace('_', '-')}={getattr(args, k)}" for k in keep] + (
        ["--quick"] if args.quick else []
    )
    args.passthrough.append("--generic-sizes=" + ",".join(map(str, args.generic_sizes)))
    selected = parse_only(args.only, args)

    import transformers

    try:
        from importlib.metadata import version

        lucid_version = version("perceiver-pytorch")
    except Exception:  # noqa: BLE001
        lucid_version = "missing"
    device = torch.device(args.device)
    t_start = time.perf_counter()
    print(
        f"# compare: device={args.device} {platform.processor() or platform.machine()}"
        f" threads={torch.get_num_threads()}"
        f" torch={torch.__version__} transformers={transformers.__version__} perceiver-pytorch={lucid_version}"
    )
    peak = matmul_peak(device, args.quick)
    print(f"matmul peak: fp32 {peak['fp32']:.1f} GFLOP/s, bf16 {peak['bf16']:.1f} GFLOP/s")

    rows: list[dict] = []
    checks: dict[str, dict] = {}
    for name, modes, precisions in selected:
        spec = SPECS[name](args.quick, args)
        print(f"\n## {name}" + (f"  ({spec.extra()})" if spec.extra() else ""), flush=True)
        ms = spec.sizes() if isinstance(spec, Generic) else [None]
        for m in ms:
            c = run_worker("check", {"config": name, "m": m}, args)
            if c is None:
                continue
            key = name if m is None else f"{name}@{m}"
            checks[key] = c
            line = f"params: ours {c['params_ours']:,}"
            if "params_hf" in c:
                line += f", transformers {c['params_hf']:,}"
            if "params_lucid" in c:
                line += f", perceiver-pytorch {c['params_lucid']:,}"
            fl = f"GFLOPs fwd (batch 1{'' if m is None else f', M=O={m}'}): analytic {c['flops_analytic'] / 1e9:.1f}"
            if "flops_counted" in c:
                ratio = c["flops_counted"] / c["flops_analytic"]
                fl += f", FlopCounterMode {c['flops_counted'] / 1e9:.1f} (ratio {ratio:.3f})"
            if "flops_counted_at_check_size" in c:
                r = c["flops_counted_at_check_size"] / c["flops_analytic_at_check_size"]
                fl += f", FlopCounterMode/analytic at the check size {r:.3f}"
            if "flops_lucid" in c:
                fl += f"; perceiver-pytorch (counted) {c['flops_lucid'] / 1e9:.1f}"
            if "max_abs_diff" in c:
                diff = c["max_abs_diff"]
                print(f"parity ours vs transformers ({c['check_size']} size, fp32): max |diff| = {diff:.2e}")
                print(f"ours, bf16 autocast vs fp32: relative error {c['bf16_rel_err']:.2e} (target < 1e-2)")
                if c["max_abs_diff"] > 1e-4:
                    print("  PARITY FAILED: timings below compare different functions")
            print(line)
            print(fl, flush=True)
        header = (
            f"{'config':<11}{'batch/M':>8} {'mode':<6}{'prec':<5}{'impl':<7}{'compile':<8}{'time s':>9}"
            f"{'peak MiB':>10}{'MFU %':>7}{'vs hf':>7}{'vs lucid':>9}"
        )
        print(header)
        jobs = [] if args.check_only else plan(spec, args, modes, precisions)
        for job in jobs:
            r = run_worker("worker", job, args)
            if r is None:
                continue
            key = name if job["m"] is None else f"{name}@{job['m']}"
            c = checks.get(key, {})
            model_flops = (c.get("flops_lucid") if job["impl"] == "lucid" else c.get("flops_analytic")) or 0
            model_flops *= job["batch"] * (3 if job["mode"] == "train" else 1)
            if name == "multimodal" and job["mode"] == "train":
                model_flops = 0  # subsampled; no MFU
            r["mfu"] = model_flops / r["time_s"] / (peak[job["precision"]] * 1e9) if model_flops else None
            rows.append(r)
            print(_fmt(r, rows), flush=True)
    print(f"\ntotal wall time {time.perf_counter() - t_start:.0f} s")
    print(json.dumps(summary(rows, checks, peak, args)))


def _match(rows: list[dict], r: dict, impl: str, compile_: bool = False) -> dict | None:
    for o in rows:
        if (
            o["impl"] == impl
            and not o["compile"]
            and all(o[k] == r[k] for k in ("config", "mode", "precision", "batch", "m"))
        ):
            return o
    return None


def _fmt(r: dict, rows: list[dict]) -> str:
    size = r["m"] if r["m"] else r["batch"]
    ratios = ""
    for impl, width in (("hf", 7), ("lucid", 9)):
        o = _match(rows, r, impl)
        ratios += f"{o['time_s'] / r['time_s']:>{width}.2f}" if (o and r["impl"] == "ours") else " " * (width - 1) + "-"
    mfu = f"{100 * r['mfu']:>7.1f}" if r.get("mfu") else "      -"
    return (
        f"{r['config']:<11}{size:>8} {r['mode']:<6}{r['precision']:<5}{r['impl']:<7}{str(r['compile']):<8}"
        f"{r['time_s']:>9.3f}{r['peak_mib']:>10.0f}{mfu}{ratios}"
    )


def summary(rows: list[dict], checks: dict, peak: dict, args: argparse.Namespace) -> dict:
    """Headline figures: for every (config, size, mode, precision), our best time and the ratios to each peer."""
    out: dict[str, Any] = {"device": args.device, "peak_gflops": {k: round(v, 1) for k, v in peak.items()}}
    out["parity_max_abs_diff"] = {k: c.get("max_abs_diff") for k, c in checks.items() if "max_abs_diff" in c}
    out["bf16_rel_err"] = {k: c.get("bf16_rel_err") for k, c in checks.items() if "bf16_rel_err" in c}
    heads = {}
    for r in rows:
        if r["impl"] != "ours" or r["compile"]:
            continue
        size = f"M{r['m']}" if r["m"] else f"b{r['batch']}"
        key = f"{r['config']}/{size}/{r['mode']}/{r['precision']}"
        comp = [o for o in rows if o["impl"] == "ours" and o["compile"] and _match([r], o, "ours")]
        e = {"ours_s": round(r["time_s"], 4), "ours_mib": round(r["peak_mib"])}
        if r.get("mfu"):
            e["ours_mfu"] = round(r["mfu"], 3)
        if comp:
            e["ours_compiled_s"] = round(comp[0]["time_s"], 4)
        for impl in ("hf", "lucid"):
            o = _match(rows, r, impl)
            if o:
                e[f"{impl}_s"] = round(o["time_s"], 4)
                e[f"{impl}_mib"] = round(o["peak_mib"])
                e[f"speedup_vs_{impl}"] = round(o["time_s"] / r["time_s"], 3)
                e[f"memory_ratio_vs_{impl}"] = round(r["peak_mib"] / max(o["peak_mib"], 1e-9), 3)
                if o.get("mfu"):
                    e[f"{impl}_mfu"] = round(o["mfu"], 3)
        heads[key] = e
    out["results"] = heads
    return out


if __name__ == "__main__":
    main()
