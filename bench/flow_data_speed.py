"""Speed of the procedural flow data (``perceiver_io.data.flow.FlowPairs``): pairs per second on one thread.

Renders ``--pairs`` pairs (after one warm-up pair) at each size with ``torch.set_num_threads(1)``
and prints a table, then one JSON line with the same figures. Procedural textures and polygon /
blob shapes only (``textures=None, silhouettes=None``), so the figures do not depend on which image
sets are cached; ``--photometric off`` drops the blur / noise / gain step.

    python bench/flow_data_speed.py                         # 64x64, 128x128, 368x496
    python bench/flow_data_speed.py --sizes 64x64 --pairs 5 # quick
"""

from __future__ import annotations

import argparse
import json
import platform
import time


def parse_size(text: str) -> tuple[int, int]:
    h, _, w = text.lower().partition("x")
    if not (h.isdigit() and w.isdigit()):
        raise argparse.ArgumentTypeError(f"size must look like HxW (e.g. 368x496), got {text!r}")
    return int(h), int(w)


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", nargs="+", type=parse_size, default=[(64, 64), (128, 128), (368, 496)])
    parser.add_argument("--pairs", type=int, default=None, help="pairs per size (default: 100 / 40 / 12 by size)")
    parser.add_argument("--photometric", choices=("on", "off"), default="on")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args(argv)

    import torch

    from perceiver_io.data.flow import FlowPairs

    torch.set_num_threads(args.threads)
    rows = []
    for h, w in args.sizes:
        n = args.pairs or (100 if h * w <= 64 * 64 else 40 if h * w <= 128 * 128 else 12)
        data = FlowPairs("train", size=(h, w), textures=None, silhouettes=None, photometric=args.photometric == "on")
        data[n]  # warm-up (a pair not timed)
        times = []
        for i in range(n):
            t0 = time.perf_counter()
            data[i]
            times.append(time.perf_counter() - t0)
        total = sum(times)
        rows.append(
            {
                "size": f"{h}x{w}",
                "pairs": n,
                "pairs_per_s": n / total,
                "ms_median": 1000 * sorted(times)[n // 2],
                "ms_max": 1000 * max(times),
            }
        )
    print(f"FlowPairs speed, {args.threads} thread(s), photometric {args.photometric}, torch {torch.__version__}")
    print(f"{'size':>9} {'pairs':>6} {'pairs/s':>9} {'median ms':>10} {'max ms':>8}")
    for r in rows:
        print(f"{r['size']:>9} {r['pairs']:>6} {r['pairs_per_s']:>9.1f} {r['ms_median']:>10.1f} {r['ms_max']:>8.1f}")
    summary = {
        "bench": "flow_data_speed",
        "threads": args.threads,
        "photometric": args.photometric,
        "torch": torch.__version__,
        "machine": platform.machine(),
        "results": [{k: round(v, 2) if isinstance(v, float) else v for k, v in r.items()} for r in rows],
    }
    print(json.dumps(summary))
    return summary


if __name__ == "__main__":
    main()
