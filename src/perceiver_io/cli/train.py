"""``perceiver-io train TASK`` and ``perceiver-io evaluate TASK``."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from perceiver_io.cli.common import train_errors

train_app = typer.Typer()

_TASK_HELP = "task: mlm, clm, flow, image-classification, text-classification, hip-mae, av-autoencode or av-classify"


@train_app.command()
def train(
    task: Annotated[str, typer.Argument(help=_TASK_HELP)],
    overrides: Annotated[
        list[str] | None,
        typer.Argument(help="dotted key=value overrides, e.g. train.max_steps=200 model.encoder.num_latents=64"),
    ] = None,
    config: Annotated[Path | None, typer.Option("--config", help="YAML file of config values (see configs/)")] = None,
    resume: Annotated[
        Path | None,
        typer.Option("--resume", help="run directory (continue from its latest checkpoint) or a checkpoint file"),
    ] = None,
) -> None:
    """Train TASK (defaults < --config YAML < key=value); runs go to runs/<task>-<timestamp>.

    A run directory given as train.run_dir=DIR resumes automatically from its latest checkpoint.
    Under torchrun the same command trains data-parallel (DDP; gloo on CPU, NCCL on GPU).
    """
    from perceiver_io.training.run import run_train

    with train_errors():
        run_train(task, overrides, str(config) if config else None, str(resume) if resume else None, echo=typer.echo)


@train_app.command()
def evaluate(
    task: Annotated[str, typer.Argument(help=_TASK_HELP)],
    run: Annotated[Path, typer.Option("--run", help="run directory written by `perceiver-io train`")],
    checkpoint: Annotated[
        Path | None, typer.Option(help="training checkpoint to evaluate instead of RUN/model")
    ] = None,
    split: str = typer.Option("test", help="valid or test"),
    overrides: Annotated[
        list[str] | None, typer.Argument(help="key=value overrides (e.g. data.eval_windows=64)")
    ] = None,
    pairs: Annotated[
        Path | None,
        typer.Option(
            "--pairs",
            help="flow only: evaluate on a folder of your own pairs (sub-folders of im0.png, im1.png, forward.flo "
            "or frame1.*, frame2.*, flow.flo / KITTI flow.png) instead of the held-out procedural pairs",
        ),
    ] = None,
) -> None:
    """Evaluate a trained run (its final model, or a checkpoint) on held-out data."""
    from perceiver_io.training.run import run_evaluate

    if split not in ("valid", "test"):
        typer.echo(f"error: --split must be valid or test, got {split!r}", err=True)
        raise typer.Exit(2)
    if pairs is not None:
        if task != "flow" or split != "test":
            typer.echo(f"error: --pairs is for the flow task's test split, got {task!r}, split {split!r}", err=True)
            raise typer.Exit(2)
        overrides = [*(overrides or []), f"data.pairs_dir={pairs}"]
    with train_errors():
        run_evaluate(task, str(run), str(checkpoint) if checkpoint else None, split, overrides, echo=typer.echo)


@train_app.command()
def consolidate(
    checkpoint: Annotated[
        Path, typer.Argument(help="RUN_DIR/checkpoints/step-N (sharded, from train.strategy=fsdp) or step-N.pt")
    ],
    output: Annotated[Path, typer.Option("-o", "--output", help="directory to write (save_pretrained layout)")],
) -> None:
    """Turn a training checkpoint — sharded by any number of FSDP ranks, or a whole-model file — into a
    model directory for `perceiver-io predict --model DIR` and `from_pretrained`."""
    from perceiver_io.training.run import consolidate as run_consolidate

    with train_errors():
        run_consolidate(checkpoint, output, echo=typer.echo)
