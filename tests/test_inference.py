"""Inference API (fill-mask, classify, flow with tiling, autoencode), flow visualisation and the predict CLI."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

import perceiver_io
from conftest import TINY_ENCODER, tiny_multimodal  # noqa: E402
from perceiver_io.cli import app
from perceiver_io.inference import (
    autoencode,
    classify_image,
    estimate_flow,
    fill_mask,
    fill_masked_ids,
    flow_tile_starts,
    flow_tile_weights,
    load_image,
    preprocess_image,
    psnr,
)
from perceiver_io.models.flow import OpticalFlow, OpticalFlowOutput
from perceiver_io.visualize import flow_to_color, flow_to_rgb, save_flow_png, save_image_grid

Image = pytest.importorskip("PIL.Image")


def tiny_mlm():
    torch.manual_seed(0)
    return perceiver_io.create_model(
        "language-perceiver",
        text={"max_seq_len": 48, "num_channels": 16},
        encoder=TINY_ENCODER.replace(cross_attention_qk_channels=8, self_attention_qk_channels=8),
        decoder={"num_query_channels": 16, "num_heads": 2, "num_qk_channels": 16, "num_v_channels": 16},
    ).eval()


def tiny_classifier():
    torch.manual_seed(0)
    return perceiver_io.create_model(
        "vision-perceiver-fourier",
        image={"image_shape": (16, 16), "num_bands": 4},
        encoder=TINY_ENCODER,
        decoder={"num_query_channels": 32},
        num_classes=7,
    ).eval()


def tiny_flow(constant: tuple[float, float] | None = None):
    torch.manual_seed(0)
    model = perceiver_io.create_model("optical-flow-perceiver", image_size=(6, 8), encoder=TINY_ENCODER).eval()
    with torch.no_grad():
        proj = model.decoder.projection
        if constant is None:  # the output layer starts at zero: make it informative
            proj.weight.normal_(0, 1.0)
        else:  # zero weights: every pixel gets bias / rescale_factor
            proj.weight.zero_()
            proj.bias.copy_(torch.tensor(constant))
    return model


def write_image(path, h: int, w: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)).save(path)
    return path


# --------------------------------------------------------------------------------------------
# fill-mask


def test_fill_mask_replaces_masks_and_ranks_bytes():
    model = tiny_mlm()
    texts = ["Hello [MASK][MASK]rld", "[MASK]bc", "no masks"]
    results = fill_mask(model, texts, top_k=3)
    assert len(results) == 3
    for text, r in zip(texts, results, strict=True):
        n_masks = text.count("[MASK]")
        assert len(r.filled_bytes) == len(text.replace("[MASK]", "").encode()) + n_masks
        assert "[MASK]" not in r.text
        assert len(r.positions) == len(r.predictions) == n_masks
        for pos, cands in zip(r.positions, r.predictions, strict=True):
            assert len(cands) == 3
            probs = [c.probability for c in cands]
            assert probs == sorted(probs, reverse=True) and sum(probs) <= 1 + 1e-6
            assert r.filled_bytes[pos] == cands[0].byte
    assert results[0].positions == [6, 7]
    assert results[0].filled_bytes[:6] == b"Hello " and results[0].filled_bytes[8:] == b"rld"
    assert results[2].text == "no masks"
    single = fill_mask(model, "a[MASK]c", top_k=1)
    assert single.filled_bytes[0:1] == b"a" and len(single.predictions) == 1


class _CountingMLM(torch.nn.Module):
    """A stand-in MLM whose answer at a masked position depends on the other positions: it predicts
    the byte value "number of visible bytes", most confidently at the rightmost masked position."""

    def __init__(self):
        super().__init__()
        self.calls = 0

    def forward(self, ids, mask):
        from types import SimpleNamespace

        from perceiver_io.adapters.text import MASK_ID, NUM_SPECIAL_TOKENS

        self.calls += 1
        b, length = ids.shape
        visible = (ids >= NUM_SPECIAL_TOKENS).sum(-1)  # (B,)
        logits = torch.zeros(b, length, NUM_SPECIAL_TOKENS + 256)
        confidence = torch.arange(length, dtype=torch.float) * (ids == MASK_ID)  # (B, L): sharper to the right
        logits[torch.arange(b)[:, None], torch.arange(length), NUM_SPECIAL_TOKENS + visible[:, None]] = 1 + confidence
        return SimpleNamespace(logits=logits)


def test_fill_masked_ids_iterative_fixes_one_byte_per_pass_most_confident_first():
    from perceiver_io.adapters.text import BytesTokenizer

    tok = BytesTokenizer()
    ids, mask = tok(["ab[MASK][MASK][MASK]", "[MASK]xyz", "none"])
    model = _CountingMLM()
    filled, probs = fill_masked_ids(model, ids, mask, "iterative")
    assert model.calls == 3  # one pass per masked byte of the longest row
    # rightmost first: 2 visible bytes -> byte 2, then 3, then 4; the second row needs one pass (3 visible)
    assert tok.decode(filled[0, 1:6]) == "ab" + bytes([4, 3, 2]).decode()
    assert tok.decode(filled[1, 1:5]) == bytes([3]).decode() + "xyz"
    assert torch.equal(filled[2], ids[2])
    assert probs[0, 3:6].argmax(-1).tolist() == [4, 3, 2] and float(probs[0, 1:3].abs().sum()) == 0
    assert torch.allclose(probs[0, 3:6].sum(-1), torch.ones(3))
    model = _CountingMLM()
    filled, _ = fill_masked_ids(model, ids, mask, "independent")
    assert model.calls == 1 and tok.decode(filled[0, 1:6]) == "ab" + bytes([2, 2, 2]).decode()


def test_fill_mask_errors():
    model = tiny_mlm()
    with pytest.raises(ValueError, match="max_seq_len"):
        fill_mask(model, "x" * 100)
    with pytest.raises(ValueError, match="strategy must be one of"):
        fill_mask(model, "a[MASK]", strategy="greedy")
    with pytest.raises(TypeError, match="MaskedLanguageModel"):
        fill_mask(tiny_classifier(), "a[MASK]")


# --------------------------------------------------------------------------------------------
# images and classification


def test_load_and_preprocess_image(tmp_path):
    path = write_image(tmp_path / "a.png", 20, 30)
    from_path = load_image(path)
    assert from_path.shape == (3, 20, 30) and from_path.max() <= 255
    u8 = torch.from_numpy(np.array(Image.open(path))).permute(2, 0, 1)
    assert torch.equal(load_image(u8), from_path)
    assert torch.allclose(load_image(u8.float() / 255), from_path, atol=1e-4)
    assert torch.equal(load_image(np.asarray(Image.open(path))), from_path)
    x = preprocess_image(path, (16, 16))
    assert x.shape == (3, 16, 16)
    flat = preprocess_image(torch.full((3, 40, 60), 255, dtype=torch.uint8), (16, 16))
    expected = (1 - torch.tensor([0.485, 0.456, 0.406])) / torch.tensor([0.229, 0.224, 0.225])
    assert torch.allclose(flat.mean((1, 2)), expected, atol=1e-4)
    with pytest.raises(FileNotFoundError, match="no such file"):
        load_image(tmp_path / "missing.png")
    (tmp_path / "bad.png").write_text("not an image")
    with pytest.raises(ValueError, match="cannot read"):
        load_image(tmp_path / "bad.png")
    with pytest.raises(ValueError, match=r"\(C, H, W\)"):
        load_image(torch.zeros(5, 4, 4))


def test_classify_image_top_k(tmp_path):
    model = tiny_classifier()
    path = write_image(tmp_path / "a.png", 24, 32)
    labels = [f"class{i}" for i in range(7)]
    preds = classify_image(model, path, top_k=4, labels=labels)
    assert len(preds) == 4
    probs = [p.probability for p in preds]
    assert probs == sorted(probs, reverse=True) and sum(probs) <= 1 + 1e-6
    assert all(p.label == f"class{p.index}" for p in preds)
    batch = classify_image(model, [path, torch.rand(3, 10, 10)], top_k=7)
    assert len(batch) == 2 and abs(sum(p.probability for p in batch[0]) - 1) < 1e-5
    assert [p.index for p in batch[0]] == [p.index for p in preds[:4]] + [p.index for p in batch[0][4:]]
    with pytest.raises(ValueError, match="top_k"):
        classify_image(model, path, top_k=8)


# --------------------------------------------------------------------------------------------
# optical flow


def test_flow_tile_starts_cover_with_overlap():
    assert flow_tile_starts(6, 6, 2) == [0]
    for length, tile, overlap in [(20, 6, 2), (700, 368, 20), (1024, 496, 20), (37, 8, 3), (9, 8, 0)]:
        starts = flow_tile_starts(length, tile, overlap)
        assert starts[0] == 0 and starts[-1] == length - tile
        assert all(b - a <= tile - overlap for a, b in zip(starts, starts[1:], strict=False))
    with pytest.raises(ValueError, match="tile_overlap"):
        flow_tile_starts(20, 6, 6)
    w = flow_tile_weights(4, 5)
    assert w.shape == (4, 5) and w.min() == 1 and w[1, 2] == 2


def test_flow_tiled_constant_is_blended_exactly(tmp_path):
    model = tiny_flow(constant=(3.0, -5.0))  # output (0.03, -0.05) after ÷100
    f1, f2 = torch.rand(3, 15, 21), torch.rand(3, 15, 21)
    flow = estimate_flow(model, f1, f2, tile_overlap=2, flow_scale=100.0, batch_size=3)
    assert flow.shape == (15, 21, 2)
    assert torch.allclose(flow, torch.tensor([3.0, -5.0]).expand(15, 21, 2), atol=1e-5)
    # the default scale is the colab's ×20
    assert torch.allclose(estimate_flow(model, f1, f2)[0, 0], torch.tensor([0.6, -1.0]), atol=1e-5)


class PixelEchoFlow(OpticalFlow):
    """Flow = (frame1 red, frame2 green) at each pixel: tiles placed wrongly would blend wrong values."""

    def forward(self, frames, chunk_size=None, query_indices=None):  # type: ignore[override]
        flow = torch.stack([frames[:, 0, 0], frames[:, 1, 1]], dim=-1)
        return OpticalFlowOutput(flow=flow, latents=torch.zeros(1))


def test_flow_tiles_are_placed_and_normalised_like_the_colab():
    model = PixelEchoFlow(tiny_flow().config)
    f1 = torch.randint(0, 256, (3, 13, 19), dtype=torch.uint8)
    f2 = torch.randint(0, 256, (3, 13, 19), dtype=torch.uint8)
    flow = estimate_flow(model, f1, f2, tile_overlap=3, flow_scale=1.0, batch_size=2)
    expected = torch.stack([f1[0], f2[1]], dim=-1).float() / 255 * 2 - 1  # pixels mapped to [-1, 1]
    assert torch.allclose(flow, expected, atol=1e-5)


def test_flow_real_model_shapes_and_errors(tmp_path):
    model = tiny_flow()
    f1, f2 = torch.rand(3, 10, 17), torch.rand(3, 10, 17)
    flow = estimate_flow(model, f1, f2, chunk_size=7)
    assert flow.shape == (10, 17, 2) and torch.isfinite(flow).all() and flow.abs().sum() > 0
    small = estimate_flow(model, torch.rand(3, 4, 5), torch.rand(3, 4, 5))  # smaller than the training size
    assert small.shape == (4, 5, 2)
    with pytest.raises(ValueError, match="same shape"):
        estimate_flow(model, f1, torch.rand(3, 10, 16))
    with pytest.raises(TypeError, match="OpticalFlow"):
        estimate_flow(tiny_classifier(), f1, f2)


def test_flow_to_rgb_colours():
    flow = torch.zeros(4, 6, 2)
    assert (flow_to_rgb(flow) == 255).all()  # zero flow is white
    flow[0, 0] = torch.tensor([1.0, 0.0])  # right: red
    flow[0, 1] = torch.tensor([-1.0, 0.0])  # left: cyan
    flow[0, 2] = torch.tensor([0.0, 1.0])  # down
    flow[0, 3] = torch.tensor([0.5, 0.0])  # right, half magnitude: paler red
    rgb = flow_to_rgb(flow).int()
    assert rgb.dtype == torch.int32 and rgb.shape == (4, 6, 3)
    assert rgb[0, 0].tolist() == [255, 0, 0]
    assert rgb[0, 1].tolist() == [0, 255, 255]
    assert rgb[0, 2].tolist() != rgb[0, 0].tolist() != rgb[0, 1].tolist()
    assert rgb[0, 3, 0] == 255 and 0 < rgb[0, 3, 1] < 255
    assert (rgb[1:] == 255).all()
    # a fixed radius clips larger motions to full saturation
    assert flow_to_rgb(flow * 10, max_radius=1.0)[0, 3].tolist() == [255, 0, 0]
    with pytest.raises(ValueError, match=r"\(H, W, 2\)"):
        flow_to_rgb(torch.zeros(4, 6))


def test_save_pngs(tmp_path):
    save_flow_png(torch.randn(5, 7, 2), tmp_path / "f.png")
    assert Image.open(tmp_path / "f.png").size == (7, 5)
    save_image_grid([torch.rand(3, 4, 4) for _ in range(3)], tmp_path / "g.png", ncols=2, padding=1)
    assert Image.open(tmp_path / "g.png").size == (2 * 5 + 1, 2 * 5 + 1)


# --------------------------------------------------------------------------------------------
# multimodal autoencoding


def test_autoencode_chunked_equals_unchunked_and_psnr():
    model = tiny_multimodal()
    video, audio = torch.rand(2, 3, 8, 8), torch.rand(64) * 2 - 1
    full = autoencode(model, video=video, audio=audio, chunk_size=None)
    chunked = autoencode(model, video=video, audio=audio, chunk_size=7)
    assert full.video.shape == (2, 3, 8, 8) and full.audio.shape == (64,) and full.label_probs.shape == (5,)
    assert torch.allclose(full.video, chunked.video, atol=1e-5)
    assert torch.allclose(full.audio, chunked.audio, atol=1e-5)
    assert torch.allclose(full.label_probs, chunked.label_probs, atol=1e-5)
    assert set(full.psnr) == {"video", "audio"}
    assert full.psnr["video"] == pytest.approx(psnr(full.video, video))
    assert psnr(torch.zeros(4), torch.full((4,), 0.1)) == pytest.approx(20.0)
    batched = autoencode(model, video=video[None].expand(2, -1, -1, -1, -1), chunk_size=5)
    assert batched.video.shape == (2, 2, 3, 8, 8) and set(batched.psnr) == {"video"}
    with pytest.raises(ValueError, match="video must have shape"):
        autoencode(model, video=torch.rand(2, 3, 8, 9))
    with pytest.raises(ValueError, match="at least one"):
        autoencode(model)


# --------------------------------------------------------------------------------------------
# CLI

runner = CliRunner()


def assert_user_error(result):
    assert result.exit_code == 1, result.output
    assert "Traceback" not in result.output
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error:"), result.output


def test_cli_fill_mask(tmp_path):
    tiny_mlm().save_pretrained(tmp_path / "mlm")
    result = runner.invoke(app, ["predict", "fill-mask", "--model", str(tmp_path / "mlm"), "ab[MASK]d", "--top-k", "2"])
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert "[MASK]" not in lines[0] and lines[1].strip().startswith("byte 2:")
    assert_user_error(runner.invoke(app, ["predict", "fill-mask", "--model", str(tmp_path / "nope"), "a[MASK]"]))
    # the wrong kind of model is a user error too
    tiny_classifier().save_pretrained(tmp_path / "cls")
    assert_user_error(runner.invoke(app, ["predict", "fill-mask", "--model", str(tmp_path / "cls"), "a[MASK]"]))


def test_cli_classify(tmp_path):
    tiny_classifier().save_pretrained(tmp_path / "cls")
    img = write_image(tmp_path / "img.png", 20, 24)
    labels = tmp_path / "labels.txt"
    labels.write_text("\n".join(f"name{i}" for i in range(7)))
    args = ["predict", "classify", "--model", str(tmp_path / "cls"), str(img), "--top-k", "3", "--labels", str(labels)]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    assert result.output.count("name") == 3
    (tmp_path / "bad.png").write_bytes(b"\x00\x01garbage")
    assert_user_error(
        runner.invoke(app, ["predict", "classify", "--model", str(tmp_path / "cls"), str(tmp_path / "bad.png")])
    )
    assert_user_error(
        runner.invoke(app, ["predict", "classify", "--model", str(tmp_path / "cls"), str(tmp_path / "x.png")])
    )


def test_cli_flow(tmp_path):
    tiny_flow().save_pretrained(tmp_path / "flow")
    f1 = write_image(tmp_path / "f1.png", 9, 13, seed=1)
    f2 = write_image(tmp_path / "f2.png", 9, 13, seed=2)
    out, npy = tmp_path / "o" / "flow.png", tmp_path / "flow.npy"
    args = ["predict", "flow", "--model", str(tmp_path / "flow"), str(f1), str(f2), "--out", str(out)]
    result = runner.invoke(app, [*args, "--save-npy", str(npy), "--tile-overlap", "2"])
    assert result.exit_code == 0, result.output
    assert Image.open(out).size == (13, 9)
    flow = np.load(npy)
    assert flow.shape == (9, 13, 2) and flow.dtype == np.float32
    assert (np.asarray(Image.open(out)) == flow_to_color(torch.from_numpy(flow)).numpy()).all()  # middlebury
    result = runner.invoke(app, [*args, "--wheel", "hsv"])
    assert result.exit_code == 0, result.output
    assert (np.asarray(Image.open(out)) == flow_to_rgb(torch.from_numpy(flow)).numpy()).all()
    assert_user_error(runner.invoke(app, [*args, "--wheel", "rainbow"]))
    f3 = write_image(tmp_path / "f3.png", 10, 13)
    assert_user_error(runner.invoke(app, [*args[:4], str(f1), str(f3), "--out", str(out)]))


def test_cli_flow_flo_and_arrows(tmp_path):
    from perceiver_io.flow_io import read_flo

    torch.manual_seed(0)
    model = perceiver_io.create_model("test-optical-flow").eval()
    with torch.no_grad():  # the output layer starts at zero: make the flow non-trivial
        model.decoder.projection.weight.normal_(0, 1.0)
    model.save_pretrained(tmp_path / "flow")
    f1 = write_image(tmp_path / "f1.png", 20, 30, seed=1)
    f2 = write_image(tmp_path / "f2.png", 20, 30, seed=2)
    flo, npy, arrows = tmp_path / "out" / "flow.flo", tmp_path / "flow.npy", tmp_path / "arrows" / "a.png"
    args = ["predict", "flow", "--model", str(tmp_path / "flow"), str(f1), str(f2), "--out", str(tmp_path / "f.png")]
    result = runner.invoke(app, [*args, "--flo", str(flo), "--save-npy", str(npy), "--arrows", str(arrows)])
    assert result.exit_code == 0, result.output
    assert str(flo) in result.output and str(arrows) in result.output
    flow, valid = read_flo(flo)
    expected = np.load(npy)
    assert flow.shape == (20, 30, 2) and valid.all() and np.abs(expected).max() > 0
    np.testing.assert_array_equal(flow, expected)  # float32 both ways: exact
    assert Image.open(arrows).size == (30, 20)
    assert_user_error(runner.invoke(app, [*args, "--arrows", str(arrows), "--arrow-scale", "0"]))


def test_cli_autoencode(tmp_path):
    tiny_multimodal().save_pretrained(tmp_path / "mm")
    video = (np.random.default_rng(0).random((2, 8, 8, 3)) * 255).astype(np.uint8)  # (T, H, W, C)
    audio = np.random.default_rng(1).uniform(-1, 1, 64).astype(np.float32)
    np.save(tmp_path / "v.npy", video)
    np.save(tmp_path / "a.npy", audio)
    out = tmp_path / "out"
    base = ["predict", "autoencode", "--model", str(tmp_path / "mm")]
    result = runner.invoke(
        app,
        [
            *base,
            "--video",
            str(tmp_path / "v.npy"),
            "--audio",
            str(tmp_path / "a.npy"),
            "--out",
            str(out),
            "--chunk-size",
            "16",
        ],
    )
    assert result.exit_code == 0, result.output
    assert "video PSNR" in result.output and "audio PSNR" in result.output
    assert np.load(out / "video.npy").shape == (2, 3, 8, 8) and np.load(out / "audio.npy").shape == (64,)
    assert (out / "frames.png").is_file()
    metrics = json.loads((out / "metrics.json").read_text())
    assert set(metrics["psnr_db"]) == {"video", "audio"} and len(metrics["top_k"]) == 5
    np.save(tmp_path / "bad.npy", np.zeros((3, 8, 8, 3), np.uint8))
    assert_user_error(runner.invoke(app, [*base, "--video", str(tmp_path / "bad.npy"), "--out", str(out)]))
    assert_user_error(runner.invoke(app, [*base, "--out", str(out)]))
