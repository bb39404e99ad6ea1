"""Tests of perceiver_io.flow_io: Middlebury .flo and KITTI 16-bit PNG flow files."""

from __future__ import annotations

import math
import struct

import numpy as np
import pytest
import torch

from perceiver_io.flow_io import (
    FLO_UNKNOWN,
    KITTI_RANGE,
    read_flo,
    read_flow,
    read_kitti_flow,
    write_flo,
    write_flow,
    write_kitti_flow,
)

# --------------------------------------------------------------------------------------------
# .flo


def _hand_made_flo() -> tuple[bytes, np.ndarray, np.ndarray]:
    """A 3-wide, 2-high .flo built byte by byte: tag, int32 width, int32 height, then (u, v) per pixel, row-major.

    Pixel (row 0, col 2) has u = 1e10 (unknown) and pixel (row 1, col 0) has v = NaN (unknown).
    """
    values = [
        (0.5, -1.0),
        (2.0, 3.25),
        (1e10, 0.0),  # row 0
        (0.0, math.nan),
        (-7.5, 8.0),
        (100.0, -0.125),  # row 1
    ]
    data = b"PIEH" + struct.pack("<ii", 3, 2) + b"".join(struct.pack("<ff", u, v) for u, v in values)
    flow = np.array([[[0.5, -1.0], [2.0, 3.25], [0.0, 0.0]], [[0.0, 0.0], [-7.5, 8.0], [100.0, -0.125]]], np.float32)
    valid = np.array([[True, True, False], [False, True, True]])
    return data, flow, valid


def test_flo_tag_is_the_float_202021_25():
    assert struct.pack("<f", 202021.25) == b"PIEH"


def test_read_hand_made_flo(tmp_path):
    data, flow, valid = _hand_made_flo()
    p = tmp_path / "hand.flo"
    p.write_bytes(data)
    got, got_valid = read_flo(p)
    assert got.dtype == np.float32 and got.shape == (2, 3, 2)
    np.testing.assert_array_equal(got_valid, valid)
    np.testing.assert_array_equal(got, flow)  # unknown pixels read as 0
    assert got[0, 1].tolist() == [2.0, 3.25]  # row 0, column 1: u then v


def test_write_flo_is_byte_exact(tmp_path):
    data, flow, valid = _hand_made_flo()
    p = tmp_path / "out.flo"
    write_flo(p, flow, valid)
    written = p.read_bytes()
    assert len(written) == 12 + 3 * 2 * 8
    assert written[:12] == data[:12]
    # unknown pixels are written as 1e10 in both components
    expected = np.frombuffer(data, "<f4", offset=12).copy().reshape(2, 3, 2)
    expected[0, 2] = FLO_UNKNOWN
    expected[1, 0] = FLO_UNKNOWN
    np.testing.assert_array_equal(np.frombuffer(written, "<f4", offset=12).reshape(2, 3, 2), expected)


def test_flo_round_trip(tmp_path):
    rng = np.random.default_rng(0)
    flow = rng.normal(scale=30, size=(17, 23, 2))  # float64 in: written as float32
    valid = rng.random((17, 23)) > 0.1
    p = tmp_path / "rt.flo"
    write_flo(p, flow, valid)
    got, got_valid = read_flo(p)
    np.testing.assert_array_equal(got_valid, valid)
    np.testing.assert_array_equal(got[valid], flow.astype(np.float32)[valid])
    assert (got[~valid] == 0).all()
    # torch input, no mask; NaN pixels become unknown
    t = torch.from_numpy(flow.astype(np.float32))
    t[3, 4, 1] = float("nan")
    write_flo(p, t)
    got, got_valid = read_flo(p)
    assert not got_valid[3, 4] and got_valid.sum() == 17 * 23 - 1
    # read_flow / write_flow dispatch on the extension
    write_flow(tmp_path / "x.flo", flow, valid)
    np.testing.assert_array_equal(read_flow(tmp_path / "x.flo")[1], valid)


def _flo_error(tmp_path, data: bytes, match: str) -> None:
    p = tmp_path / "bad.flo"
    p.write_bytes(data)
    with pytest.raises(ValueError, match=match):
        read_flo(p)


def test_flo_read_errors(tmp_path):
    data, _, _ = _hand_made_flo()
    _flo_error(tmp_path, b"XXXX" + data[4:], r"not a Middlebury \.flo file: tag b'XXXX'.*expected b'PIEH'")
    _flo_error(tmp_path, b"HEIP" + data[4:], "byte-swapped")
    _flo_error(tmp_path, data[:10], r"truncated \.flo file: 10 bytes, the header alone needs 12")
    _flo_error(tmp_path, data[:-3], r"truncated .*3x2 \(needs 60 bytes\), the file has 57")
    _flo_error(tmp_path, data + b"\0\0\0\0", "4 unexpected trailing bytes")
    _flo_error(tmp_path, b"PIEH" + struct.pack("<ii", 0, 2), r"bad \.flo header: width 0, height 2")
    _flo_error(tmp_path, b"PIEH" + struct.pack("<ii", 3, -1), r"bad \.flo header: width 3, height -1")


def test_flo_write_errors(tmp_path):
    p = tmp_path / "w.flo"
    with pytest.raises(ValueError, match=r"shape \(H, W, 2\).*\(2, 4, 5\).*permute"):
        write_flo(p, np.zeros((2, 4, 5)))
    with pytest.raises(ValueError, match=r"shape \(H, W, 2\).*\(4, 5\)"):
        write_flo(p, np.zeros((4, 5)))
    with pytest.raises(TypeError, match="real numbers, got dtype bool"):
        write_flo(p, np.zeros((4, 5, 2), bool))
    with pytest.raises(ValueError, match=r"valid must have shape \(H, W\) = \(4, 5\), got \(5, 4\)"):
        write_flo(p, np.zeros((4, 5, 2)), np.ones((5, 4), bool))
    big = np.zeros((4, 5, 2))
    big[1, 2, 0] = 2e9
    with pytest.raises(ValueError, match=r"beyond ±1e\+09 \(first at row 1, column 2"):
        write_flo(p, big)
    mask = np.ones((4, 5), bool)
    mask[1, 2] = False
    write_flo(p, big, mask)  # fine when that pixel is marked invalid
    assert not read_flo(p)[1][1, 2]


