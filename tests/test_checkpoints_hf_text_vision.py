"""Equivalence with ``transformers``: masked LM, text classifier and the three ImageNet classifiers.

Each test builds the ``transformers`` model from a small random config, perturbs every weight
(so that LayerNorms, biases and BatchNorm statistics are not at their trivial init), saves it
with ``save_pretrained``, loads the directory with ``perceiver_io.from_pretrained`` and compares
outputs on the same random inputs in fp32.
"""

from __future__ import annotations

import json

import pytest
import torch

import perceiver_io
from perceiver_io.adapters.image import ImageAdapterConfig
from perceiver_io.checkpoints.hf_text_vision import convert_image_conv, convert_masked_lm
from perceiver_io.checkpoints.transformers import HF_DEFAULTS
from perceiver_io.models import ImageClassifier, MaskedLanguageModel, TextClassifier

transformers = pytest.importorskip("transformers")

ATOL = 1e-4

SMALL = dict(
    num_latents=8,
    d_latents=32,
    num_blocks=2,
    num_self_attends_per_block=2,
    num_self_attention_heads=2,
    num_cross_attention_heads=2,
    self_attention_widening_factor=2,
    cross_attention_widening_factor=1,
)


def _hf_model(cls_name: str, **config):
    torch.manual_seed(0)
    model = getattr(transformers, cls_name)(transformers.PerceiverConfig(**config)).eval()
    with torch.no_grad():
        for name, tensor in model.state_dict().items():
            if not tensor.is_floating_point():
                continue
            if name.endswith("running_var"):
                tensor.copy_(torch.rand_like(tensor) + 0.5)
            else:
                tensor.add_(torch.randn_like(tensor) * 0.1)
    return model


def _save(model, path) -> None:
    model.save_pretrained(path)
    # transformers' save is our input: check the directory looks as expected
    assert json.loads((path / "config.json").read_text())["architectures"] == [type(model).__name__]


def _max_diff(a: torch.Tensor, b: torch.Tensor) -> float:
    assert a.shape == b.shape, (a.shape, b.shape)
    return (a - b).abs().max().item()


def test_masked_lm_matches_transformers(tmp_path):
    hf = _hf_model(
        "PerceiverForMaskedLM", d_model=16, max_position_embeddings=24, qk_channels=8, v_channels=32, **SMALL
    )
    _save(hf, tmp_path)
    ours = perceiver_io.from_pretrained(tmp_path)
    assert isinstance(ours, MaskedLanguageModel) and not ours.training
    assert ours.config.encoder.activation == "gelu"
    assert ours.num_parameters() == hf.num_parameters()

    torch.manual_seed(1)
    input_ids = torch.randint(0, 262, (2, 24))
    with torch.no_grad():
        expected = hf(inputs=input_ids).logits
        got = ours(input_ids).logits
    assert got.shape == (2, 24, 262)
    assert _max_diff(got, expected) <= ATOL

    # shorter input with padding: transformers always decodes max_position_embeddings rows
    ids = input_ids[:, :17].clone()
    mask = torch.ones_like(ids, dtype=torch.bool)
    mask[1, 11:] = False
    ids[1, 11:] = 0
    with torch.no_grad():
        expected = hf(inputs=ids, attention_mask=mask.long()).logits[:, :17]
        got = ours(ids, input_mask=mask).logits
    assert _max_diff(got, expected) <= ATOL


def test_text_classifier_matches_transformers(tmp_path):
    hf = _hf_model("PerceiverForSequenceClassification", d_model=16, max_position_embeddings=20, num_labels=3, **SMALL)
    _save(hf, tmp_path)
    ours = perceiver_io.from_pretrained(tmp_path)
    assert isinstance(ours, TextClassifier)
    torch.manual_seed(2)
    ids = torch.randint(0, 262, (3, 13))
    mask = torch.ones_like(ids, dtype=torch.bool)
    mask[0, 7:] = False
    with torch.no_grad():
        expected = hf(inputs=ids, attention_mask=mask.long()).logits
        got = ours(ids, input_mask=mask).logits
    assert got.shape == (3, 3)
    assert _max_diff(got, expected) <= ATOL


VISION = {
    "PerceiverForImageClassificationFourier": dict(image_size=12, num_labels=5),
    "PerceiverForImageClassificationLearned": dict(image_size=12, num_labels=5),
    "PerceiverForImageClassificationConvProcessing": dict(image_size=32, num_labels=5),
}


@pytest.mark.parametrize("arch", sorted(VISION))
def test_image_classifier_matches_transformers(tmp_path, arch):
    cfg = {**SMALL, "num_cross_attention_heads": 1, **VISION[arch]}
    hf = _hf_model(arch, **cfg)
    _save(hf, tmp_path)
    ours = perceiver_io.from_pretrained(tmp_path)
    assert isinstance(ours, ImageClassifier)
    assert ours.num_parameters() == hf.num_parameters()
    size = VISION[arch]["image_size"]
    torch.manual_seed(3)
    pixels = torch.randn(2, 3, size, size)
    with torch.no_grad():
        expected = hf(inputs=pixels).logits
        got = ours(pixels).logits
    assert got.shape == (2, 5)
    assert _max_diff(got, expected) <= ATOL


