"""What ``perceiver-io train`` and ``perceiver-io evaluate`` do, as functions."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from perceiver_io.config import ConfigError
from perceiver_io.tasks.base import build_config, get_task_class
from perceiver_io.training.checkpoint import CheckpointError, latest_checkpoint, load_checkpoint
from perceiver_io.training.overrides import flatten, parse_overrides
from perceiver_io.training.trainer import Trainer, TrainResult

__all__ = ["load_run_config", "load_checkpoint_weights", "run_train", "run_evaluate", "consolidate"]


def load_run_config(run_dir: str | Path, task_name: str | None = None) -> tuple[str, dict[str, Any]]:
    """``(task name, config dict)`` saved by the trainer in ``RUN_DIR/config.json``."""
    path = Path(run_dir) / "config.json"
    if not path.is_file():
        raise FileNotFoundError(f"{str(run_dir)!r} is not a run directory (no config.json)")
    try:
        meta = json.loads(path.read_text())
        name, cfg = meta["task"], meta["config"]
    except (ValueError, KeyError) as e:
        raise ConfigError(f"{path} is not a run config ({e})") from None
    if task_name is not None and name != task_name:
        raise ConfigError(f"run {str(run_dir)!r} was trained for task {name!r}, not {task_name!r}")
    return name, cfg


def run_train(
    task_name: str,
    overrides: list[str] | None = None,
    config_file: str | None = None,
    resume: str | None = None,
    echo: Callable[[str], None] = print,
) -> TrainResult:
    """Build the config (defaults < run's saved config < YAML < key=value), train, print the report."""
    cls = get_task_class(task_name)
    parsed = parse_overrides(overrides or [])
    base = {}
    if resume is not None:
        rp = Path(resume)
        if rp.is_file() or is_sharded_checkpoint_dir(rp):  # a checkpoint inside RUN_DIR/checkpoints
            if rp.is_file():
                load_checkpoint(rp)  # fails early with a clear message when unreadable
            run_dir = rp.parent.parent
            parsed = {"train.resume_from": str(rp), **parsed}
        elif rp.is_dir():
            run_dir = rp
            if latest_checkpoint(rp / "checkpoints") is None:
                raise CheckpointError(f"--resume: no checkpoints in {str(rp / 'checkpoints')!r}")
        else:
            raise FileNotFoundError(f"--resume: no such checkpoint file or run directory {resume!r}")
        _, saved = load_run_config(run_dir, task_name)
        base = {
            k: v for k, v in flatten(saved).items() if k not in ("train.resume", "train.resume_from", "train.run_dir")
        }
        parsed = {"train.run_dir": str(run_dir), "train.resume": True, **parsed}
    cfg = build_config(task_name, config_file, parsed, base=base)
    task = cls(cfg, log=echo)
    t0 = time.perf_counter()
    result = Trainer(task, log=echo).fit()
    if getattr(result, "model", None) is not None and _is_main():
        model = result.model
        model.eval()
        with torch.no_grad():
            for line in task.report(model, result.metrics):
                echo(line)
        run_dir = result.run_dir
        echo(f"done in {time.perf_counter() - t0:.0f} s. Run directory: {run_dir}")
        if (run_dir / "model").is_dir():
            echo(f"  model:       {run_dir / 'model'}  (perceiver-io predict ... --model {run_dir / 'model'})")
        ck = latest_checkpoint(run_dir / "checkpoints")
        if ck is not None:
            echo(f"  checkpoint:  {ck}")
        echo(f"  metrics:     {run_dir / 'metrics.csv'}")
        if (run_dir / "curves.png").is_file():
            echo(f"  curves:      {run_dir / 'curves.png'}")
        if (run_dir / "tb").is_dir():
            echo(f"  tensorboard: tensorboard --logdir {run_dir / 'tb'}")
    return result


def _is_main() -> bool:
    import os

    return int(os.environ.get("RANK", "0")) == 0


def run_evaluate(
    task_name: str,
    run: str,
    checkpoint: str | None = None,
    split: str = "test",
    overrides: list[str] | None = None,
    echo: Callable[[str], None] = print,
) -> dict[str, float]:
    """Evaluate a run's final model (``RUN_DIR/model``) or a training checkpoint on ``split``."""
    cls = get_task_class(task_name)
    _, saved = load_run_config(run, task_name)
    cfg = build_config(task_name, None, parse_overrides(overrides or []), base=flatten(saved))
    task = cls(cfg, log=echo)
    task.setup()
    model = task.build_model()
    if checkpoint is None and (Path(run) / "model").is_dir():
        from perceiver_io.checkpoints import from_pretrained

        model = from_pretrained(Path(run) / "model")
        source = str(Path(run) / "model")
    else:
        ck = Path(checkpoint) if checkpoint else latest_checkpoint(Path(run) / "checkpoints")
        if ck is None:
            raise CheckpointError(f"run {run!r} has neither a model/ directory nor checkpoints")
        load_checkpoint_weights(ck, model)
        source = str(ck)
    model.eval()
    echo(f"evaluating {source} on the {split} split")
    with torch.no_grad():
        if split == "test":  # the task's report evaluates on the test split and adds demos
            lines = task.report(model, {})
            metrics = getattr(task, "test_metrics", {})
        else:
            metrics = task.evaluate(model, split)
            lines = [f"{k}: {v:.4f}" for k, v in metrics.items()]
        for line in lines:
            echo(line)
    return metrics


def is_sharded_checkpoint_dir(path: Path) -> bool:
    """A sharded (DCP) training checkpoint: a ``step-N`` directory holding ``trainer.pt``."""
    from perceiver_io.training.sharded_checkpoint import TRAINER_STATE

    return path.is_dir() and (path / TRAINER_STATE).is_file()


def load_checkpoint_weights(checkpoint: str | Path, model: torch.nn.Module) -> torch.nn.Module:
    """Fill ``model`` (unsharded) with a training checkpoint's weights: a ``step-N.pt`` file or a
    sharded ``step-N/`` directory written by any number of FSDP ranks."""
    ck = Path(checkpoint)
    if ck.is_dir():
        from perceiver_io.training.sharded_checkpoint import load_sharded

        load_sharded(ck, model)
        return model
    state = load_checkpoint(ck)
    try:
        model.load_state_dict(state["model"])
    except RuntimeError as e:
        reason = str(e).splitlines()[0]
        raise CheckpointError(f"checkpoint {str(ck)!r} does not match the run's model: {reason}") from None
    return model


def consolidate(checkpoint: str | Path, output: str | Path, echo: Callable[[str], None] = print) -> Path:
    """Write a training checkpoint (a sharded FSDP directory or a ``.pt`` file) of ``RUN_DIR/checkpoints``
    as a plain ``save_pretrained`` directory, for ``from_pretrained`` and ``perceiver-io predict``."""
    ck = Path(checkpoint)
    if not (ck.is_file() or is_sharded_checkpoint_dir(ck)):
        raise CheckpointError(f"{str(ck)!r} is neither a checkpoint file nor a sharded checkpoint directory")
    run_dir = ck.parent.parent
    task_name, saved = load_run_config(run_dir)
    task = get_task_class(task_name)(build_config(task_name, None, {}, base=flatten(saved)), log=echo)
    model = load_checkpoint_weights(ck, task.build_model())
    model.save_pretrained(output)
    echo(f"wrote {output} ({task_name}, {sum(p.numel() for p in model.parameters()):,} parameters) from {ck}")
    return Path(output)
