"""Tests of perceiver_io.data.flow: procedural flow pairs and their ground truth, checked independently.

The central check warps frame 2 back with the ground-truth flow (bilinear ``grid_sample`` at
``p + flow(p)``) and compares with frame 1 on non-occluded pixels:

* with **affine textures** (each layer's colour an affine function of its coordinates, which bilinear
  interpolation reproduces exactly), rigid motions and hard edges, frame 1 is reproduced to 1e-4:
  only float32 rounding remains; the same check fails for flow off by 0.05 px;
* with the **default procedural textures** and smooth warps, what remains is the bilinear-interpolation
  error of the textures (sampled twice: once to render frame 2, once here; it grows with a texture's
  curvature, and where a layer shrinks or a warp compresses it). Noise cells are >= 4 px, stripe and
  checker periods >= 12 px with softened edges, so on pixels >= 2 px from layer edges the mean error
  is < 0.015 and the 99th percentile < 0.08 (measured at 64×80 over 18 pairs: mean 0.005-0.011, 99th
  percentile 0.018-0.057), against a mean of 0.03-0.05 for flow off by 0.5 px.
"""

from __future__ import annotations

import math
import struct

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from perceiver_io.data.flow import (
    FlowLayer,
    FlowPairs,
    FlowSceneConfig,
    LayerMotion,
    SmoothWarp,
    load_image_pool,
    make_rng,
    render_flow_pair,
    render_layers,
    sample_scene,
    split_indices,
)


def _warp_back(frame2: torch.Tensor, flow: torch.Tensor) -> torch.Tensor:
    """Frame 2 ``(C, H, W)`` sampled bilinearly at ``p + flow(p)`` -> ``(C, H, W)``."""
    _, h, w = frame2.shape
    ys, xs = torch.meshgrid(torch.arange(h).float(), torch.arange(w).float(), indexing="ij")
    gx = (xs + flow[0]) / (w - 1) * 2 - 1
    gy = (ys + flow[1]) / (h - 1) * 2 - 1
    grid = torch.stack([gx, gy], -1)[None]
    return F.grid_sample(frame2[None].float(), grid, mode="bilinear", align_corners=True)[0]


def _same_layer_neighbours(sample: dict, dilate: int = 0) -> torch.Tensor:
    """Pixels p whose 4 bilinear neighbours around ``p + flow(p)`` in frame 2 all show p's own layer
    (and, with ``dilate``, every frame-2 pixel within ``dilate`` px of them, and of p in frame 1)."""
    l1, l2, flow = sample["layers1"].long(), sample["layers2"].long(), sample["flow"]
    h, w = l1.shape

    def solid(layers: torch.Tensor) -> torch.Tensor:
        if dilate == 0:
            return layers
        x = layers[None, None].float()
        hi = F.max_pool2d(x, 2 * dilate + 1, 1, dilate)[0, 0]
        lo = -F.max_pool2d(-x, 2 * dilate + 1, 1, dilate)[0, 0]
        return torch.where(hi == lo, layers, -1)  # -1 near any edge

    s1, s2 = solid(l1), solid(l2)
    ys, xs = torch.meshgrid(torch.arange(h).float(), torch.arange(w).float(), indexing="ij")
    qx, qy = xs + flow[0], ys + flow[1]
    x0, y0 = qx.floor().long().clamp(0, w - 1), qy.floor().long().clamp(0, h - 1)
    x1, y1 = (x0 + 1).clamp(max=w - 1), (y0 + 1).clamp(max=h - 1)
    ok = s1 == l1
    for yy, xx in ((y0, x0), (y0, x1), (y1, x0), (y1, x1)):
        ok &= s2[yy, xx] == l1
    return ok & ~sample["occluded"]


def _affine_textures(layers: list[FlowLayer], g: torch.Generator) -> None:
    """Replace every layer's texture by an affine function of its canvas coordinates, within [0.1, 0.9]."""
    for layer in layers:
        h, w = layer.canvas_size
        ys, xs = torch.meshgrid(torch.linspace(-0.5, 0.5, h), torch.linspace(-0.5, 0.5, w), indexing="ij")
        a = torch.rand(3, 2, generator=g) * 2 - 1
        a = a / a.abs().sum(1, keepdim=True) * 0.8  # |a_x| + |a_y| = 0.8: values in [0.1, 0.9]
        layer.texture = 0.5 + a[:, 0, None, None] * xs + a[:, 1, None, None] * ys


