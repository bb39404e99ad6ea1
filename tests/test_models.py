"""Tests parametrised over every registered model preset (the tiny ``test-*`` ones run), plus config
and checkpoint behaviour. A new model family is covered here by registering its tiny presets."""

import json
from dataclasses import fields

import pytest
import torch
from torch import nn

import perceiver_io
from perceiver_io import ConfigError, DecoderConfig, EncoderConfig, PerceiverIOConfig, QueryConfig
from perceiver_io.layers.position import TrainablePositionEncoding
from perceiver_io.models import PerceiverIOBase

TINY = [n for n in perceiver_io.list_models() if perceiver_io.get_preset(n).info.tiny]
# Families on the one encode/decode path (HiP's hierarchy has its own forward; tests/test_hip.py).
TINY_IO = [n for n in TINY if issubclass(perceiver_io.get_preset(n).model_class, PerceiverIOBase)]
FAMILIES = {perceiver_io.get_preset(n).model_class for n in perceiver_io.list_models()}


def _tensors(out) -> dict[str, torch.Tensor]:
    """The tensor fields of a model output dataclass (dict fields flattened as ``field.key``)."""
    tensors = {}
    for f in fields(out):
        value = getattr(out, f.name)
        if isinstance(value, torch.Tensor):
            tensors[f.name] = value
        elif isinstance(value, dict):
            tensors.update({f"{f.name}.{k}": v for k, v in value.items() if isinstance(v, torch.Tensor)})
    return tensors


def _num_latents(model) -> int:
    """N: ``config.encoder.num_latents``, a flat config's ``num_latents`` (Perceiver AR), or the
    processor's latents (HiP: ``num_latents`` per block)."""
    config = model.config
    if hasattr(config, "encoder"):
        return config.encoder.num_latents
    if isinstance(config.num_latents, tuple):
        return config.num_latents[config.processor_index]
    return config.num_latents


def _run(model, kwargs, seed: int = 0, **extra):
    torch.manual_seed(seed)  # mask tokens drawn at random (multimodal) are the same in both calls
    return model(**kwargs, **extra)


def test_every_family_has_a_tiny_preset():
    tiny_families = {perceiver_io.get_preset(n).model_class for n in TINY}
    assert FAMILIES == tiny_families, f"families without a test-* preset: {FAMILIES - tiny_families}"


@pytest.mark.parametrize("name", TINY)
def test_forward_backward_every_parameter_gets_a_gradient(name):
    model = perceiver_io.create_model(name).train()
    kwargs = model.example_inputs(batch_size=8)
    out = _run(model, kwargs)
    tensors = _tensors(out)
    assert tensors["latents"].shape[:2] == (8, _num_latents(model))
    for field, value in tensors.items():
        assert torch.isfinite(value).all(), field
    sum(v.float().square().mean() + v.float().mean() for v in tensors.values()).backward()
    missing = [n for n, p in model.named_parameters() if p.grad is None]
    assert not missing, f"no gradient for {missing}"


@pytest.mark.parametrize("name", TINY_IO)
def test_chunked_decoding_equals_unchunked_and_auto(name):
    model = perceiver_io.create_model(name).eval()
    kwargs = model.example_inputs(batch_size=2)
    with torch.no_grad():
        full = _tensors(_run(model, kwargs, chunk_size=None))
        for chunk_size in (1, 7, "auto"):
            got = _tensors(_run(model, kwargs, chunk_size=chunk_size))
            for field in full:
                torch.testing.assert_close(got[field], full[field], atol=1e-5, rtol=1e-5, msg=f"{field} {chunk_size}")


@pytest.mark.parametrize("name", TINY_IO)
def test_encode_then_decode_equals_forward(name):
    model = perceiver_io.create_model(name).eval()
    kwargs = dict(model.example_inputs(batch_size=2))
    inputs, indices = kwargs.pop("inputs"), kwargs.pop("query_indices", None)
    with torch.no_grad():
        full = _tensors(_run(model, {"inputs": inputs, "query_indices": indices}))
        torch.manual_seed(0)
        adapted = model.adapt(inputs)
        latents = model.encoder(adapted.inputs)
        staged = _tensors(model.decode(latents, inputs=adapted, query_indices=indices))
    for field in full:
        torch.testing.assert_close(staged[field], full[field], msg=field)


