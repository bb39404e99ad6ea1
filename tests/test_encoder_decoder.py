import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from perceiver_io import (
    DecoderConfig,
    EncoderConfig,
    PerceiverDecoder,
    PerceiverEncoder,
    PerceiverIO,
    PerceiverIOConfig,
    QueryConfig,
)


def tiny_encoder(**kw) -> EncoderConfig:
    base = dict(
        num_latents=8,
        num_latent_channels=16,
        num_blocks=2,
        num_self_attends_per_block=2,
        num_cross_attention_heads=1,
        num_self_attention_heads=2,
    )
    return EncoderConfig(**{**base, **kw})


def test_encoder_shapes():
    enc = PerceiverEncoder(tiny_encoder(), num_input_channels=5)
    assert enc(torch.randn(3, 40, 5)).shape == (3, 8, 16)


def test_weight_sharing_parameter_count():
    """48 layers from 6 weight sets: parameters do not depend on num_blocks."""
    one = PerceiverEncoder(tiny_encoder(num_blocks=1, num_self_attends_per_block=6), 5)
    eight = PerceiverEncoder(tiny_encoder(num_blocks=8, num_self_attends_per_block=6), 5)
    count = lambda m: sum(p.numel() for p in m.parameters())  # noqa: E731
    assert count(one) == count(eight)
    layer = sum(p.numel() for p in one.self_attention[0].parameters())
    cross = sum(p.numel() for p in one.cross_attention.parameters())
    assert count(one) == 8 * 16 + cross + 6 * layer


def test_original_perceiver_repeated_cross_attention():
    enc = PerceiverEncoder(tiny_encoder(num_blocks=4, cross_attend_every_block=True), 5)
    plain = PerceiverEncoder(tiny_encoder(num_blocks=4), 5)
    cross = sum(p.numel() for p in plain.cross_attention.parameters())
    # one unshared first cross-attention + one shared by blocks 2..4
    assert sum(p.numel() for p in enc.parameters()) == sum(p.numel() for p in plain.parameters()) + cross
    x = torch.randn(2, 30, 5, requires_grad=True)
    enc(x).sum().backward()
    assert all(p.grad is not None for p in enc.cross_attention_shared.parameters())


def test_masked_inputs_cannot_change_latents():
    enc = PerceiverEncoder(tiny_encoder(), 5).eval()
    x = torch.randn(2, 30, 5)
    mask = torch.rand(2, 30) > 0.5
    x2 = x.clone()
    x2[~mask] = torch.randn(int((~mask).sum()), 5) * 100
    torch.testing.assert_close(enc(x, mask), enc(x2, mask))
    # ... and masking equals dropping the padding
    torch.testing.assert_close(enc(x, mask)[0:1], enc(x[0:1, mask[0]]), atol=1e-5, rtol=0)


def test_segment_means_are_masked_means_of_contiguous_segments():
    from perceiver_io.encoder import segment_means

    x = torch.randn(2, 12, 3)
    mask = torch.ones(2, 12, dtype=torch.bool)
    mask[1, 4:6] = False  # all of segment 2 of row 1, none of its neighbours
    mask[1, 7] = False
    out = segment_means(x, mask, 6)  # segments of 2 rows
    expected = x.reshape(2, 6, 2, 3).mean(2)
    expected[1, 2] = 0.0
    expected[1, 3] = x[1, 6]
    torch.testing.assert_close(out, expected)
    torch.testing.assert_close(segment_means(x, None, 6), x.reshape(2, 6, 2, 3).mean(2))
    assert segment_means(x, None, 24).shape == (2, 24, 3)  # fewer rows than segments: rows shared


def test_latent_input_pooling_starts_latents_from_their_own_segment():
    cfg = tiny_encoder(latent_input_pooling=True)
    enc = PerceiverEncoder(cfg, 5).eval()
    assert sum(p.numel() for p in enc.parameters()) == sum(
        p.numel() for p in PerceiverEncoder(tiny_encoder(), 5).parameters()
    ) + (5 * 16 + 16)
    x = torch.randn(2, 32, 5)
    seen = []
    enc.cross_attention.register_forward_hook(lambda m, args, out: seen.append(args[0]))
    enc(x)
    start = enc.latents.embeddings + enc.input_pooling(x.reshape(2, 8, 4, 5).mean(2))
    torch.testing.assert_close(seen[0], start)
    # padding still cannot reach the latents, and masking still equals dropping it
    mask = torch.rand(2, 32) > 0.4
    x2 = x.clone()
    x2[~mask] = 1e6
    torch.testing.assert_close(enc(x, mask), enc(x2, mask))


def test_permutation_invariance_without_positions():
    enc = PerceiverEncoder(tiny_encoder(), 5).eval()
    x = torch.randn(2, 30, 5)
    perm = torch.randperm(30)
    torch.testing.assert_close(enc(x), enc(x[:, perm]), atol=1e-5, rtol=0)