def test_conv_import_sets_transformers_padding(tmp_path):
    hf = _hf_model(
        "PerceiverForImageClassificationConvProcessing", **{**SMALL, "num_cross_attention_heads": 1}, image_size=224
    )
    ours = convert_image_conv(hf.config.to_dict(), hf.state_dict())
    image = ours.config.image
    assert (image.conv_padding, image.pool_padding) == ("symmetric", "valid")
    assert image.index_dims() == (55, 55)  # transformers' MaxPool2d(3, 2): 55 × 55 from 224
    assert ImageAdapterConfig(prep_type="conv", spatial_downsample=4).index_dims() == (56, 56)  # DeepMind SAME


def test_hf_defaults_fill_missing_config_fields():
    """A config.json may hold only non-default values; missing ones take PerceiverConfig's defaults."""
    hf = _hf_model("PerceiverForMaskedLM", d_model=16, max_position_embeddings=8, qk_channels=8, v_channels=32, **SMALL)
    full = hf.config.to_dict()
    sparse = {k: v for k, v in full.items() if k not in HF_DEFAULTS or v != HF_DEFAULTS[k]}
    assert "hidden_act" not in sparse and "vocab_size" not in sparse
    ours = convert_masked_lm(sparse, hf.state_dict())
    assert ours.config == convert_masked_lm(full, hf.state_dict()).config
    assert ours.config.encoder.activation == "gelu"


def test_errors_name_the_key(tmp_path):
    hf = _hf_model("PerceiverForMaskedLM", d_model=16, max_position_embeddings=8, qk_channels=8, v_channels=32, **SMALL)
    cfg = hf.config.to_dict()
    sd = dict(hf.state_dict())

    missing = dict(sd)
    del missing["perceiver.encoder.self_attends.1.mlp.dense2.bias"]
    with pytest.raises(KeyError, match=r"perceiver\.encoder\.self_attends\.1\.mlp\.dense2\.bias"):
        convert_masked_lm(cfg, missing)

    wrong = dict(sd)
    wrong["perceiver.embeddings.latents"] = torch.zeros(9, 32)
    with pytest.raises(ValueError, match=r"perceiver\.embeddings\.latents.*\(9, 32\)"):
        convert_masked_lm(cfg, wrong)

    extra = dict(sd)
    extra["perceiver.something_else"] = torch.zeros(1)
    with pytest.raises(ValueError, match=r"perceiver\.something_else"):
        convert_masked_lm(cfg, extra)

    with pytest.raises(ValueError, match="hidden_act"):
        convert_masked_lm({**cfg, "hidden_act": "swish"}, sd)

    _save(hf, tmp_path)
    meta = json.loads((tmp_path / "config.json").read_text())
    meta["architectures"] = ["PerceiverForSomethingElse"]
    (tmp_path / "config.json").write_text(json.dumps(meta))
    with pytest.raises(ValueError, match="PerceiverForSomethingElse"):
        perceiver_io.from_pretrained(tmp_path)


def test_roundtrip_in_our_format_after_import(tmp_path):
    hf = _hf_model("PerceiverForImageClassificationLearned", **{**SMALL, "num_cross_attention_heads": 1}, image_size=8)
    _save(hf, tmp_path / "hf")
    ours = perceiver_io.from_pretrained(tmp_path / "hf")
    ours.save_pretrained(tmp_path / "ours")
    again = ImageClassifier.from_pretrained(tmp_path / "ours")
    assert again.config == ours.config
    pixels = torch.randn(1, 3, 8, 8)
    with torch.no_grad():
        assert torch.equal(again(pixels).logits, ours(pixels).logits)


@pytest.mark.slow
def test_masked_lm_full_size_matches_transformers(tmp_path):
    """The published ``deepmind/language-perceiver`` architecture with random weights (~201M parameters)."""
    torch.manual_seed(0)
    hf = transformers.PerceiverForMaskedLM(transformers.PerceiverConfig(qk_channels=256, v_channels=1280)).eval()
    assert hf.num_parameters() == 201_108_230
    hf.save_pretrained(tmp_path)
    del hf
    ours = perceiver_io.from_pretrained(tmp_path)
    assert ours.num_parameters() == 201_108_230
    hf = transformers.PerceiverForMaskedLM.from_pretrained(tmp_path).eval()
    tokenizer = perceiver_io.adapters.BytesTokenizer()
    ids, mask = tokenizer("This is an incomplete sentence where some words are [MASK][MASK][MASK][MASK].")
    with torch.no_grad():
        expected = hf(inputs=ids, attention_mask=mask.long()).logits[:, : ids.shape[1]]
        got = ours(ids, mask).logits
    assert _max_diff(got, expected) <= ATOL