# --------------------------------------------------------------------------------------------
# ground truth


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_warp_back_is_exact_with_affine_textures(seed):
    cfg = FlowSceneConfig(size=(48, 64), num_layers=(3, 5), warp_probability=0.0, photometric=False, antialias=False)
    g = make_rng(seed)
    layers = sample_scene(cfg, g)
    _affine_textures(layers, torch.Generator().manual_seed(seed))
    s = render_layers(layers, cfg.size, antialias=False, return_layers=True)
    keep = _same_layer_neighbours(s)
    assert keep.float().mean() > 0.5
    err = (_warp_back(s["frame2"], s["flow"]) - s["frame1"]).abs().amax(0)
    assert err[keep].max() < 1e-4
    # the check is sharp: flow off by 0.05 px shows (textures change by >= ~0.002 per px)
    off = (_warp_back(s["frame2"], s["flow"] + 0.05) - s["frame1"]).abs().amax(0)
    assert off[keep].max() > 1e-4


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_warp_back_with_affine_textures_and_non_rigid_warps(seed):
    """Every layer warped: frame 2 is then ``texture(T⁻¹(x))`` with T⁻¹ curved, which bilinear sampling
    between frame-2 pixels follows only to second order (measured: max 1.4e-4, mean <= 5e-6, against a
    mean of 5e-4-8e-4 for flow off by 0.05 px); this also checks the fixed-point inverse."""
    cfg = FlowSceneConfig(size=(48, 64), num_layers=(3, 5), warp_probability=1.0, photometric=False, antialias=False)
    layers = sample_scene(cfg, make_rng(seed))
    assert all(layer.motion.warp is not None for layer in layers)
    _affine_textures(layers, torch.Generator().manual_seed(seed))
    s = render_layers(layers, cfg.size, antialias=False, return_layers=True)
    keep = _same_layer_neighbours(s)
    err = (_warp_back(s["frame2"], s["flow"]) - s["frame1"]).abs().amax(0)[keep]
    off = (_warp_back(s["frame2"], s["flow"] + 0.05) - s["frame1"]).abs().amax(0)[keep]
    assert err.max() < 5e-4 and err.mean() < 2e-5
    assert off.mean() > 10 * err.mean()


@pytest.mark.parametrize("seed", [0, 1])
def test_backward_flow_warps_frame1_onto_frame2_and_inverts_the_forward_flow(seed):
    """``flow_backward`` is the exact flow of the reversed pair: warping frame 1 by it reproduces frame 2
    where the same layer is visible, and following the forward flow then the backward flow returns home."""
    cfg = FlowSceneConfig(size=(48, 64), num_layers=(3, 5), warp_probability=0.0, photometric=False, antialias=False)
    layers = sample_scene(cfg, make_rng(seed))
    _affine_textures(layers, torch.Generator().manual_seed(seed))
    s = render_layers(layers, cfg.size, antialias=False, return_layers=True)
    h, w = cfg.size
    ys, xs = torch.meshgrid(torch.arange(h).float(), torch.arange(w).float(), indexing="ij")
    fb = s["flow_backward"]
    tx, ty = xs + fb[0], ys + fb[1]
    outside = (tx < 0) | (tx > w - 1) | (ty < 0) | (ty > h - 1)
    reverse = {"layers1": s["layers2"], "layers2": s["layers1"], "flow": fb, "occluded": outside}
    keep = _same_layer_neighbours(reverse)
    assert keep.float().mean() > 0.5
    err = (_warp_back(s["frame1"], fb) - s["frame2"]).abs().amax(0)
    assert err[keep].max() < 1e-4
    # forward-backward consistency on pixels whose forward target is surrounded by their own layer
    fwd_keep = _same_layer_neighbours(s)
    round_trip = s["flow"] + _warp_back(fb, s["flow"])
    assert round_trip.norm(dim=0)[fwd_keep].max() < 1e-3


