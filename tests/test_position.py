import math

import pytest
import torch

from perceiver_io.layers.position import (
    FourierPositionEncoding,
    RotaryPositionEmbedding,
    TrainablePositionEncoding,
    fourier_features,
    grid_positions,
    index_positions,
    num_fourier_channels,
    sinusoid_codes,
)
from perceiver_io.queries import FourierQueries


def test_grid_positions_linspace_ij():
    pos = grid_positions((2, 3))
    expected = torch.tensor([[-1, -1], [-1, 0], [-1, 1], [1, -1], [1, 0], [1, 1]], dtype=torch.float32)
    torch.testing.assert_close(pos, expected)


def test_fourier_features_by_hand():
    # grid (2, 3), K = 2 bands, max_resolution (2, 3): bands axis0 = [1, 1], axis1 = [1, 1.5]
    enc = FourierPositionEncoding((2, 3), num_bands=2)
    feats = enc(batch_size=1)[0]
    assert feats.shape == (6, num_fourier_channels(2, 2)) == (6, 10)
    # point (0, 2): pos (-1, 1); axis-major products [-1, -1, 1, 1.5]
    s, c = math.sin, math.cos
    p = math.pi
    expected = [-1, 1, s(-p), s(-p), s(p), s(1.5 * p), c(-p), c(-p), c(p), c(1.5 * p)]
    torch.testing.assert_close(feats[2], torch.tensor(expected, dtype=torch.float32), atol=1e-6, rtol=0)


def test_fourier_options_and_imagenet_width():
    assert FourierPositionEncoding((224, 224), 64).num_channels == 258
    assert FourierPositionEncoding((16, 56, 56), 32).num_channels == 195
    assert FourierPositionEncoding((30720,), 192).num_channels == 385
    pos = grid_positions((4, 5))
    assert fourier_features(pos, 3, (4, 5), concat_pos=False).shape == (20, 12)
    sine = fourier_features(pos, 3, (4, 5), sine_only=True)
    assert sine.shape == (20, 2 + 6)
    torch.testing.assert_close(sine, fourier_features(pos, 3, (4, 5))[:, :8])


def test_subsampled_positions_use_official_formula():
    idx = torch.tensor([0, 5, 7])
    pos = index_positions(idx, (2, 4))  # (0,0), (1,1), (1,3)
    expected = torch.tensor([[-1.0, -1.0], [0.0, -0.5], [0.0, 0.5]])  # -1 + 2 i / n
    torch.testing.assert_close(pos, expected)
    enc = FourierPositionEncoding((2, 4), 3)
    torch.testing.assert_close(enc(2, indices=idx)[1], fourier_features(expected, 3, (2, 4)))


def test_fourier_query_chunks_equal_full_grid():
    q = FourierQueries((3, 4, 5), num_bands=4)
    full = q(2)
    chunks = torch.cat([q.chunk(2, s, min(s + 7, 60)) for s in range(0, 60, 7)], dim=1)
    torch.testing.assert_close(chunks, full, atol=1e-6, rtol=0)


def test_fourier_cache_per_shape():
    enc = FourierPositionEncoding((8, 8), 4)
    a = enc(1)
    b = enc(3)
    assert a.data_ptr() == b.data_ptr()  # cached grid, broadcast over batch
    assert enc.grid((4, 4)).shape == (16, 18)


def test_trainable_position_encoding():
    enc = TrainablePositionEncoding(10, 6, init_scale=0.02)
    assert enc(3).shape == (3, 10, 6)
    assert enc(2, indices=torch.tensor([1, 4])).shape == (2, 2, 6)
    assert enc.embeddings.abs().max() <= 0.04 + 1e-6  # truncated at 2 std


def test_rotary_relative_property():
    rope = RotaryPositionEmbedding(num_rotated_channels=8)
    q = torch.randn(1, 2, 1, 12).expand(1, 2, 5, 12)
    k = torch.randn(1, 2, 1, 12).expand(1, 2, 5, 12)
    pos = torch.arange(5)
    qr, kr = rope(q, pos), rope(k, pos)
    # q_i · k_j depends only on i - j
    dots = torch.einsum("bhid,bhjd->bhij", qr, kr)
    torch.testing.assert_close(dots[..., 1, 0], dots[..., 4, 3], atol=1e-5, rtol=0)
    torch.testing.assert_close(qr.norm(dim=-1), q.norm(dim=-1), atol=1e-5, rtol=0)
    with pytest.raises(ValueError, match="even"):
        RotaryPositionEmbedding(3)


def test_index_positions_grid_formula_equals_linspace_grid():
    dims = (3, 1, 5)
    idx = torch.arange(15)
    torch.testing.assert_close(index_positions(idx, dims, formula="grid"), grid_positions(dims))
    with pytest.raises(ValueError, match="formula must be"):
        index_positions(idx, dims, formula="linspace")


@pytest.mark.parametrize(
    ("dims", "bands", "max_res", "concat_pos", "sine_only"),
    [((37, 49), 16, (368, 496), True, False), ((3, 4, 5), 3, (7, 8, 9), False, False), ((16,), 5, (30,), True, True)],
)
def test_grid_fourier_features_equal_the_pointwise_formula_bit_for_bit(dims, bands, max_res, concat_pos, sine_only):
    from perceiver_io.layers.position import grid_fourier_features

    expected = fourier_features(grid_positions(dims), bands, max_res, concat_pos, sine_only)
    assert torch.equal(grid_fourier_features(dims, bands, max_res, concat_pos, sine_only), expected)


def test_large_grids_are_not_cached():
    enc = FourierPositionEncoding((8, 8), 4)
    enc.CACHE_LIMIT = 8 * 8 * enc.num_channels - 1
    a, b = enc.grid(), enc.grid()
    assert not enc._cache and torch.equal(a, b)


def test_sinusoid_codes_by_hand():
    codes = sinusoid_codes(torch.tensor([0.0, 1.0, 2.5]), 5)
    assert codes.shape == (3, 5)
    # channel 2i: sin(p / 10000^(2i/C)), channel 2i+1: cos of the same; C = 5 drops the last cos
    for i, p in enumerate([0.0, 1.0, 2.5]):
        for j in range(5):
            f = 10000.0 ** (-(j - j % 2) / 5)
            expected = math.sin(p * f) if j % 2 == 0 else math.cos(p * f)
            assert abs(codes[i, j].item() - expected) < 1e-6
