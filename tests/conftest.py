import pytest
import torch


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)
    yield


# Shared tiny sizes (tests build variants with ``TINY_ENCODER.replace(...)``); registered ``test-*``
# presets (``perceiver_io.list_models()``) cover every model family in tests/test_models.py.
from perceiver_io.encoder import EncoderConfig  # noqa: E402

TINY_ENCODER = EncoderConfig(
    num_latents=8,
    num_latent_channels=32,
    num_blocks=2,
    num_self_attends_per_block=2,
    num_cross_attention_heads=1,
    num_self_attention_heads=4,
)