def test_warp_back_with_default_textures_within_interpolation_error():
    data = FlowPairs("train", size=(64, 80), photometric=False, textures=None, silhouettes=None, return_layers=True)
    errs, offs = [], []
    for i in range(6):
        s = data[i]
        keep = _same_layer_neighbours(s, dilate=2)
        assert keep.float().mean() > 0.4
        err = (_warp_back(s["frame2"], s["flow"]) - s["frame1"]).abs().amax(0)
        off = (_warp_back(s["frame2"], s["flow"] + 0.5) - s["frame1"]).abs().amax(0)
        errs.append(err[keep])
        offs.append(off[keep])
    e, o = torch.cat(errs), torch.cat(offs)
    assert e.mean() < 0.015
    assert torch.quantile(e, 0.99) < 0.08
    assert o.mean() > 2.5 * e.mean()  # flow off by half a pixel is clearly worse


def test_motion_inverse_and_bound():
    g = torch.Generator().manual_seed(0)
    center = torch.tensor([20.0, 30.0])
    warp = SmoothWarp(
        center, 15.0, torch.randn(3, 2, generator=g) * 0.05, torch.randn(3, 2, generator=g), torch.rand(3)
    )
    assert warp.lipschitz < 0.9
    rot = 1.1 * torch.tensor([[math.cos(0.2), -math.sin(0.2)], [math.sin(0.2), math.cos(0.2)]])
    m = LayerMotion(center, rot, (3.0, -2.0), warp)
    p = center + (torch.rand(500, 2, generator=g) * 2 - 1) * 10
    q = m.forward(p)
    assert (m.inverse(q) - p).abs().max() < 1e-3
    assert ((q - p).norm(dim=1) <= m.displacement_bound(10 * math.sqrt(2)) + 1e-4).all()
    assert m.inverse_iterations >= 1
    with pytest.raises(ValueError, match="Lipschitz"):
        LayerMotion(center, warp=SmoothWarp(center, 1.0, torch.ones(1, 2), torch.ones(1, 2), torch.zeros(1)))
    with pytest.raises(ValueError, match="invertible"):
        LayerMotion(center, torch.zeros(2, 2))


def test_flow_within_max_motion():
    data = FlowPairs("valid", size=(40, 56), max_motion=6.0, textures=None, silhouettes=None)
    for i in range(8):
        assert data[i]["flow"].norm(dim=0).max() <= 6.0 + 1e-3


# --------------------------------------------------------------------------------------------
# occlusion, hand-built


def _square_scene(square_shift, background_shift, size=(40, 50)):
    """A static-texture background and a 10×10 square at x, y in 20..29 (canvas origin 19: a 1-px zero border)."""
    h, w = size
    bg = FlowLayer(torch.full((3, h + 20, w + 20), 0.3), None, (-10, -10), LayerMotion.translation(*background_shift))
    alpha = torch.zeros(12, 12)
    alpha[1:11, 1:11] = 1.0
    sq = FlowLayer(torch.full((3, 12, 12), 0.9), alpha, (19, 19), LayerMotion.translation(*square_shift))
    return render_layers([bg, sq], size, return_layers=True)


def test_occlusion_square_over_static_background():
    s = _square_scene((5.0, 0.0), (0.0, 0.0))
    expected = torch.zeros(40, 50, dtype=torch.bool)
    expected[20:30, 30:35] = True  # background pixels the square covers after moving 5 px right
    assert torch.equal(s["occluded"], expected)
    flow = s["flow"]
    assert (flow[0, 20:30, 20:30] == 5).all() and (flow[1] == 0).all()
    assert flow[0].abs().sum() == 5 * 100
    assert torch.equal(s["layers2"][20:30, 25:35], torch.ones(10, 10, dtype=torch.uint8))
    assert s["layers2"].sum() == 100
    assert torch.allclose(s["frame2"][:, 20:30, 25:35], torch.tensor(0.9))


def test_occlusion_background_moving_out_and_under():
    s = _square_scene((0.0, 0.0), (3.0, 0.0))
    expected = torch.zeros(40, 50, dtype=torch.bool)
    expected[:, 47:] = True  # x + 3 > 49: leaves the image
    expected[20:30, 17:20] = True  # moves under the static square (x + 3 in 20..29, x outside the square)
    assert torch.equal(s["occluded"], expected)


