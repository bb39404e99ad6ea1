"""``perceiver-io demo`` and ``perceiver-io models``: the registry from the command line."""

from __future__ import annotations

import time

import typer

from perceiver_io.cli.common import user_errors

models_app = typer.Typer()


@models_app.command()
def demo(
    model: str = typer.Option("perceiver-io-tiny", help="registered preset to build (see `perceiver-io models`)"),
    batch_size: int = typer.Option(1, min=1, help="batch size B"),
    steps: int = typer.Option(1, min=1, help="forward + backward passes to time"),
) -> None:
    """Build a preset, run forward and backward on its example inputs, print shapes, parameters and time."""
    import torch

    import perceiver_io

    with user_errors():
        torch.manual_seed(0)
        net = perceiver_io.create_model(model)
        kwargs = net.example_inputs(batch_size)
    typer.echo(f"model {model}: {type(net).__name__}, {net.num_parameters():,} parameters")
    for name, value in kwargs.items():
        typer.echo(f"{name}: {_describe(value)}")
    times = []
    for _ in range(steps):
        net.zero_grad(set_to_none=True)
        t0 = time.perf_counter()
        out = net(**kwargs)
        fields = {}
        for k, v in vars(out).items():  # tensor fields, and dicts of tensors (per-modality outputs)
            if isinstance(v, torch.Tensor):
                fields[k] = v
            elif isinstance(v, dict):
                fields.update({f"{k}[{m!r}]": t for m, t in v.items() if isinstance(t, torch.Tensor)})
        sum(v.float().square().mean() for v in fields.values()).backward()
        times.append(time.perf_counter() - t0)
    for name, value in fields.items():
        typer.echo(f"output {name}: {_describe(value)}")
    params = list(net.parameters())
    typer.echo(f"gradients on {sum(p.grad is not None for p in params)}/{len(params)} parameter tensors")
    typer.echo(f"forward+backward: {min(times) * 1e3:.1f} ms (best of {steps}, {torch.get_num_threads()} threads)")


def _describe(value) -> str:
    import torch

    if isinstance(value, torch.Tensor):
        return f"{tuple(value.shape)} {str(value.dtype).removeprefix('torch.')}"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k}: {_describe(v)}" for k, v in value.items()) + "}"
    return repr(value)


@models_app.command("models")
def models_() -> None:
    """List the registered model presets."""
    import perceiver_io

    for name in perceiver_io.list_models():
        typer.echo(name)
