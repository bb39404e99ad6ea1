import pytest
import torch


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)
    yield


# Shared tiny sizes (tests build variants with ``TINY_ENCODER.replace(...)``); registered ``test-*``
# presets (``perceiver_io.list_models()``) cover every model family in tests/test_models.py.
from perceiver_io.encoder import tiny_encoder  # noqa: E402

TINY_ENCODER = tiny_encoder(num_blocks=2)


def tiny_multimodal(**overrides):
    """A small multimodal autoencoder (2×8×8 video, 64 audio samples in patches of 4, 5 classes) with
    its near-zero output projections perturbed so that every output is informative; eval mode."""
    import perceiver_io

    torch.manual_seed(0)
    model = perceiver_io.create_model(
        "multimodal-perceiver",
        video_shape=(2, 8, 8),
        image_max_resolution=(2, 2, 2),
        num_audio_samples=64,
        samples_per_patch=4,
        audio_num_bands=8,
        image_num_bands=4,
        num_classes=5,
        label_query_channels=16,
        encoder=TINY_ENCODER,
        decoder={"num_query_channels": 29, "num_output_channels": 12},
        **overrides,
    ).eval()
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.05)
    return model