def test_occlusion_square_leaving_the_image():
    s = _square_scene((25.0, -22.0), (0.0, 0.0))  # square pixels with x + 25 > 49 or y - 22 < 0 leave
    expected = torch.zeros(40, 50, dtype=torch.bool)
    expected[20:30, 25:30] = True
    expected[20:22, 20:30] = True
    # background pixels covered by the square in frame 2: x in 45..49, y in 0..7, none inside the square
    expected[0:8, 45:50] = True
    assert torch.equal(s["occluded"], expected)


# --------------------------------------------------------------------------------------------
# the data set


@pytest.mark.parametrize("size", [(37, 53), (64, 64)])
def test_shapes_dtypes_ranges(size):
    data = FlowPairs("train", size=size, textures=None, silhouettes=None)
    s = data[0]
    h, w = size
    assert s["frame1"].shape == s["frame2"].shape == (3, h, w)
    assert s["flow"].shape == (2, h, w) and s["occluded"].shape == (h, w)
    assert s["frame1"].dtype == s["flow"].dtype == torch.float32 and s["occluded"].dtype == torch.bool
    for k in ("frame1", "frame2"):
        assert 0 <= s[k].min() and s[k].max() <= 1
    assert torch.isfinite(s["flow"]).all()
    assert 0 < s["occluded"].float().mean() < 0.5
    batch = next(iter(torch.utils.data.DataLoader(data, batch_size=2)))
    assert batch["flow"].shape == (2, 2, h, w)


def test_deterministic_by_seed():
    a = FlowPairs("train", size=(32, 40), textures=None, silhouettes=None)
    b = FlowPairs("train", size=(32, 40), textures=None, silhouettes=None)
    for k in ("frame1", "frame2", "flow", "occluded"):
        assert torch.equal(a[5][k], b[5][k])
    assert not torch.equal(a[5]["frame1"], a[6]["frame1"])
    c = FlowPairs("train", size=(32, 40), textures=None, silhouettes=None, seed=1)
    assert not torch.equal(a[5]["frame1"], c[5]["frame1"])
    assert torch.equal(a[-1]["flow"], a[len(a) - 1]["flow"])


def test_photometric_switch_keeps_the_ground_truth():
    on = FlowPairs("train", size=(32, 40), textures=None, silhouettes=None)
    off = on.with_config(photometric=False)
    x, y = on[2], off[2]
    assert torch.equal(x["flow"], y["flow"]) and torch.equal(x["occluded"], y["occluded"])
    assert not torch.equal(x["frame2"], y["frame2"])


def test_splits_have_disjoint_seeds_and_pools():
    seeds = {
        sp: {FlowPairs(sp, size=(8, 8), textures=None, silhouettes=None).seed_of(i) for i in range(100)}
        for sp in ("train", "valid", "test")
    }
    assert not (seeds["train"] & seeds["valid"]) and not (seeds["train"] & seeds["test"])
    assert not (seeds["valid"] & seeds["test"])
    # keys differ in their first element for every seed and index: splits never share a pair
    assert {k[0] for k in seeds["train"]} == {0} and {k[0] for k in seeds["valid"]} == {1}
    parts = [set(split_indices(95, sp).tolist()) for sp in ("train", "valid", "test")]
    assert sum(map(len, parts)) == 95 and not (parts[0] & parts[1]) and not (parts[1] & parts[2])
    # an image pool whose pixel (0, 0) holds the image's index: each split sees only its own images
    pool = torch.zeros(120, 1, 8, 8, dtype=torch.uint8)
    pool[:, 0, 0, 0] = torch.arange(120, dtype=torch.uint8)
    ids = {sp: set(load_image_pool(pool, sp)[0][:, 0, 0, 0].tolist()) for sp in ("train", "valid", "test")}
    assert len(ids["train"]) == 96 and len(ids["valid"]) == len(ids["test"]) == 12
    assert not (ids["train"] & ids["valid"]) and not (ids["train"] & ids["test"]) and not (ids["valid"] & ids["test"])
    a = FlowPairs("train", size=(24, 24), textures=None, silhouettes=None)
    b = FlowPairs("valid", size=(24, 24), textures=None, silhouettes=None)
    assert not torch.equal(a[0]["frame1"], b[0]["frame1"])


