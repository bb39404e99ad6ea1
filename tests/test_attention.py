import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from perceiver_io.layers.attention import MultiHeadAttention, attend, attend_reference, causal_mask


def _qkv(b=2, h=3, o=5, m=7, d=4, dtype=torch.float64):
    return (
        torch.randn(b, h, o, d, dtype=dtype),
        torch.randn(b, h, m, d, dtype=dtype),
        torch.randn(b, h, m, d, dtype=dtype),
    )


def test_sdpa_matches_reference_float64():
    q, k, v = _qkv()
    mask = torch.rand(2, 7) > 0.3
    torch.testing.assert_close(attend(q, k, v), attend_reference(q, k, v), rtol=0, atol=1e-12)
    torch.testing.assert_close(
        attend(q, k, v, kv_mask=mask), attend_reference(q, k, v, kv_mask=mask), rtol=0, atol=1e-12
    )
    torch.testing.assert_close(attend(q, k, v, causal=True), attend_reference(q, k, v, causal=True), rtol=0, atol=1e-12)


def test_reference_is_the_official_formula():
    q, k, v = _qkv(b=1, h=1, o=2, m=3, d=2)
    expected = torch.softmax(q[0, 0] @ k[0, 0].T / 2**0.5, dim=-1) @ v[0, 0]
    torch.testing.assert_close(attend_reference(q, k, v)[0, 0], expected)


def test_fully_masked_row_is_zero_not_nan():
    q, k, v = _qkv(dtype=torch.float32)
    q.requires_grad_(True)
    mask = torch.ones(2, 7, dtype=torch.bool)
    mask[1] = False
    out = attend(q, k, v, kv_mask=mask)
    assert torch.equal(out[1], torch.zeros_like(out[1]))
    assert torch.isfinite(out).all()
    out.sum().backward()
    assert torch.isfinite(q.grad).all()
    assert torch.equal(attend_reference(q, k, v, kv_mask=mask)[1], torch.zeros_like(out[1]))


def test_masked_keys_cannot_change_output():
    q, k, v = _qkv()
    mask = torch.rand(2, 7) > 0.5
    k2, v2 = k.clone(), v.clone()
    k2[~mask[:, None, :, None].expand_as(k)] = 1e3
    v2[~mask[:, None, :, None].expand_as(v)] = -1e3
    torch.testing.assert_close(attend(q, k, v, kv_mask=mask), attend(q, k2, v2, kv_mask=mask))


def test_causal_mask_is_bottom_right_aligned():
    m = causal_mask(2, 4)
    assert m.tolist() == [[True, True, True, False], [True, True, True, True]]


def test_causal_attention_ignores_future():
    q, k, v = _qkv(o=7, m=7)
    out = attend(q, k, v, causal=True)
    k2, v2 = k.clone(), v.clone()
    k2[:, :, 4:] += 5.0
    v2[:, :, 4:] -= 5.0
    out2 = attend(q, k2, v2, causal=True)
    torch.testing.assert_close(out[:, :, :4], out2[:, :, :4])


def test_module_widths_follow_official_defaults():
    attn = MultiHeadAttention(num_heads=2, num_q_input_channels=8, num_kv_input_channels=6)
    assert attn.q_proj.out_features == 8 and attn.k_proj.in_features == 6
    assert attn.v_proj.out_features == 8 and attn.o_proj.out_features == 8
    attn = MultiHeadAttention(4, 8, 6, num_qk_channels=12, num_v_channels=16, num_output_channels=5)
    assert (attn.k_proj.out_features, attn.v_proj.out_features, attn.o_proj.out_features) == (12, 16, 5)
    out = attn(torch.randn(2, 3, 8), torch.randn(2, 9, 6))
    assert out.shape == (2, 3, 5)


def test_heads_must_divide_channels():
    with pytest.raises(ValueError, match="num_qk_channels \\(10\\) must be divisible by num_heads \\(4\\)"):
        MultiHeadAttention(4, 10, 10)


def test_module_sdpa_equals_reference_path_float64():
    attn = MultiHeadAttention(2, 8, 6, num_qk_channels=4).double()
    xq, xkv = torch.randn(3, 5, 8, dtype=torch.float64), torch.randn(3, 11, 6, dtype=torch.float64)
    mask = torch.rand(3, 11) > 0.4
    fast = attn(xq, xkv, kv_mask=mask)
    attn.use_reference = True
    torch.testing.assert_close(fast, attn(xq, xkv, kv_mask=mask), rtol=0, atol=1e-12)


@pytest.mark.parametrize("dtype", [torch.bfloat16])
def test_autocast_finite_and_close(dtype):
    attn = MultiHeadAttention(4, 64, 32)
    xq, xkv = torch.randn(2, 16, 64), torch.randn(2, 300, 32)
    ref = attn(xq, xkv)
    with torch.autocast("cpu", dtype=dtype):
        out = attn(xq, xkv)
        big = attn(xq * 100, xkv * 100)  # very sharp softmax: must stay finite
        attn.use_reference = True
        out_ref_path = attn(xq * 100, xkv * 100)
    assert torch.isfinite(big).all() and torch.isfinite(out_ref_path).all()
    rel = (out.float() - ref).norm() / ref.norm()
    assert rel < 2e-2, rel


