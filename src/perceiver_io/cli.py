"""The ``perceiver-io`` command line."""

from __future__ import annotations

import contextlib
import json
import time
from pathlib import Path
from typing import Annotated

import typer

from perceiver_io.data.cli import data_app

app = typer.Typer(help="Perceiver IO: build, train, evaluate and benchmark Perceiver models.", no_args_is_help=True)


@app.command()
def demo(
    model: str = typer.Option("perceiver-io-tiny", help="registered preset to build (see `perceiver-io models`)"),
    batch_size: int = typer.Option(1, min=1, help="batch size B"),
    steps: int = typer.Option(1, min=1, help="forward + backward passes to time"),
) -> None:
    """Build a preset, run forward and backward on its example inputs, print shapes, parameters and time."""
    import torch

    import perceiver_io

    with _user_errors():
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
        fields = {k: v for k, v in vars(out).items() if isinstance(v, torch.Tensor)}
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


@app.command("models")
def models_() -> None:
    """List the registered model presets."""
    import perceiver_io

    for name in perceiver_io.list_models():
        typer.echo(name)


# --------------------------------------------------------------------------------------------
# predict

predict_app = typer.Typer(
    help="Run a saved model (our format or a downloaded transformers checkpoint directory) on your data.",
    no_args_is_help=True,
)
app.add_typer(predict_app, name="predict")
app.add_typer(data_app, name="data")

_MODEL_HELP = "model directory: ours (save_pretrained) or a transformers Perceiver checkpoint (config.json + weights)"
_DEVICE_HELP = "torch device to run on, e.g. cpu or cuda"


@contextlib.contextmanager
def _user_errors():
    """Report the library's errors on user input as one line on stderr and exit with status 1."""
    try:
        yield
    except (FileNotFoundError, IsADirectoryError, NotADirectoryError, PermissionError) as e:
        typer.echo(f"error: {e}", err=True)
        raise typer.Exit(1) from None
    except (ValueError, TypeError, KeyError, ImportError, OSError, RuntimeError) as e:
        typer.echo(f"error: {e}".splitlines()[0], err=True)
        raise typer.Exit(1) from None


def _load_model(directory: Path, device: str):
    import perceiver_io

    if not directory.exists():
        raise FileNotFoundError(f"--model: no such directory {str(directory)!r}")
    if not directory.is_dir():
        raise NotADirectoryError(f"--model: {str(directory)!r} is not a directory")
    return perceiver_io.from_pretrained(directory).to(device).eval()


