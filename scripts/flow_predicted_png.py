"""The README's flow picture: frame 1 | true flow | ``perceiver-io predict flow`` for held-out test pairs.

Writes the first pairs of a run's test split as PNG frames, runs the ``predict flow`` command on
each with one colour scale (``--max-radius``: the largest true speed of the pairs drawn), and tiles
the three pictures per pair, magnified, into one PNG.

    python scripts/flow_predicted_png.py --run runs/flow-64-p7-5000 -o docs/img/flow_predicted.png
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
from pathlib import Path

import torch

from perceiver_io.inference.images import load_image
from perceiver_io.tasks.base import build_config, get_task_class
from perceiver_io.training.overrides import flatten
from perceiver_io.training.run import load_run_config
from perceiver_io.visualize import flow_to_color, save_image_grid


def _load_png(path: Path) -> torch.Tensor:
    """``(H, W, 3)`` uint8."""
    return load_image(path).permute(1, 2, 0).round().to(torch.uint8)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--run", required=True, help="a flow run directory (its model/ and config)")
    ap.add_argument("-o", "--out", default="flow_predicted.png")
    ap.add_argument("--num-pairs", type=int, default=4)
    ap.add_argument("--scale", type=int, default=2, help="nearest-neighbour magnification")
    args = ap.parse_args()

    _, saved = load_run_config(args.run, "flow")
    cfg = build_config("flow", None, {"data.eval_pairs": args.num_pairs}, base=flatten(saved))
    task = get_task_class("flow")(cfg, log=lambda s: None)
    task.setup()
    pairs = [task.eval_pairs("test")[i] for i in range(args.num_pairs)]
    radius = max(float(p["flow"].norm(dim=0).max()) for p in pairs)
    tiles = []
    with tempfile.TemporaryDirectory() as tmp:
        for k, p in enumerate(pairs):
            a, b, out = Path(tmp, f"{k}a.png"), Path(tmp, f"{k}b.png"), Path(tmp, f"{k}flow.png")
            save_image_grid([p["frame1"]], a, padding=0)
            save_image_grid([p["frame2"]], b, padding=0)
            cmd = [sys.executable, "-m", "perceiver_io.cli", "predict", "flow", str(a), str(b)]
            cmd += ["--model", str(Path(args.run) / "model"), "-o", str(out), "--max-radius", f"{radius:.2f}"]
            subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
            truth = flow_to_color(p["flow"].permute(1, 2, 0), max_radius=radius)
            tiles += [_load_png(a), truth, _load_png(out)]
    big = [t.repeat_interleave(args.scale, 0).repeat_interleave(args.scale, 1) for t in tiles]
    save_image_grid(big, args.out, ncols=3)
    print(f"wrote {args.out}: {args.num_pairs} pairs (frame 1 | truth | predicted), colour scale {radius:.2f} px")


if __name__ == "__main__":
    main()
