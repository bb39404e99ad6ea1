"""Flow pictures: the Middlebury colour wheel, colour PNGs (both wheels) and arrow overlays."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from perceiver_io.visualize import (
    flow_to_color,
    flow_to_rgb,
    middlebury_colorwheel,
    save_flow_arrows,
    save_flow_png,
)

Image = pytest.importorskip("PIL.Image")


def test_colorwheel_definition():
    wheel = middlebury_colorwheel()
    assert wheel.shape == (55, 3)
    # segment starts: red, yellow, green, cyan, blue, magenta (RY=15, YG=6, GC=4, CB=11, BM=13, MR=6)
    starts = {0: [255, 0, 0], 15: [255, 255, 0], 21: [0, 255, 0], 25: [0, 255, 255], 36: [0, 0, 255], 49: [255, 0, 255]}
    for k, rgb in starts.items():
        assert wheel[k].tolist() == rgb, k
    assert wheel[1].tolist() == [255, math.floor(255 / 15), 0]
    assert wheel[54].tolist() == [255, 0, 255 - math.floor(255 * 5 / 6)]  # last magenta -> red step: (255, 0, 43)


def test_flow_to_color_reference_values():
    # angle = atan2(-v, -u) / pi, index fk = (angle + 1) / 2 * 54, colour = lerp(wheel[k0], wheel[k1]),
    # then 1 - r (1 - colour) for r <= 1 (white at r = 0), 0.75 colour beyond; floor(255 c)
    flow = torch.tensor(
        [
            [1.0, 0.0],  # right: angle -1 -> wheel[0] = red
            [0.5, 0.0],  # right, r = 0.5: halfway to white: 255 - floor(0.5 * 255) ... = (255, 127, 127)
            [-1.0, 0.0],  # left: angle 0 -> fk = 27 -> wheel[27] (CB, i = 2) = (0, 255 - floor(510 / 11), 255)
            [0.0, 1.0],  # down: angle -1/2 -> fk = 13.5 -> mean of wheel[13], wheel[14] = (255, (221 + 238) / 2, 0)
            [2.0, 0.0],  # right, r = 2 > 1: red dimmed to 75 %
            [1.0, -0.0],  # negative zero v is still "right"
            [0.0, 0.0],  # zero: white
        ]
    )[None]
    rgb = flow_to_color(flow, max_radius=1.0)
    assert rgb.shape == (1, 7, 3) and rgb.dtype == torch.uint8
    assert rgb[0].tolist() == [
        [255, 0, 0],
        [255, 127, 127],
        [0, 209, 255],
        [255, 229, 0],
        [191, 0, 0],
        [255, 0, 0],
        [255, 255, 255],
    ]


def test_flow_to_color_properties():
    assert (flow_to_color(torch.zeros(3, 4, 2)) == 255).all()  # zero flow -> white (no division by zero)
    # eight directions at unit magnitude: all different colours, all fully saturated (some channel 0)
    angles = torch.arange(8) * (2 * math.pi / 8)
    ring = torch.stack([angles.cos(), angles.sin()], dim=-1)[None]  # (1, 8, 2)
    rgb = flow_to_color(ring)
    colours = {tuple(c) for c in rgb[0].tolist()}
    assert len(colours) == 8 and all(min(c) == 0 for c in colours)
    # the default radius is the largest magnitude: the largest vector gets the full wheel colour
    field = torch.tensor([[[3.0, 0.0], [6.0, 0.0]]])
    assert flow_to_color(field)[0, 1].tolist() == [255, 0, 0]
    assert flow_to_color(field)[0, 0].tolist() == flow_to_color(field / 6, max_radius=1.0)[0, 0].tolist()
    # numpy input, unknown (non-finite) pixels are black and ignored for the radius
    nan_field = np.array([[[np.nan, 0.0], [2.0, 0.0]]], np.float32)
    assert flow_to_color(nan_field).tolist() == [[[0, 0, 0], [255, 0, 0]]]
    with pytest.raises(ValueError, match=r"flow must have shape \(H, W, 2\), got \(2, 4, 4\)"):
        flow_to_color(torch.zeros(2, 4, 4))
    with pytest.raises(ValueError, match="max_radius must be a positive number of pixels"):
        flow_to_color(torch.zeros(4, 4, 2), max_radius=0)


def test_save_flow_png_wheels(tmp_path):
    flow = torch.randn(5, 7, 2)
    save_flow_png(flow, tmp_path / "m.png")  # default: middlebury
    save_flow_png(flow, tmp_path / "h.png", 2.0, wheel="hsv")
    m, h = np.asarray(Image.open(tmp_path / "m.png")), np.asarray(Image.open(tmp_path / "h.png"))
    assert m.shape == h.shape == (5, 7, 3)
    assert (m == flow_to_color(flow).numpy()).all()
    assert (h == flow_to_rgb(flow, 2.0).numpy()).all()
    with pytest.raises(ValueError, match=r"wheel must be one of \('middlebury', 'hsv'\), got 'rainbow'"):
        save_flow_png(flow, tmp_path / "x.png", wheel="rainbow")


def test_save_flow_arrows(tmp_path):
    h, w = 40, 60
    frame = np.full((h, w, 3), 128, np.uint8)
    flow = torch.zeros(h, w, 2)
    flow[..., 0] = 5.0  # everything moves 5 px right
    save_flow_arrows(frame, flow, tmp_path / "a.png", step=10)
    drawn = np.asarray(Image.open(tmp_path / "a.png"))
    assert drawn.shape == (h, w, 3)
    changed = (drawn != 128).any(axis=2)
    for y in (5, 15, 25, 35):  # one arrow per 10 x 10 cell, from its centre 5 px to the right
        for x in (5, 15, 25, 35, 45, 55):
            assert changed[y, x : min(x + 6, w)].all(), (x, y)
    assert not changed[[0, 10, 20, 30], :].any()  # rows between the arrows keep the frame
    # (3, H, W) float frames, automatic step (at most max_arrows arrows) and scale, a fixed colour
    save_flow_arrows(torch.rand(3, h, w), torch.randn(h, w, 2), tmp_path / "b.png", max_arrows=12, scale=None)
    assert Image.open(tmp_path / "b.png").size == (w, h)
    save_flow_arrows(frame, flow, tmp_path / "c.png", step=10, color=(255, 0, 0))
    red = np.asarray(Image.open(tmp_path / "c.png"))
    assert (red[5, 6:10] == [255, 0, 0]).all()
    with pytest.raises(ValueError, match=r"frame1 and flow must have the same \(H, W\), got \(40, 60\) and \(40, 61\)"):
        save_flow_arrows(frame, torch.zeros(h, w + 1, 2), tmp_path / "x.png")
    with pytest.raises(ValueError, match="step must be a positive integer"):
        save_flow_arrows(frame, flow, tmp_path / "x.png", step=0)
    with pytest.raises(ValueError, match="color must be"):
        save_flow_arrows(frame, flow, tmp_path / "x.png", color="red")


def test_arrow_grid_respects_max_arrows():
    from perceiver_io.visualize import _arrow_grid

    for h, w, n in [(40, 60, 12), (368, 496, 625), (5, 7, 1000), (1, 1, 1)]:
        ys, xs, step = _arrow_grid(h, w, None, n)
        assert 1 <= len(ys) * len(xs) <= n and step >= 4
        assert int(ys.max()) < h and int(xs.max()) < w