def test_decoder_chunked_equals_unchunked():
    dec = PerceiverDecoder(DecoderConfig(num_query_channels=6, num_output_channels=3, num_heads=2), 16).eval()
    latents, queries = torch.randn(2, 8, 16), torch.randn(2, 101, 6)
    full = dec(latents, queries)
    assert full.shape == (2, 101, 3)
    for chunk in (1, 7, 50, 101, 500):
        torch.testing.assert_close(dec(latents, queries, chunk_size=chunk), full, atol=1e-6, rtol=0)
    with torch.no_grad():
        torch.testing.assert_close(dec(latents, queries, chunk_size=9), full, atol=1e-6, rtol=0)


def test_decoder_attention_init_zeros_starts_each_row_from_its_query():
    """``attention_init="zeros"``: at initialisation the latents do not move the outputs (each row is its
    query + MLP); one optimiser step later they do (the attention output projection trains)."""
    torch.manual_seed(0)
    cfg = DecoderConfig(num_query_channels=6, num_output_channels=3, use_query_residual=True, attention_init="zeros")
    dec = PerceiverDecoder(cfg, 16)
    queries = torch.randn(2, 10, 6)
    a, b = dec(torch.randn(2, 8, 16), queries), dec(torch.randn(2, 8, 16), queries)
    torch.testing.assert_close(a, b, atol=0, rtol=0)
    default = PerceiverDecoder(cfg.replace(attention_init="default"), 16)
    assert not torch.equal(default(torch.randn(2, 8, 16), queries), default(torch.randn(2, 8, 16), queries))
    opt = torch.optim.SGD(dec.parameters(), lr=0.1)
    dec(torch.randn(2, 8, 16), queries).square().sum().backward()
    opt.step()
    assert dec.cross_attention.attention.o_proj.weight.abs().sum() > 0
    with torch.no_grad():
        assert not torch.equal(dec(torch.randn(2, 8, 16), queries), dec(torch.randn(2, 8, 16), queries))


def test_query_mask_gives_zero_rows():
    dec = PerceiverDecoder(DecoderConfig(num_query_channels=6, num_output_channels=3), 16)
    qmask = torch.ones(2, 10, dtype=torch.bool)
    qmask[0, 3] = False
    qmask[1] = False
    out = dec(torch.randn(2, 8, 16), torch.randn(2, 10, 6), query_mask=qmask, chunk_size=4)
    assert torch.equal(out[0, 3], torch.zeros(3)) and torch.equal(out[1], torch.zeros(10, 3))
    assert (out[0, :3] != 0).any()


def test_bad_inputs_raise_clear_errors():
    enc = PerceiverEncoder(tiny_encoder(), 5)
    with pytest.raises(ValueError, match=r"inputs must have 5 channels.*\(2, 30, 4\)"):
        enc(torch.randn(2, 30, 4))
    with pytest.raises(ValueError, match=r"inputs must have shape \(B, M, 5\), got \(30, 5\)"):
        enc(torch.randn(30, 5))
    with pytest.raises(TypeError, match="input_mask must be a bool tensor"):
        enc(torch.randn(2, 30, 5), torch.ones(2, 30))
    with pytest.raises(ValueError, match=r"input_mask must have shape \(2, 30\), got \(2, 29\)"):
        enc(torch.randn(2, 30, 5), torch.ones(2, 29, dtype=torch.bool))
    dec = PerceiverDecoder(DecoderConfig(num_query_channels=6), 16)
    with pytest.raises(ValueError, match="chunk_size must be a positive integer"):
        dec(torch.randn(2, 8, 16), torch.randn(2, 4, 6), chunk_size=0)
    with pytest.raises(ValueError, match=r"queries must have 6 channels"):
        dec(torch.randn(2, 8, 16), torch.randn(2, 4, 7))


def _model(kind="learned", **kw) -> PerceiverIO:
    queries = {
        "learned": QueryConfig(kind="learned", num_queries=3),
        "fourier": QueryConfig(kind="fourier", index_dims=(4, 6), num_bands=3),
        "inputs": QueryConfig(kind="inputs"),
        "given": QueryConfig(kind="given"),
    }[kind]
    width = queries.num_channels(5, 12)
    return PerceiverIO(
        PerceiverIOConfig(
            num_input_channels=5,
            encoder=tiny_encoder(**kw),
            decoder=DecoderConfig(num_query_channels=width, num_output_channels=4, num_heads=1),
            queries=queries,
        )
    )


