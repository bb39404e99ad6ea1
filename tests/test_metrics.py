"""Tests of perceiver_io.metrics against values worked out by hand on tiny arrays."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from perceiver_io.metrics import FlowMetrics, endpoint_error, flow_metrics


def _two_images():
    """Two 2×2 images, worked out by hand.

    Image 0, all 4 pixels valid (row-major a, b, c, d):
      a: pred (3, 4),     target (0, 0)    -> EPE 5  (3-4-5); |t| = 0, 5 > 3 and 5 > 0     -> Fl outlier
      b: pred (0, 1),     target (0, 0)    -> EPE 1 exactly (not < 1: strict); < 3, < 5    -> not outlier
      c: pred (104, 0),   target (100, 0)  -> EPE 4  > 3 but < 5 % of 100 = 5              -> not outlier
      d: pred (2, -1),    target (2, -1)   -> EPE 0
      per image: epe (5+1+4+0)/4 = 2.5, px1 1/4, px3 2/4, px5 3/4 (5 is not < 5), fl 1/4
      occluded: a and c -> noc {b, d}: epe 0.5, px1 1/2, px3 1, px5 1, fl 0
                           occ {a, c}: epe 4.5, px1 0, px3 0, px5 1/2, fl 1/2
    Image 1, only pixel (0, 0) valid: pred (1.2, 1.6), target (0, 0) -> EPE sqrt(1.44 + 2.56) = 2;
      the other pixels carry huge errors that must not count. No pixel occluded.
      per image: epe 2, px1 0, px3 1, px5 1, fl 0; noc = the same pixel; occ empty.
    """
    pred = torch.zeros(2, 2, 2, 2)
    target = torch.zeros(2, 2, 2, 2)
    # image 0
    pred[0, :, 0, 0] = torch.tensor([3.0, 4.0])
    pred[0, :, 0, 1] = torch.tensor([0.0, 1.0])
    pred[0, :, 1, 0] = torch.tensor([104.0, 0.0])
    target[0, :, 1, 0] = torch.tensor([100.0, 0.0])
    pred[0, :, 1, 1] = torch.tensor([2.0, -1.0])
    target[0, :, 1, 1] = torch.tensor([2.0, -1.0])
    # image 1
    pred[1, :, 0, 0] = torch.tensor([1.2, 1.6])
    pred[1, :, 0, 1] = torch.tensor([1e3, 0.0])
    pred[1, :, 1, :] = 1e4
    valid = torch.tensor([[[True, True], [True, True]], [[True, False], [False, False]]])
    occluded = torch.tensor([[[True, False], [True, False]], [[False, False], [False, False]]])
    return pred, target, valid, occluded


def test_endpoint_error_hand_values():
    pred, target, _, _ = _two_images()
    epe = endpoint_error(pred, target)
    assert epe.shape == (2, 2, 2)
    torch.testing.assert_close(epe[0], torch.tensor([[5.0, 1.0], [4.0, 0.0]]))
    assert epe[1, 0, 0].item() == pytest.approx(2.0)
    assert endpoint_error(pred[0], target[0]).shape == (2, 2)  # single image (2, H, W) -> (H, W)


def test_pooled_hand_values():
    pred, target, valid, occluded = _two_images()
    m = flow_metrics(pred, target, valid=valid, occluded=occluded, convention="pooled")
    # all: 5 valid pixels, EPE 5, 1, 4, 0 | 2
    assert m["images"] == 2 and m["pixels"] == 5
    assert m["epe"] == pytest.approx(12 / 5)  # (5 + 1 + 4 + 0 + 2) / 5
    assert m["px1"] == pytest.approx(1 / 5)  # only the 0
    assert m["px3"] == pytest.approx(3 / 5)  # 1, 0, 2
    assert m["px5"] == pytest.approx(4 / 5)  # 1, 4, 0, 2
    assert m["fl_all"] == pytest.approx(1 / 5)  # pixel a
    # noc: b, d | image 1's pixel: EPE 1, 0, 2
    assert m["pixels_noc"] == 3
    assert m["epe_noc"] == pytest.approx(1.0)
    assert m["px1_noc"] == pytest.approx(1 / 3)
    assert m["px3_noc"] == pytest.approx(1.0)
    assert m["fl_noc"] == pytest.approx(0.0)
    # occ: a, c: EPE 5, 4
    assert m["pixels_occ"] == 2
    assert m["epe_occ"] == pytest.approx(4.5)
    assert m["px5_occ"] == pytest.approx(0.5)
    assert m["fl_occ"] == pytest.approx(0.5)


def test_per_image_hand_values():
    pred, target, valid, occluded = _two_images()
    m = flow_metrics(pred, target, valid=valid, occluded=occluded, convention="per_image")
    assert m["epe"] == pytest.approx((2.5 + 2.0) / 2)  # 2.25, vs 2.4 pooled
    assert m["px1"] == pytest.approx((1 / 4 + 0) / 2)
    assert m["px3"] == pytest.approx((2 / 4 + 1) / 2)
    assert m["px5"] == pytest.approx((3 / 4 + 1) / 2)
    assert m["fl_all"] == pytest.approx((1 / 4 + 0) / 2)
    assert m["epe_noc"] == pytest.approx((0.5 + 2.0) / 2)  # 1.25, vs 1.0 pooled
    assert m["px1_noc"] == pytest.approx((1 / 2 + 0) / 2)
    # image 1 has no occluded pixel: it is left out of the occ mean
    assert m["epe_occ"] == pytest.approx(4.5)
    assert m["fl_occ"] == pytest.approx(0.5)
    per = FlowMetrics()
    per.update(pred, target, valid=valid, occluded=occluded)
    rows = per.per_image("occ")
    assert rows["count"].tolist() == [2.0, 0.0]
    assert rows["epe"][0].item() == pytest.approx(4.5) and math.isnan(rows["epe"][1].item())


def test_speed_bins_hand_values():
    """True speeds of the valid pixels: image 0 a 0, b 0, c 100, d sqrt(5); image 1 0 (see _two_images)."""
    pred, target, valid, occluded = _two_images()
    m = flow_metrics(pred, target, valid=valid, occluded=occluded, speed_bins=(1, 10))
    assert m["epe_s0-1"] == pytest.approx((5 + 1 + 2) / 3)  # a, b | image 1
    assert m["epe_s1-10"] == pytest.approx(0.0)  # d
    assert m["epe_s10+"] == pytest.approx(4.0)  # c: the bins' top edge is open
    per = flow_metrics(pred, target, valid=valid, convention="per_image", speed_bins=(1, 10))
    assert per["epe_s0-1"] == pytest.approx((3.0 + 2.0) / 2)  # image 0 (5 + 1) / 2, image 1 2
    sintel = flow_metrics(pred, target, valid=valid)  # Sintel's s0-10, s10-40, s40+
    assert sintel["epe_s0-10"] == pytest.approx(2.0) and sintel["epe_s40+"] == pytest.approx(4.0)
    assert math.isnan(sintel["epe_s10-40"])  # no pixel in the bin
    assert FlowMetrics((0.5, 2)).speed_keys == ["epe_s0-0.5", "epe_s0.5-2", "epe_s2+"]
    for bad in ((10, 10), (0, 5), (5, 1)):
        with pytest.raises(ValueError, match="speed_bins must be increasing positive"):
            FlowMetrics(bad)


def test_accumulation_is_batch_independent():
    pred, target, valid, occluded = _two_images()
    one = FlowMetrics()
    one.update(pred, target, valid, occluded)
    split = FlowMetrics()
    split.update(pred[:1], target[:1], valid[:1], occluded[:1])
    split.update(pred[1], target[1], valid[1], occluded[1])  # a single (2, H, W) image
    assert split.num_images == 2
    for conv in ("pooled", "per_image"):
        a, b = one.compute(conv), split.compute(conv)
        assert a.keys() == b.keys()
        for k in a:
            assert a[k] == pytest.approx(b[k], nan_ok=True), k
    split.reset()
    assert split.num_images == 0 and math.isnan(split.compute()["epe"])


def test_different_image_sizes_mix():
    m = FlowMetrics()
    m.update(torch.ones(1, 2, 2, 2) * 0.0, torch.zeros(1, 2, 2, 2))  # 4 pixels, EPE 0
    m.update(torch.full((1, 2, 1, 1), 3.0), torch.zeros(1, 2, 1, 1))  # 1 pixel, EPE sqrt(18)
    e = math.sqrt(18)
    assert m.compute("pooled")["epe"] == pytest.approx(e / 5)
    assert m.compute("per_image")["epe"] == pytest.approx(e / 2)


def test_fl_matches_raft_formula_on_random_data():
    g = torch.Generator().manual_seed(0)
    target = torch.randn(3, 2, 7, 9, generator=g) * 20
    pred = target + torch.randn(3, 2, 7, 9, generator=g) * 4
    valid = torch.rand(3, 7, 9, generator=g) > 0.2
    epe = np.linalg.norm((pred - target).numpy(), axis=1)
    mag = np.linalg.norm(target.numpy(), axis=1)
    v = valid.numpy()
    with np.errstate(divide="ignore"):
        out = (epe > 3.0) & ((epe / mag) > 0.05)  # RAFT evaluate.py's outlier definition
    m = flow_metrics(pred, target, valid=valid)
    assert m["fl_all"] == pytest.approx(out[v].mean())
    assert m["epe"] == pytest.approx(epe[v].mean(), rel=1e-6)
    for t in (1, 3, 5):
        assert m[f"px{t}"] == pytest.approx((epe[v] < t).mean())
    per = flow_metrics(pred, target, valid=valid, convention="per_image")
    assert per["epe"] == pytest.approx(np.mean([epe[i][v[i]].mean() for i in range(3)]), rel=1e-6)
    assert per["fl_all"] == pytest.approx(np.mean([out[i][v[i]].mean() for i in range(3)]))


def test_masks_as_numbers_and_defaults():
    pred, target, valid, occluded = _two_images()
    a = flow_metrics(pred, target, valid=valid, occluded=occluded)
    b = flow_metrics(pred, target, valid=valid.float(), occluded=occluded.to(torch.uint8))
    assert a == b
    c = flow_metrics(pred[:1], target[:1])  # no valid mask: all pixels; no occlusion mask: no _noc / _occ keys
    assert c["pixels"] == 4 and c["epe"] == pytest.approx(2.5)
    assert not any(k.endswith(("_noc", "_occ")) for k in c)
    d = flow_metrics(pred[:1].numpy(), target[:1].numpy())  # numpy works too
    assert d["epe"] == pytest.approx(2.5)


def test_non_finite_values_only_matter_at_valid_pixels():
    pred, target, valid, _ = _two_images()
    pred[1, :, 1, 1] = math.nan  # invalid pixel: ignored
    assert flow_metrics(pred, target, valid=valid)["epe"] == pytest.approx(12 / 5)
    with pytest.raises(ValueError, match=r"pred is not finite at 1 valid pixels \(first: image 1, row 1, column 1\)"):
        flow_metrics(pred, target)
    target[0, 0, 0, 0] = math.inf
    with pytest.raises(ValueError, match="target is not finite"):
        flow_metrics(pred, target, valid=valid)


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"pred": torch.zeros(1, 3, 2, 2)}, ValueError, r"pred must have shape \(B, 2, H, W\).*\(1, 3, 2, 2\)"),
        ({"target": torch.zeros(1, 2, 3, 2)}, ValueError, r"same shape.*\(1, 2, 2, 2\) and \(1, 2, 3, 2\)"),
        ({"pred": torch.zeros(1, 2, 2, 2, dtype=torch.long)}, TypeError, "pred must be a floating-point.*int64"),
        ({"valid": torch.ones(1, 2, 3, dtype=torch.bool)}, ValueError, r"valid must have shape \(B, H, W\)"),
        ({"occluded": torch.ones(2, 2, 2, dtype=torch.bool)}, ValueError, r"occluded must have shape.*\(1, 2, 2\)"),
        ({"convention": "mean"}, ValueError, "convention must be one of"),
    ],
)
def test_errors(kwargs, error, match):
    args = {"pred": torch.zeros(1, 2, 2, 2), "target": torch.zeros(1, 2, 2, 2), **kwargs}
    with pytest.raises(error, match=match):
        flow_metrics(**args)


def test_per_image_region_error():
    with pytest.raises(ValueError, match="region must be one of"):
        FlowMetrics().per_image("edges")


def test_psnr_from_mse_by_hand():
    import math

    from perceiver_io.metrics import psnr_from_mse

    assert psnr_from_mse(0.01) == pytest.approx(20.0)  # 10·log10(1 / 0.01)
    assert psnr_from_mse(0.04, peak=2.0) == pytest.approx(20.0)
    assert psnr_from_mse(0.0) == math.inf
