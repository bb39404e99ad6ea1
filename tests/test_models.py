"""Tests parametrised over every registered model preset, plus config and checkpoint behaviour."""

import json

import pytest
import torch

import perceiver_io
from perceiver_io import ConfigError, DecoderConfig, EncoderConfig, PerceiverIOConfig, QueryConfig


@pytest.mark.parametrize("name", perceiver_io.list_models())
def test_every_preset_builds_and_round_trips(name):
    config = perceiver_io.get_config(name)
    assert type(config).from_json(config.to_json()) == config
    with torch.device("meta"):  # full published sizes without allocating memory
        model = perceiver_io.create_model(name)
    assert model.num_parameters() > 0
    assert model.config == config


def test_create_model_overrides_nested():
    model = perceiver_io.create_model("perceiver-io-tiny", encoder={"num_latents": 5})
    assert model.encoder.latents.embeddings.shape[0] == 5
    with pytest.raises(ConfigError, match="unknown field 'nope'"):
        perceiver_io.create_model("perceiver-io-tiny", nope=1)
    with pytest.raises(KeyError, match="unknown model 'nope'; available: .*perceiver-io-tiny"):
        perceiver_io.create_model("nope")


def test_perceiver_io_base_matches_paper_size():
    """Official encoder defaults + ImageNet FF inputs (261) + 1000 classes: the paper's 48.4M."""
    with torch.device("meta"):
        model = perceiver_io.create_model("perceiver-io-base")
    assert round(model.num_parameters() / 1e6, 1) == 48.4


@pytest.mark.parametrize(
    ("factory", "message"),
    [
        (lambda: EncoderConfig(num_latents=0), r"EncoderConfig.num_latents must be a positive integer, got 0"),
        (
            lambda: EncoderConfig(num_latent_channels=10, num_self_attention_heads=4),
            r"self_attention_qk_channels \(default num_latent_channels\) \(10\) must be divisible by "
            r"num_self_attention_heads \(4\)",
        ),
        (lambda: EncoderConfig(dropout=1.5), r"EncoderConfig.dropout must be in \[0, 1\), got 1.5"),
        (lambda: EncoderConfig(activation="tanh"), r"EncoderConfig.activation must be one of"),
        (lambda: DecoderConfig(num_heads=3, num_qk_channels=8), r"num_qk_channels \(8\) must be divisible"),
        (lambda: QueryConfig(kind="fourier"), r"QueryConfig.index_dims must be given"),
        (
            lambda: PerceiverIOConfig(num_input_channels=5, queries=QueryConfig(kind="inputs")),
            r"decoder.num_query_channels \(1024\) must equal the width of the 'inputs' queries \(5\)",
        ),
    ],
)
def test_config_validation_names_the_field(factory, message):
    with pytest.raises(ConfigError, match=message):
        factory()


def test_config_from_dict_rejects_unknown_fields():
    with pytest.raises(ConfigError, match=r"EncoderConfig: unknown field\(s\) \['num_latentz'\]"):
        PerceiverIOConfig.from_dict({"encoder": {"num_latentz": 3}})


def test_save_and_load_pretrained(tmp_path):
    model = perceiver_io.create_model("perceiver-io-tiny", queries={"num_queries": 4}).eval()
    x = torch.randn(2, 50, 32)
    model.save_pretrained(tmp_path)
    meta = json.loads((tmp_path / "config.json").read_text())
    assert meta["model_class"] == "PerceiverIO" and meta["config"]["queries"]["num_queries"] == 4
    loaded = perceiver_io.from_pretrained(tmp_path)
    assert not loaded.training
    torch.testing.assert_close(loaded(x).outputs, model(x).outputs, rtol=0, atol=0)
    assert perceiver_io.PerceiverIO.from_pretrained(tmp_path).config == model.config
    assert not list(tmp_path.glob("*.tmp"))


def test_load_errors_are_clear(tmp_path):
    with pytest.raises(FileNotFoundError, match="no config.json"):
        perceiver_io.from_pretrained(tmp_path)
    (tmp_path / "config.json").write_text("{not json")
    with pytest.raises(ValueError, match="is not valid JSON"):
        perceiver_io.from_pretrained(tmp_path)
    model = perceiver_io.create_model("perceiver-io-tiny")
    model.save_pretrained(tmp_path)
    other = perceiver_io.create_model("perceiver-io-tiny", encoder={"num_latents": 3})
    meta = json.loads((tmp_path / "config.json").read_text())
    meta["config"] = other.config.to_dict()
    (tmp_path / "config.json").write_text(json.dumps(meta))
    with pytest.raises(Exception, match="encoder.latents.embeddings"):
        perceiver_io.from_pretrained(tmp_path)
    (tmp_path / "model.safetensors").unlink()
    with pytest.raises(FileNotFoundError, match="no model.safetensors"):
        perceiver_io.from_pretrained(tmp_path)