@pytest.mark.parametrize("kind", ["learned", "fourier", "inputs"])
def test_model_stages_compose(kind):
    model = _model(kind).eval()
    x = torch.randn(2, 24, 5)
    out = model(x)
    latents = model.encode(x)
    torch.testing.assert_close(out.latents, latents)
    direct = model.decode(latents, inputs=x).outputs
    torch.testing.assert_close(out.outputs, direct)
    chunked = model.decode(latents, inputs=x, chunk_size=5).outputs
    torch.testing.assert_close(chunked, direct, atol=1e-5, rtol=0)
    num_outputs = {"learned": 3, "fourier": 24, "inputs": 24}[kind]
    assert out.outputs.shape == (2, num_outputs, 4)


def test_subsampled_decoding_matches_full_for_inputs_queries():
    model = _model("inputs").eval()
    x = torch.randn(2, 24, 5)
    idx = torch.tensor([3, 0, 17])
    torch.testing.assert_close(model(x, query_indices=idx).outputs, model(x).outputs[:, idx])


def test_given_queries():
    model = _model("given")
    with pytest.raises(ValueError, match="pass queries"):
        model(torch.randn(2, 24, 5))
    assert model(torch.randn(2, 24, 5), queries=torch.randn(2, 7, 12)).outputs.shape == (2, 7, 4)


@pytest.mark.parametrize("checkpointing", [False, True])
def test_every_parameter_gets_a_gradient(checkpointing):
    model = _model("learned", activation_checkpointing=checkpointing, cross_attend_every_block=True)
    model(torch.randn(2, 24, 5)).outputs.square().sum().backward()
    missing = [n for n, p in model.named_parameters() if p.grad is None or not torch.isfinite(p.grad).all()]
    assert not missing


def test_activation_checkpointing_same_gradients():
    torch.manual_seed(1)
    a = _model("learned")
    b = _model("learned", activation_checkpointing=True)
    b.load_state_dict(a.state_dict())
    x = torch.randn(2, 24, 5)
    for m in (a, b):
        m(x).outputs.sum().backward()
    for (n, pa), pb in zip(a.named_parameters(), b.parameters(), strict=True):
        torch.testing.assert_close(pa.grad, pb.grad, atol=1e-6, rtol=1e-5, msg=n)


def test_bf16_autocast_finite():
    model = _model("fourier")
    x = torch.randn(2, 24, 5)
    ref = model(x).outputs
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = model(x).outputs
    out.float().sum().backward()
    assert torch.isfinite(out).all()
    assert all(torch.isfinite(p.grad).all() for p in model.parameters())
    assert ((out.float() - ref).norm() / ref.norm()) < 5e-2


@settings(max_examples=15, deadline=None)
@given(
    num_latents=st.integers(1, 6),
    heads=st.sampled_from([1, 2]),
    per_head=st.integers(1, 4),
    blocks=st.integers(1, 3),
    layers=st.integers(1, 2),
    m=st.integers(1, 20),
    o=st.integers(1, 9),
    c=st.integers(1, 6),
    widening=st.integers(1, 3),
    chunk=st.one_of(st.none(), st.integers(1, 10)),
)
def test_property_random_configs(num_latents, heads, per_head, blocks, layers, m, o, c, widening, chunk):
    d = heads * per_head
    model = PerceiverIO(
        PerceiverIOConfig(
            num_input_channels=c,
            encoder=EncoderConfig(
                num_latents=num_latents,
                num_latent_channels=d,
                num_blocks=blocks,
                num_self_attends_per_block=layers,
                num_cross_attention_heads=1,
                num_self_attention_heads=heads,
                self_attention_widening_factor=widening,
            ),
            decoder=DecoderConfig(num_query_channels=d, num_output_channels=3),
            queries=QueryConfig(kind="learned", num_queries=o),
        )
    ).eval()
    x = torch.randn(2, m, c)
    mask = torch.rand(2, m) > 0.3
    out = model(x, input_mask=mask, chunk_size=chunk)
    assert out.outputs.shape == (2, o, 3) and out.latents.shape == (2, num_latents, d)
    assert torch.isfinite(out.outputs).all()
    torch.testing.assert_close(out.outputs, model(x, input_mask=mask).outputs, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("chunk_size", [None, 4, 100])
def test_row_fn_applied_per_chunk_equals_applied_after(chunk_size):
    """``row_fn`` (e.g. an output projection) on each chunk gives what it gives on all rows."""
    dec = PerceiverDecoder(DecoderConfig(num_query_channels=6, num_output_channels=5), 16).eval()
    proj = torch.nn.Linear(5, 2)
    latents, queries = torch.randn(2, 8, 16), torch.randn(2, 11, 6)
    with torch.no_grad():
        expected = proj(dec(latents, queries))
        got = dec(latents, queries, chunk_size=chunk_size, row_fn=proj)
    assert got.shape == (2, 11, 2)
    torch.testing.assert_close(got, expected, rtol=1e-6, atol=1e-6)
