"""The ``hip-mae`` task: patch masking, upscaling, and a tiny MAE train + evaluate + linear probe."""

import numpy as np
import pytest
import torch

from perceiver_io.tasks import build_config, get_task_class
from perceiver_io.tasks.base import example_generator
from perceiver_io.tasks.hip_mae import patch_mask, upscale
from perceiver_io.training import Trainer

TINY_HIP = {
    "model.num_groups": [4, 1, 4],
    "model.num_latents": [4, 8, 4],
    "model.num_latent_channels": [16, 32, 16],
    "model.num_self_attention_layers": [1, 1, 1],
    "model.num_self_attention_heads": [2, 4, 2],
    "model.num_cross_attention_heads": [1, 1, 1],
    "model.cross_attention_widening_factor": [1, 1, 1],
    "model.self_attention_widening_factor": [2, 2, 2],
    "model.num_embedding_channels": 8,
}


def test_patch_mask_hides_exactly_the_ratio_of_whole_patches_deterministically():
    m = patch_mask(16, 4, 0.75, example_generator(3))
    assert m.shape == (256,) and m.dtype == torch.bool
    grid = m.view(16, 16)
    patches = grid.view(4, 4, 4, 4).permute(0, 2, 1, 3).reshape(16, 16)  # (patch, pixel in patch)
    assert bool((patches.all(1) | ~patches.any(1)).all()), "a patch is partly hidden"
    assert int((~patches.all(1)).sum()) == 12
    assert torch.equal(m, patch_mask(16, 4, 0.75, example_generator(3)))
    assert not torch.equal(m, patch_mask(16, 4, 0.75, example_generator(4)))


def test_upscale_keeps_the_image_and_orders_pixels_row_major():
    img = torch.zeros(1, 28, 28, dtype=torch.uint8)
    img[0, :14] = 255  # top half white
    x = upscale(img, 56).view(56, 56)
    assert x[:27].min() > 2.0 and x[29:].max() < -0.4  # (1 - 0.1307) / 0.3081 = 2.82; -0.1307 / 0.3081 = -0.42


@pytest.fixture
def fake_digits(monkeypatch):
    import perceiver_io.data as data

    def fake(name, split, cache_dir=None):
        g = torch.Generator().manual_seed({"train": 0, "valid": 1, "test": 2}[split])
        labels = np.arange(40) % 2
        images = torch.randint(0, 60, (40, 28, 28), dtype=torch.uint8, generator=g)
        images[torch.as_tensor(labels) == 1, 8:20, 8:20] = 250  # class 1: a bright square
        return images.numpy(), labels

    monkeypatch.setattr(data, "load_image_classification", fake)


def test_tiny_mae_train_evaluate_and_probe(tmp_path, fake_digits):
    over = {
        **TINY_HIP,
        "data.dataset": "synthetic",
        "data.image_size": 16,
        "data.mask_patch": 4,
        "data.eval_images": 16,
        "data.probe_train": 40,
        "data.probe_test": 40,
        "data.eval_batch_size": 8,
        "train.max_steps": 30,
        "train.batch_size": 8,
        "train.lr": 3e-3,
        "train.warmup_steps": 3,
        "train.eval_every": 0,
        "train.run_dir": str(tmp_path / "mae"),
        "train.progress": False,
        "train.tensorboard": False,
        "train.plot": False,
    }
    cfg = build_config("hip-mae", overrides=over)
    assert cfg.model.input_index_dims == (256,) and cfg.model.input_channels == (1,)
    task = get_task_class("hip-mae")(cfg, log=lambda m: None)
    task.setup()
    untrained = task.evaluate(task.build_model())
    result = Trainer(task, log=lambda m: None).fit()
    m = result.metrics
    assert set(m) >= {"loss", "psnr", "baseline_mean_visible_psnr"}
    # the zero-initialised output starts at the mean image; 30 steps must beat that clearly
    assert m["loss"] < 0.9 * untrained["loss"]
    lines = task.report(result.model, m)
    assert "PSNR" in lines[0] and "linear probe" in lines[1]
    assert task.test_metrics["probe_accuracy"] > 0.9  # the bright square separates the classes

    # pictures from the saved run
    from PIL import Image
    from typer.testing import CliRunner

    from perceiver_io.cli import app

    out = tmp_path / "pictures"
    args = ["predict", "hip-mae", "--run", str(tmp_path / "mae"), "--out", str(out), "--images", "3"]
    res = CliRunner().invoke(app, args + ["--references", "2"])
    assert res.exit_code == 0, res.output
    assert "PSNR on the hidden pixels of 3 test images" in res.output
    assert Image.open(out / "reconstructions.png").size == (4 * 32 + 5 * 2, 3 * 32 + 4 * 2)  # 4 panels, scale 2
    assert Image.open(out / "positions.png").size == (2 * 32 + 3 * 2, 2 * 32 + 3 * 2)


def test_position_similarity_is_one_at_the_reference():
    import perceiver_io
    from perceiver_io.tasks.hip_mae import position_similarity

    model = perceiver_io.create_model("test-hip", modalities=("image",), input_index_dims=(64,), input_channels=(1,))
    maps, refs = position_similarity(model, 8, references=2)
    assert maps.shape == (4, 8, 8) and refs == [(2, 2), (2, 6), (6, 2), (6, 6)]
    for m, (r, c) in zip(maps, refs, strict=True):
        assert abs(float(m[r, c]) - 1) < 1e-5 and float(m.max()) <= 1 + 1e-5
