"""The ``av-autoencode`` task: label masking, subsampled vs full decoding, and a tiny train + evaluate."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

pytest.importorskip("espeakng_loader")

from perceiver_io.cli import app  # noqa: E402
from perceiver_io.tasks import build_config, get_task_class  # noqa: E402

TINY = {
    "data.clips.frames": 2,
    "data.clips.image_size": 16,
    "data.clips.num_samples": 512,
    "data.clips.sample_rate": 4000,
    "data.clips.num_train": 24,
    "data.clips.num_valid": 8,
    "data.clips.num_test": 8,
    "data.video_queries": 64,
    "data.audio_queries": 8,
    "data.eval_batch_size": 4,
    "model.encoder.num_latents": 8,
    "model.encoder.num_latent_channels": 32,
    "model.encoder.num_self_attends_per_block": 1,
    "model.decoder.num_output_channels": 16,
    "train.batch_size": 4,
    "train.max_steps": 4,
    "train.warmup_steps": 1,
    "train.eval_every": 2,
    "train.checkpoint_every": 2,
}


@pytest.fixture
def fake_mnist(monkeypatch):
    from perceiver_io.data import loaders

    def fake(name, split, cache_dir=None):
        labels = np.arange(20) % 10
        images = np.zeros((20, 28, 28), np.uint8)
        for i, y in enumerate(labels):
            images[i, 9:19, 9:19] = 20 * y + 40
        return torch.from_numpy(images), torch.from_numpy(labels)

    monkeypatch.setattr(loaders, "load_image_classification", fake)


def _task(tmp_path, **overrides):
    cfg = build_config("av-autoencode", overrides={**TINY, "data.cache_dir": str(tmp_path), **overrides})
    task = get_task_class("av-autoencode")(cfg, log=lambda m: None)
    task.setup()
    return task


def _batch(task, n=3):
    return task.collate([task.train_data[i] for i in range(n)], list(range(n)))


def test_a_masked_label_cannot_reach_the_outputs_a_visible_one_does(tmp_path, fake_mnist):
    task = _task(tmp_path)
    model = task.build_model().eval()
    b = _batch(task)
    inputs = {"image": b["video"], "audio": b["audio"], "label": b["label"]}
    other = {**inputs, "label": (b["label"] + 1) % 10}
    with torch.no_grad():
        hidden = [model(x, mask_probs={"label": 1.0}) for x in (inputs, other)]
        shown = [model(x, mask_probs={"label": 0.0}) for x in (inputs, other)]
    for f in ("image", "audio", "label"):
        torch.testing.assert_close(getattr(hidden[0], f), getattr(hidden[1], f))
    assert not torch.allclose(shown[0].label, shown[1].label)
    assert task.config.model.mask_probs["label"] == 0.5  # training hides it half of the time


def test_subsampled_decoding_equals_the_same_points_of_full_decoding(tmp_path, fake_mnist):
    task = _task(tmp_path)
    model = task.build_model().eval()
    b = _batch(task)
    inputs = {"image": b["video"], "audio": b["audio"], "label": b["label"]}
    vi, ai = b["video_indices"], b["audio_indices"]
    with torch.no_grad():
        full = model(inputs, mask_probs={"label": 1.0}, chunk_size=7)  # chunked, encode once
        sub = model(inputs, query_indices={"image": vi, "audio": ai}, mask_probs={"label": 1.0})
    spp = task.config.model.samples_per_patch
    torch.testing.assert_close(sub.image[..., 0], full.image.flatten(1)[:, vi])
    torch.testing.assert_close(sub.audio, full.audio.view(3, -1, spp)[:, ai].flatten(1))
    torch.testing.assert_close(sub.label, full.label)


@pytest.mark.parametrize("kind", ["mse", "l1"])
def test_loss_is_the_per_point_error_plus_weighted_label_cross_entropy(tmp_path, fake_mnist, kind):
    task = _task(tmp_path, **{"data.label_weight": 0.3, "data.loss": kind})
    model = task.build_model()
    b = _batch(task)
    torch.manual_seed(0)
    got = task.loss(model, b)
    torch.manual_seed(0)  # the same label masking draw
    inputs = {"image": b["video"], "audio": b["audio"], "label": b["label"]}
    out = model(inputs, query_indices={"image": b["video_indices"], "audio": b["audio_indices"]})
    err = torch.square if kind == "mse" else torch.abs
    v = err(out.image[..., 0] - b["video"].flatten(1)[:, b["video_indices"]]).mean(1)
    a = err(out.audio - b["audio"].view(3, -1, 16)[:, b["audio_indices"]].flatten(1)).mean(1)
    ce = torch.nn.functional.cross_entropy(out.label, b["label"], reduction="none")
    torch.testing.assert_close(got, (v + a + 0.3 * ce).sum())


def test_train_then_evaluate_end_to_end(tmp_path, fake_mnist):
    run = tmp_path / "run"
    args = [f"{k}={v}" for k, v in TINY.items()] + [f"data.cache_dir={tmp_path}", f"train.run_dir={run}"]
    res = CliRunner().invoke(app, ["train", "av-autoencode", *args])
    assert res.exit_code == 0, res.output
    assert "video PSNR" in res.output and "label accuracy" in res.output and "compression" in res.output
    res = CliRunner().invoke(app, ["evaluate", "av-autoencode", "--run", str(run), "--split", "test"])
    assert res.exit_code == 0, res.output
    assert "video PSNR" in res.output
    out = tmp_path / "pictures"
    res = CliRunner().invoke(app, ["predict", "av-autoencode", "--run", str(run), "--out", str(out), "--clips", "2"])
    assert res.exit_code == 0, res.output
    for name in ("frames.png", "audio.png", "input_1.wav", "reconstruction_1.wav"):
        assert (out / name).stat().st_size > 0, name
    rows = json.loads((out / "predictions.json").read_text())
    assert len(rows) == 2 and all(0 <= r["predicted"] < 10 and 0 < r["probability"] <= 1 for r in rows)

    from perceiver_io.audio_io import read_wav

    wave, rate = read_wav(out / "input_1.wav")
    assert rate == TINY["data.clips.sample_rate"] and wave.shape == (TINY["data.clips.num_samples"],)


# -- av-classify -------------------------------------------------------------------------------------------

CLASSIFY_TINY = {k: v for k, v in TINY.items() if not k.startswith(("data.video_", "data.audio_", "model.decoder"))}


def _classify_task(tmp_path, **overrides):
    cfg = build_config("av-classify", overrides={**CLASSIFY_TINY, "data.cache_dir": str(tmp_path), **overrides})
    task = get_task_class("av-classify")(cfg, log=lambda m: None)
    task.setup()
    return task


@pytest.mark.parametrize("head", ["attention", "pool"])
@pytest.mark.parametrize(
    ("modalities", "read"), [(["audio"], {"audio"}), (["image"], {"video"}), (["audio", "image"], {"audio", "video"})]
)
def test_the_classifier_reads_its_modalities_and_nothing_else(tmp_path, fake_mnist, modalities, read, head):
    task = _classify_task(tmp_path, **{"model.modalities": modalities, "model.head": head})
    model = task.build_model().eval()
    assert (model.decoder is None) == (head == "pool")
    b = _batch(task, 4)
    with torch.no_grad():
        out = model(task.inputs(b))
        assert out.logits.shape == (4, 10)
        for key in ("audio", "video"):
            changed = model(task.inputs({**b, key: b[key].flip(0)})).latents
            assert torch.allclose(changed, out.latents) == (key not in read), key


def test_classify_loss_is_summed_cross_entropy_and_evaluate_counts_every_clip(tmp_path, fake_mnist):
    task = _classify_task(tmp_path)
    model = task.build_model()
    b = _batch(task, 4)
    logits = task._logits(model, b)
    torch.testing.assert_close(
        task.loss(model, b), torch.nn.functional.cross_entropy(logits, b["label"], reduction="sum")
    )
    metrics = task.evaluate(model.eval(), "test")
    assert metrics["clips"] == TINY["data.clips.num_test"] and 0 <= metrics["accuracy"] <= 1


def test_classify_config_names_bad_modalities(tmp_path):
    from perceiver_io import ConfigError

    with pytest.raises(ConfigError, match="modalities must be a non-empty subset"):
        build_config("av-classify", overrides={"model.modalities": ["label"]})
    with pytest.raises(ConfigError, match="model.head"):
        build_config("av-classify", overrides={"model.head": "max"})


def test_classify_train_then_evaluate_end_to_end(tmp_path, fake_mnist):
    run = tmp_path / "run"
    args = [f"{k}={v}" for k, v in CLASSIFY_TINY.items()]
    args += [f"data.cache_dir={tmp_path}", f"train.run_dir={run}", "model.modalities=[audio]", "model.head=pool"]
    res = CliRunner().invoke(app, ["train", "av-classify", *args])
    assert res.exit_code == 0, res.output
    assert "audio, pool head: accuracy" in res.output
    res = CliRunner().invoke(app, ["evaluate", "av-classify", "--run", str(run), "--split", "test"])
    assert res.exit_code == 0, res.output
    assert "audio, pool head: accuracy" in res.output
