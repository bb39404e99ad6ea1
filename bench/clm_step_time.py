"""Time one training step of the ``clm`` task's model (forward, backward, AdamW) per context and batch size.

The numbers behind ``train clm``'s CPU-sized defaults (``docs/perceiver_ar.md``). Random token windows go
through the task's own ``loss``; each entry is the median of ``--steps`` steps after one warm-up.

    OMP_NUM_THREADS=1 python bench/clm_step_time.py --configs 1024x16,2048x16,4096x16,2048x8

Prints a table and a JSON summary as the last line.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import torch

from perceiver_io.tasks import build_config, get_task_class


def _configs(text: str) -> list[tuple[int, int]]:
    out = []
    for item in text.split(","):
        length, _, batch = item.partition("x")
        out.append((int(length), int(batch)))
    return out


def step_seconds(seq_len: int, batch_size: int, steps: int, overrides: dict) -> float:
    """Median seconds of one training step of the clm model at ``seq_len`` bytes of context, ``batch_size`` windows."""
    cfg = build_config("clm", overrides={"data.seq_len": seq_len, **overrides})
    task = get_task_class("clm")(cfg, log=lambda s: None)
    model = task.build_model().train()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
    ids = torch.randint(6, cfg.model.vocab_size, (batch_size, seq_len + 1))
    times = []
    for k in range(steps + 1):
        t = time.perf_counter()
        loss = model.loss(ids)
        opt.zero_grad()
        loss.backward()
        opt.step()
        if k:  # the first step warms up
            times.append(time.perf_counter() - t)
    return statistics.median(times)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--configs", type=_configs, default=_configs("1024x16,2048x16,4096x16,2048x8"))
    ap.add_argument("--steps", type=int, default=2)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--quick", action="store_true", help="smoke run: a tiny model")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    tiny = {"model.num_input_channels": 32, "model.num_latent_channels": 32, "model.num_latents": 16}
    overrides = tiny if args.quick else {}
    cfg = build_config("clm", overrides=overrides)
    print(
        f"clm model: {cfg.model.num_latents} latents x {cfg.model.num_latent_channels}, "
        f"{cfg.model.num_self_attention_layers} layers; {args.threads} thread(s), median of {args.steps} steps"
    )
    print(f"{'context':>8} {'batch':>6} {'s / step':>9}")
    rows = []
    for seq_len, batch in args.configs:
        s = step_seconds(seq_len, batch, args.steps, overrides)
        rows.append({"context": seq_len, "batch_size": batch, "step_seconds": round(s, 4)})
        print(f"{seq_len:>8,} {batch:>6} {s:>9.3f}", flush=True)
    print(json.dumps({"bench": "clm_step_time", "threads": args.threads, "quick": args.quick, "rows": rows}))


if __name__ == "__main__":
    main()