def _read_labels(labels_file: Path | None, model_dir: Path) -> list[str] | dict[int, str] | None:
    """Class names from ``--labels`` (one per line, or JSON list / {index: name}), else the checkpoint's id2label."""
    if labels_file is not None:
        if not labels_file.is_file():
            raise FileNotFoundError(f"--labels: no such file {str(labels_file)!r}")
        text = labels_file.read_text(encoding="utf-8")
        if labels_file.suffix == ".json":
            data = json.loads(text)
            return {int(k): str(v) for k, v in data.items()} if isinstance(data, dict) else [str(v) for v in data]
        return [line.strip() for line in text.splitlines() if line.strip()]
    try:
        meta = json.loads((model_dir / "config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    id2label = meta.get("id2label") or meta.get("config", {}).get("id2label")
    if isinstance(id2label, dict) and id2label:
        return {int(k): str(v) for k, v in id2label.items()}
    return None


@predict_app.command("fill-mask")
def predict_fill_mask(
    text: Annotated[
        str, typer.Argument(help='text with [MASK] for each masked byte, e.g. "Hello [MASK][MASK][MASK]ld"')
    ],
    model: Annotated[Path, typer.Option("--model", help=_MODEL_HELP)],
    top_k: int = typer.Option(5, min=1, max=256, help="candidates to show per masked byte"),
    device: str = typer.Option("cpu", help=_DEVICE_HELP),
) -> None:
    """Fill each [MASK] (one UTF-8 byte each) with the masked language model; show the top-k bytes."""
    from perceiver_io.inference import fill_mask

    with _user_errors():
        net = _load_model(model, device)
        result = fill_mask(net, text, top_k=top_k)
    typer.echo(result.text)
    for pos, cands in zip(result.positions, result.predictions, strict=True):
        shown = ", ".join(f"{c.text!r} {c.probability:.3f}" for c in cands)
        typer.echo(f"  byte {pos}: {shown}")


@predict_app.command("classify")
def predict_classify(
    images: Annotated[list[Path], typer.Argument(help="image files (any format Pillow reads)")],
    model: Annotated[Path, typer.Option("--model", help=_MODEL_HELP)],
    top_k: int = typer.Option(5, min=1, help="classes to show per image"),
    labels: Annotated[
        Path | None,
        typer.Option(
            help="class names: a text file with one per line, or JSON (list or {index: name}); "
            "default: the checkpoint's id2label, else indices"
        ),
    ] = None,
    device: str = typer.Option("cpu", help=_DEVICE_HELP),
) -> None:
    """Classify images (ImageNet preprocessing: center crop 224/256, bicubic resize, mean/std)."""
    from perceiver_io.inference import classify_image

    with _user_errors():
        names = _read_labels(labels, model)
        net = _load_model(model, device)
        for path in images:
            preds = classify_image(net, path, top_k=top_k, labels=names)
            typer.echo(str(path))
            for rank, p in enumerate(preds, 1):
                typer.echo(f"  {rank}. {p.label} (class {p.index}): {p.probability:.4f}")


@predict_app.command("flow")
def predict_flow(
    frame1: Annotated[Path, typer.Argument(help="first RGB frame (image file)")],
    frame2: Annotated[Path, typer.Argument(help="second RGB frame, same size")],
    model: Annotated[Path, typer.Option("--model", help=_MODEL_HELP)],
    out: Annotated[Path, typer.Option(help="colour-coded flow PNG to write (hue = direction)")] = Path("flow.png"),
    save_npy: Annotated[
        Path | None, typer.Option(help="also write the raw flow (H, W, 2) float32, pixels, to this .npy")
    ] = None,
    tile_overlap: int = typer.Option(20, min=0, help="minimum overlap in pixels of the tiles at the training size"),
    flow_scale: float | None = typer.Option(
        None,
        help="multiplies the model output (already ÷ rescale_factor); default the published checkpoint's "
        "(20, from the optical-flow-perceiver preset); 1 for a model trained on pixel targets",
    ),
    max_radius: float | None = typer.Option(None, help="flow magnitude (pixels) of full colour; default the maximum"),
    batch_size: int = typer.Option(1, min=1, help="tiles per forward pass"),
    chunk_size: int | None = typer.Option(None, min=1, help="decode at most this many pixels at once (default: auto)"),
    device: str = typer.Option("cpu", help=_DEVICE_HELP),
) -> None:
    """Estimate optical flow from FRAME1 to FRAME2 (tiled at the model's training size) and draw it."""
    from perceiver_io.inference import estimate_flow
    from perceiver_io.visualize import save_flow_png

    with _user_errors():
        net = _load_model(model, device)
        flow = estimate_flow(
            net,
            frame1,
            frame2,
            tile_overlap=tile_overlap,
            flow_scale=flow_scale,
            batch_size=batch_size,
            chunk_size=chunk_size or "auto",
        )
        out.parent.mkdir(parents=True, exist_ok=True)
        save_flow_png(flow, out, max_radius)
        if save_npy is not None:
            import numpy as np

            save_npy.parent.mkdir(parents=True, exist_ok=True)
            np.save(save_npy, flow.numpy().astype("float32"))
    mag = flow.norm(dim=-1)
    typer.echo(f"flow {tuple(flow.shape)}: mean |flow| {float(mag.mean()):.3f} px, max {float(mag.max()):.3f} px")
    typer.echo(f"wrote {out}" + (f" and {save_npy}" if save_npy is not None else ""))


def _load_npy(path: Path, name: str):
    import numpy as np
    import torch

    if not path.is_file():
        raise FileNotFoundError(f"--{name}: no such file {str(path)!r}")
    try:
        arr = np.load(path, allow_pickle=False)
    except Exception as e:
        raise ValueError(f"--{name}: cannot read {str(path)!r} as a .npy array ({e})") from None
    return torch.from_numpy(np.ascontiguousarray(arr))


@predict_app.command("autoencode")
def predict_autoencode(
    model: Annotated[Path, typer.Option("--model", help=_MODEL_HELP)],
    out: Annotated[Path, typer.Option(help="output directory")],
    video: Annotated[
        Path | None,
        typer.Option(
            help=".npy video (T, H, W, 3) or (T, 3, H, W): uint8 0-255 or float 0-1, at the model's video size"
        ),
    ] = None,
    audio: Annotated[
        Path | None,
        typer.Option(help=".npy audio (S,) mono: float in [-1, 1] or int16, S = the model's number of samples"),
    ] = None,
    label: int | None = typer.Option(None, min=0, help="class index to feed as one-hot label (masked by default)"),
    chunk_size: int = typer.Option(8192, min=1, help="output points decoded at once (the encoder runs once)"),
    top_k: int = typer.Option(5, min=1, help="classes to report"),
    device: str = typer.Option("cpu", help=_DEVICE_HELP),
) -> None:
    """Reconstruct video and audio with the multimodal autoencoder (inputs as .npy files).

    Writes video.npy (T, 3, H, W), audio.npy (S,), frames.png (originals above reconstructions),
    audio.png (needs matplotlib) and metrics.json (PSNR per modality, top-k classes).
    """
    import numpy as np
    import torch

    from perceiver_io.inference import autoencode
    from perceiver_io.visualize import save_audio_plot, save_reconstruction_png

    with _user_errors():
        if video is None and audio is None:
            raise ValueError("give --video and/or --audio")
        net = _load_model(model, device)
        cfg = net.config
        v = a = lab = None
        if video is not None:
            v = _load_npy(video, "video")
            if v.dim() == 4 and v.shape[-1] == cfg.num_image_channels and v.shape[1] != cfg.num_image_channels:
                v = v.permute(0, 3, 1, 2)
            v = v.float() / 255.0 if v.dtype == torch.uint8 else v.float()
        if audio is not None:
            a = _load_npy(audio, "audio")
            if a.dim() == 2 and 1 in a.shape:
                a = a.flatten()
            a = a.float() / 32768.0 if a.dtype == torch.int16 else a.float()
        if label is not None:
            if label >= cfg.num_classes:
                raise ValueError(f"--label must be < {cfg.num_classes}, got {label}")
            lab = torch.nn.functional.one_hot(torch.tensor(label), cfg.num_classes).float()
        result = autoencode(net, video=v, audio=a, label=lab, chunk_size=chunk_size)
        out.mkdir(parents=True, exist_ok=True)
        np.save(out / "video.npy", result.video.numpy().astype("float32"))
        np.save(out / "audio.npy", result.audio.numpy().astype("float32"))
        save_reconstruction_png(result.video.clamp(0, 1), out / "frames.png", original=v)
        try:
            save_audio_plot(result.audio, out / "audio.png", original=a)
        except ImportError as e:
            typer.echo(f"note: skipped audio.png ({e})", err=True)
        k = min(top_k, cfg.num_classes)
        probs, idx = result.label_probs.topk(k)
        metrics = {
            "psnr_db": result.psnr,
            "top_k": [{"index": int(i), "probability": float(p)} for p, i in zip(probs, idx, strict=True)],
        }
        (out / "metrics.json").write_text(json.dumps(metrics, indent=2))
    for name, value in result.psnr.items():
        typer.echo(f"{name} PSNR: {value:.2f} dB")
    typer.echo("top classes: " + ", ".join(f"{int(i)} ({float(p):.3f})" for p, i in zip(probs, idx, strict=True)))
    typer.echo(f"wrote {out}/video.npy, audio.npy, frames.png, metrics.json")


# --------------------------------------------------------------------------------------------
# train / evaluate


@contextlib.contextmanager
def _train_errors():
    """Config, data and checkpoint problems -> one line on stderr, exit status 2 (config) or 1."""
    from perceiver_io.config import ConfigError
    from perceiver_io.tasks.base import DataUnavailable
    from perceiver_io.training.checkpoint import CheckpointError

    try:
        yield
    except ConfigError as e:
        typer.echo(f"error: {e}".splitlines()[0], err=True)
        raise typer.Exit(2) from None
    except (CheckpointError, DataUnavailable, FileNotFoundError, NotADirectoryError) as e:
        typer.echo(f"error: {e}".splitlines()[0], err=True)
        raise typer.Exit(1) from None
    except Exception as e:
        from perceiver_io.data import DataError

        if isinstance(e, DataError):
            typer.echo(f"error: {e}".splitlines()[0], err=True)
            raise typer.Exit(1) from None
        raise


_TASK_HELP = "task: mlm, image-classification or text-classification"


@app.command()
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

    with _train_errors():
        run_train(task, overrides, str(config) if config else None, str(resume) if resume else None, echo=typer.echo)


@app.command()
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
) -> None:
    """Evaluate a trained run (its final model, or a checkpoint) on held-out data."""
    from perceiver_io.training.run import run_evaluate

    if split not in ("valid", "test"):
        typer.echo(f"error: --split must be valid or test, got {split!r}", err=True)
        raise typer.Exit(2)
    with _train_errors():
        run_evaluate(task, str(run), str(checkpoint) if checkpoint else None, split, overrides, echo=typer.echo)


def main() -> None:
    app()


if __name__ == "__main__":
    main()
