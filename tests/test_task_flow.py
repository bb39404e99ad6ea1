"""The flow task: curriculum, subsampled queries, reversed pairs, loss, and a tiny train + evaluate + predict."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from perceiver_io.cli import app
from perceiver_io.config import ConfigError
from perceiver_io.flow_io import read_flo, write_flo
from perceiver_io.inference.flow import FLOW_SCALE_FACTOR
from perceiver_io.tasks import build_config, get_task_class
from perceiver_io.tasks.flow import augmentation_severity, read_pairs_dir

TINY = {
    "model.image_size": [16, 16],
    "model.num_patch_channels": 8,
    "model.num_frequency_bands": 4,
    "model.encoder.num_latents": 8,
    "model.encoder.num_latent_channels": 32,
    "model.encoder.num_self_attends_per_block": 1,
    "model.encoder.cross_attention_qk_channels": 16,
    "model.encoder.cross_attention_v_channels": 32,
    "model.decoder.num_qk_channels": 16,
    "model.decoder.num_v_channels": 16,
    "data.textures": "none",
    "data.num_queries": 32,
    "data.eval_pairs": 4,
    "data.eval_batch_size": 2,
    "train.batch_size": 4,
    "train.max_steps": 4,
    "train.warmup_steps": 1,
    "train.eval_every": 2,
    "train.checkpoint_every": 2,
}


def _task(**overrides):
    cfg = build_config("flow", overrides={**TINY, **overrides})
    task = get_task_class("flow")(cfg, log=lambda s: None)
    task.setup()
    return task


def test_severity_rises_then_final_phase_is_clean():
    s = [augmentation_severity(t, 100, 0.2, 0.2) for t in (0, 40, 79, 80, 99)]
    assert s[0] == pytest.approx(0.2) and s[1] == pytest.approx(0.6) and 0.98 < s[2] < 1.0
    assert s[3] == 0.0 and s[4] == 0.0
    assert augmentation_severity(5, 10, 0.0, 0.0) == pytest.approx(0.5)


def test_collate_subsamples_queries_and_targets_match_the_flow():
    task = _task()
    items = [task.train_data[i] for i in range(4)]
    task.step = 0
    b = task.collate(items, [1, 2, 3, 4])
    assert b["frames"].shape == (4, 2, 3, 16, 16) and b["frames"].min() >= -1 and b["frames"].max() <= 1
    idx = b["query_indices"]
    assert idx.shape == (32,) and len(set(idx.tolist())) == 32 and int(idx.max()) < 256
    assert b["targets"].shape == (4, 32, 2) and task.count(b) == 128
    # severity 0.2 may flip; with the flips switched off the targets are the flow at the indices
    clean = _task(**{"data.max_flip": 0.0})
    clean.step = 0
    b = clean.collate(items, [1, 2, 3, 4])
    flows = torch.stack([p["flow"] for p in items]).flatten(2).transpose(1, 2)
    torch.testing.assert_close(b["targets"], flows[:, b["query_indices"]])
    # the same seeds give the same batch
    torch.testing.assert_close(clean.collate(items, [1, 2, 3, 4])["frames"], b["frames"])


def test_flips_follow_the_flow_and_the_final_phase_reverses_pairs():
    task = _task(**{"data.max_flip": 1.0, "data.augment_start": 1.0, "data.max_gain": 0.0, "data.final_fraction": 0.25})
    task.config = task.config.replace(data={"max_noise": 0.0, "max_offset": 0.0, "num_queries": 0})
    item = task.train_data[0]
    task.step = 0  # severity 1: both flips always
    b = task.collate([item], [7])
    flow = b["targets"][0].T.reshape(2, 16, 16)
    torch.testing.assert_close(flow, -item["flow"].flip(-1).flip(-2))
    torch.testing.assert_close(b["frames"][0, 0], item["frame1"].flip(-1).flip(-2) * 2 - 1)
    task.step = task.config.train.max_steps - 1  # final phase: pair 0 forward then reversed
    assert task.in_final_phase()
    b = task.collate([item, task.train_data[1]], [7, 8])
    torch.testing.assert_close(b["frames"][1, 0], item["frame2"] * 2 - 1)
    torch.testing.assert_close(b["frames"][1, 1], item["frame1"] * 2 - 1)
    torch.testing.assert_close(b["targets"][1].T.reshape(2, 16, 16), item["flow_backward"])


def test_loss_is_the_summed_end_point_error_in_pixels():
    task = _task()
    model = task.build_model()
    with torch.no_grad():
        for p in model.decoder.parameters():
            p.add_(torch.randn_like(p) * 0.1)
    task.step = 0
    b = task.collate([task.train_data[i] for i in range(2)], [0, 1])
    pred = model(b["frames"], query_indices=b["query_indices"]).flow * FLOW_SCALE_FACTOR
    expected = (pred - b["targets"]).norm(dim=-1).sum()
    torch.testing.assert_close(task.loss(model, b), expected)
    m = task.evaluate(model.eval(), "valid")
    assert {"loss", "epe", "epe_noc", "px1", "px3", "px5", "fl_all", "epe_per_image"} <= set(m)
    assert {"epe_s0-1", "epe_s1-3", "epe_s3+"} <= set(m)  # data.speed_bins (1, 3)


def test_speed_bins_are_checked_with_the_config():
    with pytest.raises(
        ConfigError, match=r"FlowDataConfig.speed_bins must be increasing positive speeds.*\(3.0, 1.0\)"
    ):
        build_config("flow", overrides={"data.speed_bins": [3, 1]})


def test_copy_warm_up_adds_the_query_reconstruction_error_then_stops():
    task = _task(**{"data.copy_steps": 3, "data.copy_weight": 0.5})
    model = task.build_model()
    items = [task.train_data[i] for i in range(2)]
    task.step = 2
    b = task.collate(items, [0, 1])
    assert "copy_weight" in b
    # independently: the decoder's rows before the flow projection, against the queries (the adapted inputs)
    x = model.adapt(b["frames"])
    queries = x.inputs[:, b["query_indices"]]
    rows = model.decoder.cross_attention(queries, model.encoder(x.inputs))
    pred = model.decoder.projection(rows) / model.head.rescale_factor * FLOW_SCALE_FACTOR
    flow = (pred - b["targets"]).norm(dim=-1).sum()
    copy = (rows - queries).square().mean(-1).sum()
    torch.testing.assert_close(task.loss(model, b), flow + 0.5 * copy)
    task.step = 3  # warm-up over: plain end-point error, and no hook left behind
    b = task.collate(items, [0, 1])
    assert "copy_weight" not in b
    assert not model.decoder.cross_attention._forward_hooks
    pred = model(b["frames"], query_indices=b["query_indices"]).flow * FLOW_SCALE_FACTOR
    torch.testing.assert_close(task.loss(model, b), (pred - b["targets"]).norm(dim=-1).sum())


def _write_pair(folder, rng, h=12, w=20):
    from PIL import Image

    folder.mkdir(parents=True)
    for name in ("im0.png", "im1.png"):
        Image.fromarray((rng.random((h, w, 3)) * 255).astype(np.uint8)).save(folder / name)
    write_flo(folder / "forward.flo", rng.normal(size=(h, w, 2)).astype(np.float32))


def test_read_pairs_dir(tmp_path):
    rng = np.random.default_rng(0)
    _write_pair(tmp_path / "a", rng)
    _write_pair(tmp_path / "b", rng)
    pairs = read_pairs_dir(tmp_path)
    assert len(pairs) == 2 and pairs[0]["frame1"].shape == (3, 12, 20) and pairs[0]["flow"].shape == (2, 12, 20)
    assert 0 <= float(pairs[0]["frame1"].min()) and float(pairs[0]["frame1"].max()) <= 1
    from perceiver_io.tasks.base import DataUnavailable

    with pytest.raises(DataUnavailable, match="is not a folder"):
        read_pairs_dir(tmp_path / "a" / "forward.flo")
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataUnavailable, match="holds no pair"):
        read_pairs_dir(tmp_path / "empty")


def test_train_evaluate_predict_flow_end_to_end(tmp_path):
    pytest.importorskip("cv2")
    run = tmp_path / "run"
    args = [f"{k}={json.dumps(v) if isinstance(v, list) else v}" for k, v in TINY.items()]
    runner = CliRunner()
    res = runner.invoke(app, ["train", "flow", *args, f"train.run_dir={run}", "data.baselines=[zero,farneback]"])
    assert res.exit_code == 0, res.output
    assert "EPE all" in res.output and "farneback" in res.output and "s3+" in res.output
    summary = json.loads(next(line for line in res.output.splitlines() if line.startswith('{"task": "flow"')))
    assert set(summary["results"]) == {"perceiver", "zero", "farneback"}
    # evaluate the run on the held-out pairs, then on a folder of the user's pairs
    res = runner.invoke(app, ["evaluate", "flow", "--run", str(run), "data.baselines=[zero]"])
    assert res.exit_code == 0, res.output
    last = json.loads(res.output.strip().splitlines()[-1])
    assert last["pairs"] == 4 and last["results"]["zero"]["epe"] > 0
    _write_pair(tmp_path / "pairs" / "p0", np.random.default_rng(1))
    pairs_args = ["--pairs", str(tmp_path / "pairs"), "data.baselines=[zero,dis-medium]"]
    res = runner.invoke(app, ["evaluate", "flow", "--run", str(run), *pairs_args])
    assert res.exit_code == 0, res.output
    last = json.loads(res.output.strip().splitlines()[-1])
    assert last["pairs"] == 1 and "dis-medium" in last["results"]
    res = runner.invoke(app, ["evaluate", "mlm", "--run", str(run), "--pairs", str(tmp_path / "pairs")])
    assert res.exit_code == 2 and "--pairs is for the flow task" in res.output
    # predict with the trained model: any size, tiled at 16×16
    p = tmp_path / "pairs" / "p0"
    flo = tmp_path / "out.flo"
    res = runner.invoke(
        app,
        ["predict", "flow", str(p / "im0.png"), str(p / "im1.png"), "--model", str(run / "model")]
        + ["--out", str(tmp_path / "flow.png"), "--flo", str(flo)],
    )
    assert res.exit_code == 0, res.output
    flow, valid = read_flo(flo)
    assert flow.shape == (12, 20, 2) and valid.all()


def test_the_model_can_fit_a_few_fixed_pairs():
    """The gradient reaches everything it should: a tiny model fits 2 fixed pairs far below zero flow
    (the CPU training run's plateau at zero flow is therefore not a wiring fault)."""
    torch.manual_seed(0)
    task = _task(**{"data.max_flip": 0.0, "data.augment_start": 0.0, "data.num_queries": 0})
    task.step = 1
    batch = task.collate([task.train_data[i] for i in range(2)], [0, 1])
    model = task.build_model()
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    zero = float(batch["targets"].norm(dim=-1).mean())
    for _ in range(60):
        loss = task.loss(model, batch) / task.count(batch)
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert loss.item() < 0.6 * zero, (loss.item(), zero)  # measured: 0.46 × zero after 50 steps