def test_attention_dropout_only_in_training():
    attn = MultiHeadAttention(1, 8, 8, attention_dropout=0.5)
    x = torch.randn(1, 6, 8)
    attn.eval()
    torch.testing.assert_close(attn(x, x), attn(x, x))
    attn.train()
    assert not torch.allclose(attn(x, x), attn(x, x))


@settings(max_examples=25, deadline=None)
@given(
    b=st.integers(1, 3),
    h=st.integers(1, 3),
    o=st.integers(1, 6),
    m=st.integers(1, 9),
    d=st.integers(1, 5),
    causal=st.booleans(),
    use_mask=st.booleans(),
    seed=st.integers(0, 2**16),
)
def test_property_sdpa_equals_reference(b, h, o, m, d, causal, use_mask, seed):
    g = torch.Generator().manual_seed(seed)
    q = torch.randn(b, h, o, d, generator=g, dtype=torch.float64)
    k = torch.randn(b, h, m, d, generator=g, dtype=torch.float64)
    v = torch.randn(b, h, m, d, generator=g, dtype=torch.float64)
    mask = (torch.rand(b, m, generator=g) > 0.5) if use_mask else None
    out = attend(q, k, v, kv_mask=mask, causal=causal)
    assert torch.isfinite(out).all()
    torch.testing.assert_close(out, attend_reference(q, k, v, kv_mask=mask, causal=causal), rtol=0, atol=1e-10)


@pytest.mark.parametrize("kv_mask", [False, True])
def test_different_qk_and_v_head_widths_match_reference(kv_mask):
    """The language model's heads have qk width 32 and v width 160: a separate CPU path."""
    q, k = torch.randn(2, 3, 5, 4, dtype=torch.float64), torch.randn(2, 3, 7, 4, dtype=torch.float64)
    v = torch.randn(2, 3, 7, 10, dtype=torch.float64)
    mask = (torch.rand(2, 7) > 0.4) if kv_mask else None
    out = attend(q, k, v, kv_mask=mask)
    assert out.shape == (2, 3, 5, 10)
    torch.testing.assert_close(out, attend_reference(q, k, v, kv_mask=mask), rtol=0, atol=1e-12)


# (O, M, Cq, Ckv, qk, v, out) -> the association MultiHeadAttention.plan must pick for one head.
FOLD_CASES = [
    ((8, 200, 64, 12, 24, 24, 64), ("into_q", "after")),  # encoder: few latents, many inputs
    ((200, 8, 12, 64, 48, 48, 12), ("into_k", "into_v")),  # decoder: many queries, few latents
    ((8, 200, 64, 12, 24, 40, 16), ("into_q", "after")),
    ((20, 20, 16, 16, 16, 16, 16), ("standard", "standard")),  # self-attention: nothing to gain
]


@pytest.mark.parametrize("sizes,expected", FOLD_CASES)
def test_folded_single_head_projections_equal_reference_float64(sizes, expected):
    """Folding Wq/Wk/Wv/Wo into the small side gives the same outputs and gradients (float64)."""
    o, m, cq, ckv, qk, v, out = sizes
    attn = MultiHeadAttention(1, cq, ckv, qk, v, out).double()
    for p in attn.parameters():  # non-zero biases: they are what the folding must get right
        torch.nn.init.normal_(p, std=0.3)
    assert attn.plan(o, m) == expected
    xq = torch.randn(2, o, cq, dtype=torch.float64, requires_grad=True)
    xkv = torch.randn(2, m, ckv, dtype=torch.float64, requires_grad=True)
    leaves = [xq, xkv, *attn.parameters()]

    def run(reference: bool):
        attn.use_reference = reference
        y = attn(xq, xkv)
        return y, torch.autograd.grad(y.square().sum(), leaves)

    y, grads = run(False)
    y_ref, grads_ref = run(True)
    torch.testing.assert_close(y, y_ref, rtol=0, atol=1e-10)
    for g, g_ref in zip(grads, grads_ref, strict=True):
        torch.testing.assert_close(g, g_ref, rtol=1e-9, atol=1e-9)


def test_folding_switch_single_head_only_and_masked_inputs_match_reference():
    attn = MultiHeadAttention(1, 64, 12, 24).double()
    assert attn.plan(8, 200) != ("standard", "standard")
    xq, xkv = torch.randn(2, 8, 64, dtype=torch.float64), torch.randn(2, 200, 12, dtype=torch.float64)
    mask = torch.rand(2, 200) > 0.5
    masked = attn(xq, xkv, kv_mask=mask)  # masks take the standard path
    attn.use_reference = True
    torch.testing.assert_close(masked, attn(xq, xkv, kv_mask=mask), rtol=0, atol=1e-12)
    attn.absorb_projections = False
    assert attn.plan(8, 200) == ("standard", "standard")
    assert MultiHeadAttention(2, 64, 12, 24).plan(8, 200) == ("standard", "standard")  # one head only


def test_folded_projections_under_bf16_autocast_stay_close():
    attn = MultiHeadAttention(1, 12, 64, 48, 48, 12)  # decoder-like: folds into the keys (bias path)
    xq, xkv = torch.randn(2, 300, 12), torch.randn(2, 16, 64)
    ref = attn(xq, xkv)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = attn(xq, xkv)
    assert (out.float() - ref).norm() / ref.norm() < 2e-2
