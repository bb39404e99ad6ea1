"""torch.compile runs the encoder and decoder as single graphs (no graph breaks)."""

import pytest
import torch

import perceiver_io


@pytest.fixture(autouse=True)
def _reset_dynamo():
    torch._dynamo.reset()
    yield
    torch._dynamo.reset()


def test_compile_fullgraph_encoder_decoder():
    model = perceiver_io.create_model(
        "perceiver-io-tiny",
        queries={"kind": "fourier", "index_dims": (6, 5), "num_bands": 4},
        decoder={"num_query_channels": 18},
    ).eval()
    x = torch.randn(2, 40, 32)
    mask = torch.rand(2, 40) > 0.2
    queries = model.head.query_builder(2)
    encoder = torch.compile(model.encoder, fullgraph=True, backend="aot_eager")
    decoder = torch.compile(model.decoder, fullgraph=True, backend="aot_eager")
    with torch.no_grad():
        latents = encoder(x, mask)
        torch.testing.assert_close(latents, model.encoder(x, mask), atol=1e-5, rtol=1e-5)
        out = decoder(latents, queries, chunk_size=7)
        torch.testing.assert_close(out, model.decoder(latents, queries, chunk_size=7), atol=1e-5, rtol=1e-5)


def test_compile_inductor_training_step():
    model = perceiver_io.create_model("perceiver-io-tiny")
    compiled = torch.compile(model.encoder, fullgraph=True)
    x = torch.randn(2, 40, 32)
    compiled(x).sum().backward()
    assert all(p.grad is not None for p in model.encoder.parameters())