def test_image_textures_and_silhouettes_from_tensors():
    yy, xx = torch.meshgrid(torch.arange(28.0), torch.arange(28.0), indexing="ij")
    sil = torch.stack([(((xx - 14) ** 2 + (yy - 14) ** 2) < (6 + k % 6) ** 2) for k in range(30)]).to(torch.uint8) * 255
    photos = torch.rand(20, 3, 40, 40)  # float in [0, 1] accepted
    data = FlowPairs("test", size=(48, 48), textures=photos, silhouettes=sil, shapes=("silhouette",))
    assert data.sources == {"textures": ["textures (tensor)"], "silhouettes": ["silhouettes (tensor)"]}
    assert data.textures.shape == (2, 3, 40, 40) and data.silhouettes.shape == (3, 28, 28)
    s = render_flow_pair(data.config, 0, data.textures, data.silhouettes, return_layers=True)
    assert s["layers1"].max() >= 1  # a silhouette layer is visible
    only_images = FlowPairs("test", size=(32, 32), textures={"test": photos}, silhouettes=None)
    assert only_images.textures.shape[0] == 20
    with pytest.raises(ValueError, match="no images for split 'train'"):
        FlowPairs("train", size=(32, 32), textures={"test": photos})


@pytest.mark.parametrize(("pool_shape", "size"), [((12, 1, 28, 28), (96, 96)), ((12, 3, 120, 150), (48, 64))])
def test_image_texture_family(pool_shape, size):
    """Small grey images tile a mosaic (background canvas >= 2x the image side), large colour ones are cropped."""
    pool = (torch.rand(pool_shape) * 255).to(torch.uint8)
    data = FlowPairs("train", size=size, textures=pool, silhouettes=None, texture_families=("image",))
    s = data[0]
    assert s["frame1"].shape == (3, *size) and s["frame1"].std() > 0.02


def test_auto_sources_fall_back_without_cached_images(tmp_path, monkeypatch):
    monkeypatch.setenv("PERCEIVER_IO_DATA", str(tmp_path))
    data = FlowPairs("train", size=(24, 24))
    assert data.sources == {"textures": [], "silhouettes": []}
    assert data.textures is None and data.silhouettes is None
    assert data[0]["flow"].shape == (2, 24, 24)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"split": "val"}, "split must be one of"),
        ({"size": (1, 8)}, "size must be two integers >= 2"),
        ({"num_layers": (3, 1)}, "num_layers must be a range"),
        ({"max_motion": -1.0}, "max_motion must be >= 0"),
        ({"max_warp": 0.95}, r"max_warp must be in \[0, 0.9\)"),
        ({"shapes": ("star",)}, "shapes must be a non-empty subset"),
        ({"seed": -1}, "seed must be a non-negative integer"),
        ({"length": 0}, "length must be a positive number"),
        ({"texture_detail": (0.5, 2.0)}, r"texture_detail must be a range \(lo, hi\) with 1 <= lo <= hi px"),
        ({"textures": torch.zeros(4, 2, 8, 8)}, r"textures must have shape \(N, H, W\) or \(N, C, H, W\)"),
    ],
)
def test_config_errors(kwargs, match):
    args = {"textures": None, "silhouettes": None, **kwargs}
    with pytest.raises(ValueError, match=match):
        FlowPairs(**args)


def test_texture_detail_sets_the_finest_noise_scale():
    """Finer noise lattices give larger pixel-to-pixel differences in the rendered frames."""

    def roughness(detail):
        data = FlowPairs("valid", size=(32, 32), length=6, textures=None, silhouettes=None, photometric=False,
                         texture_families=("noise",), texture_detail=detail)  # fmt: skip
        return float(torch.stack([data[i]["frame1"].diff(dim=-1).abs().mean() for i in range(len(data))]).mean())

    assert roughness((1.0, 1.5)) > 1.5 * roughness((8.0, 12.0))


def test_index_out_of_range():
    data = FlowPairs("valid", size=(8, 8), length=3, textures=None, silhouettes=None)
    with pytest.raises(IndexError, match="out of range for 3 pairs"):
        data[3]


def _write_idx(path, array) -> None:
    """An IDX file: magic 0x08 (uint8) with the number of dimensions, big-endian int32 sizes, the bytes."""
    a = array.astype("uint8")
    path.write_bytes(bytes([0, 0, 8, a.ndim]) + struct.pack(f">{a.ndim}i", *a.shape) + a.tobytes())