# --------------------------------------------------------------------------------------------
# KITTI PNG


@pytest.fixture
def cv2():
    """OpenCV (the ``flow`` extra); KITTI tests skip without it, the .flo tests above still run."""
    return pytest.importorskip("cv2")


def test_kitti_round_trip_exact_on_the_1_64_grid(tmp_path, cv2):
    rng = np.random.default_rng(1)
    flow = np.round(rng.uniform(-300, 300, size=(9, 13, 2)) * 64) / 64  # representable exactly
    flow[0, 0] = [KITTI_RANGE[0], KITTI_RANGE[1]]  # both ends of the range
    valid = rng.random((9, 13)) > 0.3
    valid[0, 0] = True
    p = tmp_path / "f.png"
    write_kitti_flow(p, flow, valid)
    got, got_valid = read_kitti_flow(p)
    assert got.dtype == np.float32 and got.shape == (9, 13, 2)
    np.testing.assert_array_equal(got_valid, valid)
    np.testing.assert_array_equal(got[valid], flow[valid].astype(np.float32))
    assert (got[~valid] == 0).all()  # invalid pixels read as zero flow
    np.testing.assert_array_equal(read_flow(p)[0], got)


def test_kitti_rounds_to_1_64(tmp_path, cv2):
    rng = np.random.default_rng(2)
    flow = torch.from_numpy(rng.uniform(-50, 50, size=(5, 6, 2)).astype(np.float32))
    p = tmp_path / "r.png"
    write_flow(p, flow)  # torch input, all valid (finite)
    got, valid = read_kitti_flow(p)
    assert valid.all()
    assert np.abs(got - flow.numpy()).max() <= 1 / 128 + 1e-6


def test_kitti_channel_layout(tmp_path, cv2):
    """Written as 16-bit PNG with R = u·64 + 2^15, G = v·64 + 2^15, B = valid (OpenCV stores BGR)."""
    flow = np.array([[[1.0, -2.0], [0.5, 0.0]]])  # 1 row, 2 columns
    valid = np.array([[True, False]])
    p = tmp_path / "l.png"
    write_kitti_flow(p, flow, valid)
    raw = cv2.imread(str(p), cv2.IMREAD_UNCHANGED)
    assert raw.dtype == np.uint16 and raw.shape == (1, 2, 3)
    b, g, r = raw[0, 0]
    assert (r, g, b) == (32768 + 64, 32768 - 128, 1)
    assert raw[0, 1, 0] == 0  # invalid: B = 0 (R, G hold zero flow)
    # a hand-made PNG read back: any non-zero B is valid
    hand = np.zeros((2, 1, 3), np.uint16)
    hand[0, 0] = [7, 32768 + 32, 32768 - 64 * 3]  # B, G, R -> u = -3, v = 0.5, valid
    hand[1, 0] = [0, 40000, 40000]  # invalid
    cv2.imwrite(str(tmp_path / "h.png"), hand)
    got, got_valid = read_kitti_flow(tmp_path / "h.png")
    assert got[0, 0].tolist() == [-3.0, 0.5] and got_valid.tolist() == [[True], [False]]
    assert got[1, 0].tolist() == [0.0, 0.0]


def test_kitti_errors(tmp_path, cv2):
    p = tmp_path / "e.png"
    with pytest.raises(ValueError, match=r"outside KITTI's range \[-512.0, 511.98"):
        write_kitti_flow(p, np.full((2, 2, 2), 600.0))
    write_kitti_flow(p, np.full((2, 2, 2), 600.0), np.zeros((2, 2), bool))  # fine: nothing valid
    nan = np.zeros((2, 2, 2))
    nan[1, 1, 0] = np.nan
    with pytest.raises(ValueError, match=r"not finite at valid pixel \(row 1, column 1\)"):
        write_kitti_flow(p, nan, np.ones((2, 2), bool))
    write_kitti_flow(p, nan)  # default valid = finite pixels
    assert read_kitti_flow(p)[1].tolist() == [[True, True], [True, False]]
    cv2.imwrite(str(tmp_path / "8bit.png"), np.zeros((3, 3, 3), np.uint8))
    with pytest.raises(ValueError, match=r"expected 16-bit 3-channel.*got uint8 with 3 channel"):
        read_kitti_flow(tmp_path / "8bit.png")
    cv2.imwrite(str(tmp_path / "grey16.png"), np.zeros((3, 3), np.uint16))
    with pytest.raises(ValueError, match=r"got uint16 with 1 channel"):
        read_kitti_flow(tmp_path / "grey16.png")
    (tmp_path / "junk.png").write_bytes(b"not a png")
    with pytest.raises(ValueError, match="not a readable image"):
        read_kitti_flow(tmp_path / "junk.png")
    with pytest.raises(FileNotFoundError):
        read_kitti_flow(tmp_path / "missing.png")
    with pytest.raises(ValueError, match=r"unknown flow file extension '\.pfm'"):
        read_flow(tmp_path / "a.pfm")
    with pytest.raises(ValueError, match=r"unknown flow file extension"):
        write_flow(tmp_path / "a.npy", np.zeros((1, 1, 2)))
