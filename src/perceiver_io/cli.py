"""The ``perceiver-io`` command line."""

from __future__ import annotations

import time

import typer

app = typer.Typer(help="Perceiver IO: build, train, evaluate and benchmark Perceiver models.", no_args_is_help=True)


@app.command()
def demo(
    model: str = typer.Option("perceiver-io-tiny", help="registered preset to build (see `perceiver-io models`)"),
    batch_size: int = typer.Option(4, min=1, help="batch size B"),
    num_inputs: int = typer.Option(4096, min=1, help="input array length M"),
    steps: int = typer.Option(3, min=1, help="forward + backward passes to time"),
) -> None:
    """Build a model, run forward and backward on random data, print shapes, parameters and time."""
    import torch

    import perceiver_io

    torch.manual_seed(0)
    net = perceiver_io.create_model(model)
    c = net.config
    inputs = torch.randn(batch_size, num_inputs, c.num_input_channels)
    typer.echo(f"model {model}: {net.num_parameters():,} parameters")
    typer.echo(f"inputs  (B, M, C) = {tuple(inputs.shape)}")
    times = []
    for _ in range(steps):
        t0 = time.perf_counter()
        out = net(inputs)
        out.outputs.float().square().mean().backward()
        times.append(time.perf_counter() - t0)
    typer.echo(f"latents (B, N, D) = {tuple(out.latents.shape)}")
    typer.echo(f"outputs (B, O, F) = {tuple(out.outputs.shape)}")
    grads = sum(p.grad is not None for p in net.parameters())
    typer.echo(f"gradients on {grads}/{len(list(net.parameters()))} parameter tensors")
    typer.echo(f"forward+backward: {min(times) * 1e3:.1f} ms (best of {steps}, {torch.get_num_threads()} threads)")


@app.command("models")
def models_() -> None:
    """List the registered model presets."""
    import perceiver_io

    for name in perceiver_io.list_models():
        typer.echo(name)


def main() -> None:
    app()


if __name__ == "__main__":
    main()