def test_image_sets_from_a_folder_of_idx_files(tmp_path):
    """A folder in MNIST layout (the loader's own train / valid / test split) as textures and silhouettes."""
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[:28, :28]
    radius = rng.uniform(4, 12, size=(5_010, 1, 1))
    train = ((xx - 14) ** 2 + (yy - 14) ** 2 < radius**2) * 255
    _write_idx(tmp_path / "train-images-idx3-ubyte", train)
    _write_idx(tmp_path / "train-labels-idx1-ubyte", np.zeros(5_010))
    _write_idx(tmp_path / "t10k-images-idx3-ubyte", train[:20])
    _write_idx(tmp_path / "t10k-labels-idx1-ubyte", np.zeros(20))
    data = FlowPairs("train", size=(32, 32), textures=tmp_path, silhouettes=tmp_path, shapes=("silhouette",))
    assert data.textures.shape == (10, 1, 28, 28)  # the first 5,010 - 5,000 training images
    assert data.silhouettes.shape == (10, 28, 28)
    assert data.silhouettes.data_ptr() == data.textures.data_ptr()  # one copy shared
    assert data.sources == {"textures": [str(tmp_path)], "silhouettes": [str(tmp_path)]}
    s = data[0]
    assert s["flow"].shape == (2, 32, 32)
    assert FlowPairs("test", size=(32, 32), textures=tmp_path, silhouettes=None).textures.shape[0] == 20
    with pytest.raises(FileNotFoundError):
        FlowPairs("train", size=(32, 32), textures=tmp_path / "missing")


def test_speed_benchmark_smoke(capsys):
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parents[1] / "bench" / "flow_data_speed.py"
    spec = importlib.util.spec_from_file_location("flow_data_speed", path)
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    summary = bench.main(["--sizes", "16x24", "--pairs", "2"])
    out = capsys.readouterr().out
    assert "pairs/s" in out and out.strip().splitlines()[-1].startswith("{")
    assert summary["results"][0]["size"] == "16x24" and summary["results"][0]["pairs_per_s"] > 0


def test_preview_flow_cli_draws_a_row_per_pair(tmp_path):
    from PIL import Image
    from typer.testing import CliRunner

    from perceiver_io.cli import app

    out = tmp_path / "pairs.png"
    args = ["data", "preview-flow", "-o", str(out), "--num-pairs", "2", "--size", "16", "16", "--scale", "1"]
    res = CliRunner().invoke(app, args)
    assert res.exit_code == 0, res.output
    assert Image.open(out).size == (4 * 18 + 2, 2 * 18 + 2)  # 4 tiles of 16 px per row, 2 px gaps
    res = CliRunner().invoke(app, ["data", "preview-flow", "-o", str(out), "--split", "nope"])
    assert res.exit_code == 2 and "split must be one of" in res.output


def test_preview_flow_cli_exports_pairs_the_evaluator_reads(tmp_path):
    from typer.testing import CliRunner

    from perceiver_io.cli import app
    from perceiver_io.tasks.flow import read_pairs_dir

    args = ["data", "preview-flow", "-o", str(tmp_path / "p.png"), "--num-pairs", "2", "--size", "12", "16",
            "--split", "test", "--texture-families", "noise", "--texture-detail", "1", "2",
            "--export", str(tmp_path / "pairs")]  # fmt: skip
    res = CliRunner().invoke(app, args)
    assert res.exit_code == 0, res.output
    pairs = read_pairs_dir(tmp_path / "pairs")
    truth = FlowPairs("test", size=(12, 16), length=2, texture_families=("noise",), texture_detail=(1.0, 2.0))
    assert len(pairs) == 2
    for got, want in zip(pairs, truth, strict=True):
        assert torch.equal(got["flow"], want["flow"]) and bool(got["valid"].all())
        assert (got["frame1"] - want["frame1"]).abs().max() <= 0.5 / 255 + 1e-6  # 8-bit PNG
    res = CliRunner().invoke(app, [*args[:-2], "--texture-families", "plaid"])
    assert res.exit_code == 2 and "texture_families must be" in res.output
