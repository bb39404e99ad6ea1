"""``perceiver-io predict TASK``: run a saved model on your data (fill-mask, classify, flow, autoencode,
generate, hip-mae, av-autoencode)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from perceiver_io.cli.common import check_device, user_errors

predict_app = typer.Typer(
    help="Run a saved model (our format or a downloaded transformers checkpoint directory) on your data.",
    no_args_is_help=True,
)

_MODEL_HELP = "model directory: ours (save_pretrained) or a transformers Perceiver checkpoint (config.json + weights)"
_DEVICE_HELP = "torch device to run on, e.g. cpu or cuda"


def _enlarge(x, scale: int):
    """``(..., H, W)`` -> ``(..., scale·H, scale·W)`` by nearest neighbour (pictures of small images)."""
    return x.repeat_interleave(scale, -1).repeat_interleave(scale, -2)


def _load_model(directory: Path, device: str):
    import perceiver_io

    check_device(device)
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
    strategy: str = typer.Option(
        "iterative",
        help="iterative: one byte per pass, most confident first, each pass sees the bytes already filled; "
        "independent: every masked byte from one pass",
    ),
    device: str = typer.Option("cpu", help=_DEVICE_HELP),
) -> None:
    """Fill each [MASK] (one UTF-8 byte each) with the masked language model; show the top-k bytes."""
    from perceiver_io.inference import fill_mask

    with user_errors():
        net = _load_model(model, device)
        result = fill_mask(net, text, top_k=top_k, strategy=strategy)
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

    with user_errors():
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
    out: Annotated[
        Path,
        typer.Option("--out", "-o", help="colour-coded flow PNG to write (hue = direction, saturation = magnitude)"),
    ] = Path("flow.png"),
    wheel: Annotated[
        str,
        typer.Option(
            help="colour coding of --out: middlebury (the Baker et al. colour wheel of flow benchmarks) "
            "or hsv (the official Perceiver IO colab's)"
        ),
    ] = "middlebury",
    save_npy: Annotated[
        Path | None, typer.Option(help="also write the raw flow (H, W, 2) float32, pixels, to this .npy")
    ] = None,
    flo: Annotated[Path | None, typer.Option("--flo", help="also write the flow to this Middlebury .flo file")] = None,
    arrows: Annotated[
        Path | None, typer.Option(help="also write FRAME1 with the flow drawn as arrows to this PNG")
    ] = None,
    arrow_scale: float = typer.Option(1.0, help="--arrows: arrow length per pixel of flow (> 0; 1 = true length)"),
    tile_overlap: int | None = typer.Option(
        None, min=0, help="minimum overlap in pixels of the tiles at the training size (default 20)"
    ),
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
    from perceiver_io.visualize import FLOW_WHEELS, save_flow_arrows, save_flow_png

    with user_errors():
        if wheel not in FLOW_WHEELS:
            raise ValueError(f"--wheel must be one of {', '.join(FLOW_WHEELS)}, got {wheel!r}")
        if not arrow_scale > 0:
            raise ValueError(f"--arrow-scale must be a positive number, got {arrow_scale}")
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
        save_flow_png(flow, out, max_radius, wheel=wheel)
        written = [out]
        if save_npy is not None:
            import numpy as np

            save_npy.parent.mkdir(parents=True, exist_ok=True)
            np.save(save_npy, flow.numpy().astype("float32"))
            written.append(save_npy)
        if flo is not None:
            from perceiver_io.flow_io import write_flo

            flo.parent.mkdir(parents=True, exist_ok=True)
            write_flo(flo, flow.numpy())
            written.append(flo)
        if arrows is not None:
            import torch

            from perceiver_io.inference import load_image

            image = load_image(frame1, "frame1").round().clamp(0, 255).to(torch.uint8).permute(1, 2, 0)
            arrows.parent.mkdir(parents=True, exist_ok=True)
            save_flow_arrows(image, flow, arrows, scale=arrow_scale)
            written.append(arrows)
    mag = flow.norm(dim=-1)
    typer.echo(f"flow {tuple(flow.shape)}: mean |flow| {float(mag.mean()):.3f} px, max {float(mag.max()):.3f} px")
    typer.echo("wrote " + ", ".join(str(p) for p in written))


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

    with user_errors():
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


@predict_app.command("hip-mae")
def predict_hip_mae(
    run: Annotated[Path, typer.Option("--run", help="run directory of `perceiver-io train hip-mae`")],
    out: Annotated[Path, typer.Option(help="output directory")],
    images: int = typer.Option(8, min=1, help="test images to reconstruct"),
    references: int = typer.Option(4, min=1, help="reference pixels per side for the position-similarity maps"),
    scale: int = typer.Option(2, min=1, help="enlarge the pictures by this factor (nearest neighbour)"),
    device: str = typer.Option("cpu", help=_DEVICE_HELP),
) -> None:
    """Pictures of a HiP masked auto-encoder: reconstructions of masked test images and the learned
    position embeddings' similarity maps.

    Writes reconstructions.png (per row: original | what the model saw, hidden patches grey |
    reconstruction | reconstruction with the visible pixels pasted in), positions.png (cosine
    similarity of a grid of reference pixels' position embeddings with every pixel's: red similar,
    blue opposite) and metrics.json (PSNR on the hidden pixels of those images).
    """
    import torch

    from perceiver_io.tasks import build_config, get_task_class
    from perceiver_io.tasks.hip_mae import position_similarity, psnr, reconstruction_panels
    from perceiver_io.training.overrides import flatten
    from perceiver_io.training.run import load_run_config
    from perceiver_io.visualize import diverging_rgb, save_image_grid

    with user_errors():
        _, saved = load_run_config(run, "hip-mae")
        cfg = build_config("hip-mae", base=flatten(saved))
        net = _load_model(run / "model", device)
        task = get_task_class("hip-mae")(cfg, log=lambda m: None)
        panels = reconstruction_panels(task, net, images)
        size = cfg.data.image_size

        out.mkdir(parents=True, exist_ok=True)
        save_image_grid([_enlarge(p, scale) for p in panels], out / "reconstructions.png", ncols=4)
        maps, refs = position_similarity(net, size, references)
        tiles = []
        for m, (r, c) in zip(maps, refs, strict=True):
            rgb = diverging_rgb(m)
            rgb[:, max(0, r - 1) : r + 2, max(0, c - 1) : c + 2] = torch.tensor([0.0, 0.8, 0.0])[:, None, None]
            tiles.append(_enlarge(rgb, scale))
        save_image_grid(tiles, out / "positions.png", ncols=references)
        batch = next(task.eval_batches("test", limit=images))
        with torch.no_grad():
            se = task.squared_errors(net, {k: v.to(device) for k, v in batch.items()}).cpu()
        hidden = ~batch["visible"]
        mse = float((se * hidden).sum() / hidden.sum())
        (out / "metrics.json").write_text(
            json.dumps({"images": images, "hidden_mse": mse, "hidden_psnr_db": psnr(mse)}, indent=2)
        )
    typer.echo(f"PSNR on the hidden pixels of {images} test images: {psnr(mse):.2f} dB")
    typer.echo(f"wrote {out}/reconstructions.png, positions.png, metrics.json")


@predict_app.command("av-autoencode")
def predict_av_autoencode(
    run: Annotated[Path, typer.Option("--run", help="run directory of `perceiver-io train av-autoencode`")],
    out: Annotated[Path, typer.Option(help="output directory")],
    clips: int = typer.Option(4, min=1, help="test clips to reconstruct"),
    scale: int = typer.Option(3, min=1, help="enlarge the frames by this factor (nearest neighbour)"),
    device: str = typer.Option("cpu", help=_DEVICE_HELP),
) -> None:
    """Reconstruct test clips of audio-visual digits with the label hidden, and show and play them.

    Writes frames.png (per clip: input frames, then reconstructed frames), audio.png (per clip:
    waveforms, input and reconstruction spectrograms), input_K.wav / reconstruction_K.wav, and
    predictions.json (true label, predicted label and its probability, per-clip PSNRs).
    """
    import torch

    from perceiver_io.audio_io import write_wav
    from perceiver_io.metrics import psnr_from_mse as psnr
    from perceiver_io.tasks import build_config, get_task_class
    from perceiver_io.training.overrides import flatten
    from perceiver_io.training.run import load_run_config
    from perceiver_io.visualize import save_audio_comparison, save_image_grid

    with user_errors():
        _, saved = load_run_config(run, "av-autoencode")
        cfg = build_config("av-autoencode", base=flatten(saved))
        net = _load_model(run / "model", device)
        task = get_task_class("av-autoencode")(cfg, log=lambda m: None)
        test = task.split("test")
        n = min(clips, len(test))
        batch = task.collate([test[i] for i in range(n)], [0])
        video, audio, label = (batch[k].to(device) for k in ("video", "audio", "label"))
        with torch.no_grad():
            rec = net({"image": video, "audio": audio, "label": label}, mask_probs={"label": 1.0})
        rec_video, rec_audio = rec.image.float().clamp(0, 1).cpu(), rec.audio.float().clamp(-1, 1).cpu()
        probs = rec.label.float().softmax(-1).cpu()
        video, audio = video.cpu(), audio.cpu()

        out.mkdir(parents=True, exist_ok=True)
        tiles = [_enlarge(f, scale) for k in range(n) for clip in (video[k], rec_video[k]) for f in clip]
        save_image_grid(tiles, out / "frames.png", ncols=video.shape[1])
        save_audio_comparison(list(audio), list(rec_audio), cfg.data.clips.sample_rate, out / "audio.png")
        rows = []
        for k in range(n):
            write_wav(out / f"input_{k}.wav", audio[k].numpy(), cfg.data.clips.sample_rate)
            write_wav(out / f"reconstruction_{k}.wav", rec_audio[k].numpy(), cfg.data.clips.sample_rate)
            p, y = probs[k].max(0)
            rows.append({
                "clip": k, "label": int(label[k]), "predicted": int(y), "probability": float(p),
                "voice": str(test.voice[k]),
                "video_psnr_db": psnr(float((rec_video[k] - video[k]).square().mean())),
                "audio_psnr_db": psnr(float((rec_audio[k] - audio[k]).square().mean())),
            })  # fmt: skip
        (out / "predictions.json").write_text(json.dumps(rows, indent=2))
    for r in rows:
        typer.echo(
            f"clip {r['clip']}: label {r['label']} ({r['voice']}), predicted {r['predicted']} "
            f"(p = {r['probability']:.2f}); video {r['video_psnr_db']:.1f} dB, audio {r['audio_psnr_db']:.1f} dB"
        )
    typer.echo(f"wrote {out}/frames.png, audio.png, input_K.wav, reconstruction_K.wav, predictions.json")


@predict_app.command("generate")
def predict_generate(
    prompt: Annotated[str, typer.Argument(help="text to continue (UTF-8 bytes for byte-vocabulary models)")],
    model: Annotated[Path, typer.Option("--model", help="a saved Perceiver AR model directory (save_pretrained)")],
    max_new_tokens: int = typer.Option(200, min=0, help="tokens (bytes) to generate"),
    sample: bool = typer.Option(False, "--sample/--greedy", help="sample (temperature, top-k, top-p) or greedy"),
    temperature: float = typer.Option(1.0, min=0.0, help="sampling temperature (> 0)"),
    top_k: int | None = typer.Option(None, min=1, help="sample from the k most likely tokens only"),
    top_p: float | None = typer.Option(None, min=0.0, max=1.0, help="nucleus: smallest set with this probability"),
    seed: int = typer.Option(0, help="random seed for sampling"),
    stop: Annotated[list[str] | None, typer.Option("--stop", help="stop after this text (repeatable)")] = None,
    cache: bool = typer.Option(True, "--cache/--no-cache", help="key/value caches (--no-cache re-runs the model)"),
    bos: bool = typer.Option(
        False, "--bos/--no-bos", help="start with [BOS] (models trained on BOS-prefixed sequences, e.g. the copy task)"
    ),
    device: str = typer.Option("cpu", help=_DEVICE_HELP),
) -> None:
    """Continue PROMPT with a Perceiver AR model, printing the text as it is generated (streaming)."""
    import codecs
    import sys

    import torch

    from perceiver_io.adapters.text import BOS_ID, EOS_ID, NUM_SPECIAL_TOKENS, VOCAB_SIZE, BytesTokenizer
    from perceiver_io.models.perceiver_ar import PerceiverAR

    with user_errors():
        net = _load_model(model, device)
        if not isinstance(net, PerceiverAR):
            raise ValueError(f"--model: {str(model)!r} holds a {type(net).__name__}, not a PerceiverAR")
        if net.config.vocab_size != VOCAB_SIZE:
            raise ValueError(f"--model: vocabulary of {net.config.vocab_size} tokens is not the byte vocabulary")
        tokenizer = BytesTokenizer()
        ids = ([BOS_ID] if bos else []) + list(tokenizer.encode(prompt, parse_mask=False))
        if not ids:
            raise ValueError("the prompt must not be empty (or pass --bos to start from [BOS] alone)")
        decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        out = sys.stdout

        def stream(tokens: torch.Tensor) -> None:
            t = int(tokens[0])
            text = decoder.decode(bytes([t - NUM_SPECIAL_TOKENS])) if t >= NUM_SPECIAL_TOKENS else ""
            if text:
                out.write(text)
                out.flush()

        out.write(prompt)
        out.flush()
        generator = torch.Generator().manual_seed(seed)
        net.generate(
            torch.tensor([ids]),
            max_new_tokens,
            do_sample=sample,
            temperature=temperature,
            top_k=top_k,
            top_p=top_p,
            use_cache=cache,
            stop_sequences=stop,
            eos_token_id=EOS_ID,
            generator=generator,
            streamer=stream,
        )
        out.write(decoder.decode(b"", final=True) + "\n")
        out.flush()
