"""Metric logging on rank 0: a long-format CSV, TensorBoard (if installed) and a PNG of the curves."""

from __future__ import annotations

import csv
import io
import math
from collections import defaultdict
from pathlib import Path

__all__ = ["MetricLogger", "plot_metrics", "read_metrics"]

FIELDS = ("step", "split", "metric", "value")


def read_metrics(path: str | Path) -> list[dict]:
    """Rows of ``metrics.csv`` as dicts with ``step`` int and ``value`` float."""
    path = Path(path)
    if not path.is_file():
        return []
    rows = []
    text = path.read_text(encoding="utf-8", errors="replace")
    if text and not text.endswith("\n"):  # the last row was torn by a kill or a full disk mid-append
        text = text[: text.rfind("\n") + 1]
    for r in csv.DictReader(io.StringIO(text)):
        try:  # a damaged row is dropped, not fatal
            rows.append(
                {"step": int(r["step"]), "split": r["split"], "metric": r["metric"], "value": float(r["value"])}
            )
        except (TypeError, ValueError, KeyError):
            continue
    return rows


def plot_metrics(rows: list[dict], path: str | Path, title: str = "") -> Path | None:
    """One subplot per metric, one line per split; returns the PNG path (None without matplotlib)."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    series: dict[str, dict[str, list[tuple[int, float]]]] = defaultdict(lambda: defaultdict(list))
    for r in rows:
        if r["metric"] != "lr" and math.isfinite(r["value"]):
            series[r["metric"]][r["split"]].append((r["step"], r["value"]))
    if not series:
        return None
    names = sorted(series, key=lambda n: (n != "loss", n))
    cols = min(3, len(names))
    nrows = math.ceil(len(names) / cols)
    fig, axes = plt.subplots(nrows, cols, figsize=(4.5 * cols, 3.2 * nrows), squeeze=False)
    for ax, name in zip(axes.flat, names, strict=False):
        for split, pts in sorted(series[name].items()):
            xs, ys = zip(*pts, strict=True)
            ax.plot(xs, ys, marker="o" if len(xs) < 30 else None, ms=3, label=split)
        ax.set_title(name)
        ax.set_xlabel("step")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    for ax in list(axes.flat)[len(names) :]:
        ax.axis("off")
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


class MetricLogger:
    """Append ``(step, split, metric, value)`` rows to ``RUN_DIR/metrics.csv`` (+ TensorBoard under ``tb/``)."""

    def __init__(self, run_dir: str | Path, tensorboard: bool = True, resume_step: int | None = None) -> None:
        self.run_dir = Path(run_dir)
        self.csv_path = self.run_dir / "metrics.csv"
        self.png_path = self.run_dir / "curves.png"
        rows = read_metrics(self.csv_path)
        if resume_step is not None:  # drop rows logged after the checkpoint we resume from
            rows = [r for r in rows if r["step"] <= resume_step]
        else:
            rows = []
        self.rows = rows
        self.run_dir.mkdir(parents=True, exist_ok=True)
        with self.csv_path.open("w", newline="") as f:
            w = csv.DictWriter(f, FIELDS)
            w.writeheader()
            w.writerows(rows)
        self._tb = None
        if tensorboard:
            try:
                from torch.utils.tensorboard import SummaryWriter

                self._tb = SummaryWriter(str(self.run_dir / "tb"), purge_step=resume_step)
            except ImportError:
                self._tb = None

    def log(self, step: int, split: str, metrics: dict[str, float]) -> None:
        new = [{"step": step, "split": split, "metric": k, "value": float(v)} for k, v in metrics.items()]
        self.rows.extend(new)
        with self.csv_path.open("a", newline="") as f:
            csv.DictWriter(f, FIELDS).writerows(new)
        if self._tb is not None:
            for k, v in metrics.items():
                self._tb.add_scalar(f"{split}/{k}", float(v), step)

    def plot(self, title: str = "") -> Path | None:
        return plot_metrics(self.rows, self.png_path, title)

    def close(self) -> None:
        if self._tb is not None:
            self._tb.close()
