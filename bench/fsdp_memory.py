"""Per-rank memory and step time of DDP vs FSDP2 for one registered model, side by side in one run.

Each strategy runs in its own ``torchrun`` job (``--nproc`` processes, gloo on CPU, NCCL on GPU):
the model is built, wrapped (DDP) or sharded (``perceiver_io.training.parallel.shard``), then
trained ``--steps`` steps (AdamW, batch ``--batch`` per rank of the model's ``example_inputs``, loss =
mean square of the first output) after one warm-up step. Reported per rank: parameter + gradient +
AdamW-state bytes the rank holds (exact, from the tensors it owns), peak RSS (whole process,
``ru_maxrss``; CUDA: ``max_memory_allocated``) and the median step time.

    python bench/fsdp_memory.py --model language-perceiver --nproc 2 --steps 2
    python bench/fsdp_memory.py --model test-language-perceiver --steps 1     # smoke test
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch


def free_port() -> int:
    """A TCP port nobody listens on now (a fixed or pid-derived one can collide with a concurrent job)."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def worker(args: argparse.Namespace) -> None:
    import torch.distributed as dist

    from perceiver_io import create_model
    from perceiver_io.training.parallel import shard, wrap_ddp

    cuda = torch.cuda.is_available() and args.device == "cuda"
    dist.init_process_group("nccl" if cuda else "gloo")
    rank = dist.get_rank()
    device = torch.device("cuda", int(os.environ["LOCAL_RANK"])) if cuda else torch.device("cpu")
    if cuda:
        torch.cuda.set_device(device)
    torch.manual_seed(0)
    model = create_model(args.model).to(device)
    num_params = sum(p.numel() for p in model.parameters())
    if args.strategy == "fsdp":
        net = shard(model)
    else:
        net = wrap_ddp(model, device)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
    inputs = {k: v.to(device) if torch.is_tensor(v) else v for k, v in model.example_inputs(args.batch).items()}

    def step() -> float:
        t0 = time.perf_counter()
        out = net(**inputs)
        first = next(v for v in vars(out).values() if torch.is_tensor(v))
        first.float().square().mean().backward()
        opt.step()
        opt.zero_grad(set_to_none=False)  # keep the gradients allocated: they are part of the footprint
        if cuda:
            torch.cuda.synchronize()
        return time.perf_counter() - t0

    step()
    times = [step() for _ in range(args.steps)]

    def local(t: torch.Tensor) -> int:
        t = t.to_local() if hasattr(t, "to_local") else t
        return t.numel() * t.element_size()

    held = sum(local(p) for p in model.parameters())
    held += sum(local(p.grad) for p in model.parameters() if p.grad is not None)
    held += sum(local(v) for s in opt.state.values() for v in s.values() if torch.is_tensor(v) and v.dim() > 0)
    peak = torch.cuda.max_memory_allocated() if cuda else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    row = {"rank": rank, "params": num_params, "state_mib": held / 2**20, "peak_mib": peak / 2**20,
           "step_s": statistics.median(times)}  # fmt: skip
    rows = [None] * dist.get_world_size()
    dist.all_gather_object(rows, row)
    if rank == 0:
        Path(args.out).write_text(json.dumps(rows))
    dist.destroy_process_group()


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="language-perceiver")
    p.add_argument("--nproc", type=int, default=2)
    p.add_argument("--steps", type=int, default=2)
    p.add_argument("--batch", type=int, default=1)
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--strategies", default="ddp,fsdp")
    p.add_argument("--worker", choices=["ddp", "fsdp"], help=argparse.SUPPRESS, dest="strategy")
    p.add_argument("--out", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.strategy:
        worker(args)
        return
    results = {}
    for strategy in args.strategies.split(","):
        with tempfile.NamedTemporaryFile(suffix=".json", delete=False) as f:
            out = f.name
        launch = [sys.executable, "-m", "torch.distributed.run", f"--nproc-per-node={args.nproc}",
                  f"--master-port={free_port()}"]  # fmt: skip
        cmd = [*launch, __file__, "--worker", strategy, "--out", out, "--model", args.model, "--steps",
               str(args.steps), "--batch", str(args.batch), "--device", args.device]  # fmt: skip
        env = {**os.environ, "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1")}
        subprocess.run(cmd, check=True, env=env)
        results[strategy] = json.loads(Path(out).read_text())
        os.unlink(out)
    params = next(iter(results.values()))[0]["params"]
    print(f"# {args.model}: {params:,} parameters, {args.nproc} ranks on {args.device}, batch {args.batch}/rank")
    print(f"{'strategy':8} {'rank':>4} {'param+grad+adam MiB':>20} {'peak MiB':>9} {'step s':>7}")
    for strategy, rows in results.items():
        for r in rows:
            print(f"{strategy:8} {r['rank']:>4} {r['state_mib']:>20.1f} {r['peak_mib']:>9.0f} {r['step_s']:>7.2f}")
    summary = {"model": args.model, "params": params, "nproc": args.nproc, "device": args.device,
               **{f"{s}_{k}": max(r[k] for r in rows) for s, rows in results.items()
                  for k in ("state_mib", "peak_mib", "step_s")}}  # fmt: skip
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