@pytest.mark.parametrize("name", TINY)
def test_save_load_round_trip(name, tmp_path):
    model = perceiver_io.create_model(name).eval()
    kwargs = model.example_inputs(batch_size=2)
    model.save_pretrained(tmp_path)
    loaded = perceiver_io.from_pretrained(tmp_path)
    assert type(loaded) is type(model) and loaded.config == model.config and not loaded.training
    with torch.no_grad():
        a, b = _tensors(_run(model, kwargs)), _tensors(_run(loaded, kwargs))
    for field in a:
        torch.testing.assert_close(b[field], a[field], rtol=0, atol=0, msg=field)


@pytest.mark.parametrize("name", TINY)
def test_bf16_autocast_is_finite_and_close(name):
    model = perceiver_io.create_model(name).eval()
    kwargs = model.example_inputs(batch_size=2)
    with torch.no_grad():
        ref = _tensors(_run(model, kwargs))
        with torch.autocast("cpu", dtype=torch.bfloat16):
            low = _tensors(_run(model, kwargs))
    for field, value in low.items():
        assert torch.isfinite(value.float()).all(), field
        scale = ref[field].abs().max().clamp_min(1e-3)
        assert (value.float() - ref[field]).abs().max() / scale < 0.1, field


@pytest.mark.parametrize("name", TINY_IO)
def test_compile_fullgraph(name):
    torch._dynamo.reset()
    model = perceiver_io.create_model(name).eval()
    kwargs = model.example_inputs(batch_size=2)
    adapted = model.adapt(kwargs["inputs"])
    encoder = torch.compile(model.encoder, fullgraph=True, backend="eager")
    with torch.no_grad():
        latents = encoder(adapted.inputs)
        torch.testing.assert_close(latents, model.encoder(adapted.inputs))
        if model.decoder is not None:
            decoder = torch.compile(model.decoder, fullgraph=True, backend="eager")
            for group, queries in model.head.queries(latents, adapted, kwargs.get("query_indices")).items():
                q = queries if isinstance(queries, torch.Tensor) else queries.build(0, queries.num_queries)
                torch.testing.assert_close(
                    decoder(latents, q, row_fn=model.head.row_fn(group)),
                    model.decoder(latents, q, row_fn=model.head.row_fn(group)),
                )
    torch._dynamo.reset()


@pytest.mark.parametrize("name", perceiver_io.list_models())
def test_weight_decay_rule(name):
    """No decay exactly for 1-D parameters and embedding arrays (latents, positions, learned queries,
    padding/mask tokens); every weight matrix decays, including position projections."""
    with torch.device("meta"):
        model = perceiver_io.create_model(name)
    skip = model.no_weight_decay()
    embeddings = set()
    for module_name, module in model.named_modules():
        if isinstance(module, (TrainablePositionEncoding, nn.ParameterDict)):
            embeddings |= {f"{module_name}.{n}" for n, _ in module.named_parameters()}
    for n, p in model.named_parameters():
        assert (n in skip) == (p.dim() < 2 or n in embeddings), n
        if "projection.weight" in n or n.endswith("token_embedding.weight"):
            assert n not in skip, n


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
            lambda: PerceiverIOConfig(
                num_input_channels=5, queries=QueryConfig(kind="inputs"), decoder=DecoderConfig(num_query_channels=1024)
            ),
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


@pytest.mark.parametrize("name", [n for n in perceiver_io.list_models() if perceiver_io.get_preset(n).info.hub_id])
def test_published_presets_name_their_checkpoint_and_converter(name):
    from perceiver_io.checkpoints.transformers import CONVERTERS

    info = perceiver_io.get_preset(name).info
    assert info.hub_id.startswith("deepmind/") and info.hf_architecture in CONVERTERS
    assert perceiver_io.registry.preset_for_architecture(info.hf_architecture).name == name
