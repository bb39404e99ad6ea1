"""Attention kernel throughput on this machine: SDPA vs plain matmuls, fp32 vs bf16.

Times the attention shapes of the optical-flow model (the heaviest published config) with
``F.scaled_dot_product_attention`` and with ``softmax(q·kᵀ)·v`` written as two matmuls, and
prints GFLOP/s next to the machine's matmul peak measured in the same run. It shows how much of
the matmul peak an attention kernel can reach here, per precision, which bounds any model that
spends most of its time in attention.

    python bench/attention_kernels.py             # about a minute on 2 CPU cores
    python bench/attention_kernels.py --quick     # smoke test
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor

# (name, heads, queries, keys, head width): flow's encoder cross-attention (keys cut to a quarter
# of 182,528 to keep the run short; throughput does not depend on the key count at this size),
# a 16,384-query chunk of its decoder (widths after projection folding), and its latent layers.
SHAPES = [
    ("flow encoder cross-attention", 1, 2048, 45632, 322),
    ("flow decoder chunk", 1, 16384, 2048, 322),
    ("flow latent self-attention", 16, 2048, 2048, 32),
]
QUICK_SHAPES = [("tiny cross-attention", 1, 64, 512, 32), ("tiny self-attention", 4, 64, 64, 16)]


def best_time(fn: Callable[[], Tensor], reps: int) -> float:
    fn()
    best = float("inf")
    for _ in range(reps):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


def matmul_peak(dtype: torch.dtype, n: int, reps: int) -> float:
    a, b = torch.randn(n, n, dtype=dtype), torch.randn(n, n, dtype=dtype)
    return 2 * n**3 / best_time(lambda: a @ b, reps) / 1e9


def two_matmuls(q: Tensor, k: Tensor, v: Tensor) -> Tensor:
    logits = torch.matmul(q * q.shape[-1] ** -0.5, k.transpose(-1, -2))
    return torch.matmul(logits.softmax(dim=-1).to(v.dtype), v)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="tiny shapes (smoke test)")
    p.add_argument("--reps", type=int, default=3)
    args = p.parse_args()
    shapes = QUICK_SHAPES if args.quick else SHAPES
    torch.manual_seed(0)
    results: dict[str, dict[str, float]] = {}
    print(f"# attention kernels: torch={torch.__version__} threads={torch.get_num_threads()}")
    print(f"{'shape':32} {'dtype':5} {'matmul peak':>12} {'SDPA':>8} {'2 matmuls':>10}   (GFLOP/s)")
    with torch.inference_mode():
        for dtype, tag in ((torch.float32, "fp32"), (torch.bfloat16, "bf16")):
            peak = matmul_peak(dtype, 256 if args.quick else 2048, args.reps * 3)
            results[f"peak_{tag}"] = {"gflops": round(peak, 1)}
            for name, h, o, m, d in shapes:
                q, k, v = (torch.randn(1, h, n, d, dtype=dtype) for n in (o, m, m))
                flops = 4 * h * o * m * d  # q·kᵀ and weights·v
                sdpa = flops / best_time(lambda q=q, k=k, v=v: F.scaled_dot_product_attention(q, k, v), args.reps)
                manual = flops / best_time(lambda q=q, k=k, v=v: two_matmuls(q, k, v), args.reps)
                print(f"{name:32} {tag:5} {peak:12.1f} {sdpa / 1e9:8.1f} {manual / 1e9:10.1f}")
                results[f"{name}/{tag}"] = {
                    "sdpa_gflops": round(sdpa / 1e9, 3),
                    "matmuls_gflops": round(manual / 1e9, 3),
                    "sdpa_fraction_of_peak": round(sdpa / 1e9 / peak, 3),
                }
    print(json.dumps(results))


if __name__ == "__main__":
    main()
