"""HiP: grouping and regrouping, padding and input masks, skip wiring, locality, the published
schedules' parameter counts, and errors at the boundary."""

import pytest
import torch

import perceiver_io
from perceiver_io import ConfigError
from perceiver_io.models.hip import GroupLayout, HiP, HiPConfig, assign_groups, hip_config, regroup

# google-deepmind/hierarchical_perceiver perceiver_test.py: the model is called on two data sets
# (ImageNet: image (1024, 3) + label (32, 1); AudioSet: audio (128, 16) + label (16, 16)) and its
# position encodings are projected by slot (num_position_encoding_channels=512 != E).
OFFICIAL_TEST_INPUTS = dict(
    modalities=("imagenet_image", "imagenet_label", "audioset_audio", "audioset_label"),
    input_index_dims=(1024, 32, 128, 16),
    input_channels=(3, 1, 16, 16),
    position_projection_slots=2,
)


@pytest.mark.parametrize("schedule, expected", [("16", 99_224_996), ("256", 95_585_188), ("mini", 18_709_668)])
def test_published_schedules_have_the_official_parameter_counts(schedule, expected):
    with torch.device("meta"):
        model = HiP(hip_config(schedule, **OFFICIAL_TEST_INPUTS))
    assert model.num_parameters() == expected


def test_official_test_calls_one_model_on_two_data_sets():
    torch.manual_seed(0)
    model = HiP(
        hip_config(
            "mini",
            **OFFICIAL_TEST_INPUTS,
            num_latent_channels=(16, 32, 16),
            num_self_attention_heads=(2, 2, 2),
            num_latents=(8, 16, 8),
        )
    )
    image = {"imagenet_image": torch.rand(2, 1024, 3), "imagenet_label": torch.rand(2, 32, 1)}
    audio = {"audioset_audio": torch.rand(2, 128, 16), "audioset_label": torch.rand(2, 16, 16)}
    for inputs in (image, audio):
        out = model(inputs)
        assert {k: v.shape for k, v in out.reconstruction.items()} == {k: v.shape for k, v in inputs.items()}
        assert out.latents.shape == (2, 16, 32)
        # the unembedding is zero-initialised, so a fresh model reconstructs zeros
        assert all(float(v.detach().abs().max()) == 0.0 for v in out.reconstruction.values())


def test_assign_groups_matches_the_official_greedy_rule():
    # worked by hand: each extra group goes to the modality with the longest groups
    assert assign_groups(16, [1024, 32]) == ([15, 1], 69)  # 1024/15 = 68.3 > 32
    assert assign_groups(16, [128, 16]) == ([14, 2], 10)  # 128/14 = 9.1, 16/2 = 8, ceil(9.14)
    assert assign_groups(4, [30, 7]) == ([3, 1], 10)
    assert assign_groups(3, [5, 5]) == ([2, 1], 5)  # ties go to the first
    with pytest.raises(ValueError, match="at least as many groups"):
        assign_groups(1, [4, 4])


def test_group_layout_is_contiguous_never_mixes_modalities_and_pads_at_group_ends():
    layout = GroupLayout.build(4, ("a", "b"), (30, 7))
    assert layout.groups == {"a": (0, 3), "b": (3, 1)} and layout.group_length == 10
    index = layout.index.view(4, 10)
    assert index[0].tolist() == list(range(10)) and index[2].tolist() == list(range(20, 30))
    assert index[3].tolist() == list(range(30, 37)) + [-1, -1, -1]
    owner = torch.where(index < 0, -1, (index >= 30).long())
    for g in range(4):
        real = owner[g][owner[g] >= 0]
        assert real.unique().numel() == 1, f"group {g} mixes modalities"
    assert layout.mask().sum() == 37 and layout.has_padding


def test_group_then_ungroup_is_the_identity_and_padding_is_zero():
    layout = GroupLayout.build(5, ("a", "b"), (13, 9))
    x = {"a": torch.randn(2, 13, 3), "b": torch.randn(2, 9, 3)}
    grouped = layout.group(x)
    assert grouped.shape == (2, 5, layout.group_length, 3)
    assert grouped[:, ~layout.mask()].abs().max() == 0
    back = layout.ungroup(grouped)
    for k in x:
        torch.testing.assert_close(back[k], x[k], rtol=0, atol=0)


def test_regroup_merges_neighbouring_groups_or_interleaves():
    x = torch.arange(4 * 2).view(1, 4, 2, 1)  # groups [0 1] [2 3] [4 5] [6 7]
    assert regroup(x, 2).flatten(2).tolist() == [[[0, 1, 2, 3], [4, 5, 6, 7]]]
    assert regroup(x, 2, "transpose_reshape").flatten(2).tolist() == [[[0, 2, 4, 6], [1, 3, 5, 7]]]
    with pytest.raises(ValueError, match="cannot regroup"):
        regroup(x, 3)


def _tiny(**overrides) -> HiP:
    torch.manual_seed(0)
    model = perceiver_io.create_model("test-hip", **overrides).eval()
    for p in model.unembed.parameters():  # give the zero-initialised output a value to compare
        torch.nn.init.normal_(p)
    return model


def _fill_padding(monkeypatch, scale: float) -> None:
    """Make GroupLayout.group put random values (not zeros) in the padding slots of float inputs
    (random, since LayerNorm maps any constant row to the same vector)."""
    original = GroupLayout.group

    def group(self, inputs):
        out = original(self, inputs)
        if out.is_floating_point():
            out = torch.where(self.mask(out.device)[None, :, :, None], out, scale * torch.randn_like(out))
        return out

    monkeypatch.setattr(GroupLayout, "group", group)


@pytest.mark.parametrize("mask_padding", [True, False])
def test_padding_is_masked_out_of_attention(monkeypatch, mask_padding):
    model = _tiny(mask_padding=mask_padding)
    inputs = model.example_inputs(2)["inputs"]
    with torch.no_grad():
        ref = model(inputs)
        _fill_padding(monkeypatch, 100.0)
        got = model(inputs)
    same = torch.allclose(got.latents, ref.latents, atol=1e-5)
    assert same == mask_padding  # the official layout (no mask) does see its padding
    if mask_padding:
        for k in ref.reconstruction:
            torch.testing.assert_close(got.reconstruction[k], ref.reconstruction[k], atol=1e-5, rtol=1e-5)


def test_hidden_inputs_do_not_reach_the_model_visible_ones_do():
    model = _tiny()
    inputs = model.example_inputs(2)["inputs"]
    visible = {"image": torch.rand(2, 30) > 0.5}
    with torch.no_grad():
        ref = model(inputs, visible)
        changed = dict(
            inputs, image=torch.where(visible["image"][..., None], inputs["image"], torch.randn(2, 30, 3) * 9)
        )
        got = model(changed, visible)
        torch.testing.assert_close(got.latents, ref.latents)
        for k in ref.reconstruction:
            torch.testing.assert_close(got.reconstruction[k], ref.reconstruction[k])
        changed = dict(inputs, image=torch.where(visible["image"][..., None], inputs["image"] + 1, inputs["image"]))
        assert not torch.allclose(model(changed, visible).latents, ref.latents)
        # a fully hidden modality still gets a reconstruction of every position
        out = model(inputs, {"audio": torch.zeros(2, 7, dtype=torch.bool)})
        assert out.reconstruction["audio"].shape == (2, 7, 2)


def test_first_block_attends_within_groups_only():
    model = _tiny()
    layout = model.layout(("image", "audio"))
    inputs = model.example_inputs(1)["inputs"]
    z = layout.group({k: model.embed[k](v) for k, v in inputs.items()})
    with torch.no_grad():
        ref = model.blocks[0](z, input_mask=layout.mask().expand(1, -1, -1))
        z2 = z.clone()
        z2[:, 1] += 5.0  # change group 1 only
        got = model.blocks[0](z2, input_mask=layout.mask().expand(1, -1, -1))
    changed = [(got[:, g] - ref[:, g]).abs().max().item() > 1e-6 for g in range(4)]
    assert changed == [False, True, False, False]


def test_decoder_blocks_take_the_skip_from_the_mirrored_encoder_block():
    model = _tiny()
    outputs, skips = {}, {}

    def hook(i):
        def fn(module, args, kwargs, out):
            outputs[i] = out
            skips[i] = kwargs.get("skip")

        return fn

    for i, block in enumerate(model.blocks):
        block.register_forward_hook(hook(i), with_kwargs=True)
    with torch.no_grad():
        model(**model.example_inputs(2))
    n, p = len(model.blocks), model.config.processor_index
    for i in range(n):
        if i <= p:
            assert skips[i] is None, i
        else:
            assert skips[i] is outputs[n - 1 - i], i
    # widths differ between block 3 (24) and its skip source, block 1 (24): no projection; block 4
    # and block 0 (16, 16) neither; a schedule with different widths gets a projection
    assert all(b.skip_projection is None for b in model.blocks)
    wide = HiP(
        HiPConfig(
            num_groups=(2, 1, 2),
            num_latents=(4, 4, 4),
            num_latent_channels=(8, 16, 12),
            num_self_attention_heads=(2, 2, 2),
            input_index_dims=(16,),
        )
    )
    assert wide.blocks[2].skip_projection.in_features == 8 and wide.blocks[2].skip_projection.out_features == 12


def test_flat_schedule_is_one_block_over_all_inputs():
    model = HiP(
        HiPConfig(
            num_groups=(1,),
            num_latents=(8,),
            num_latent_channels=(16,),
            num_self_attention_layers=(2,),
            num_self_attention_heads=(2,),
            num_cross_attention_heads=(1,),
            cross_attention_widening_factor=(1,),
            self_attention_widening_factor=(4,),
            input_index_dims=(40,),
        )
    )
    out = model(torch.randn(3, 40, 3))
    assert out.latents.shape == (3, 8, 16) and out.reconstruction["image"].shape == (3, 40, 3)
    assert model.layout(("image",)).num_groups == 1


def test_decode_false_stops_at_the_processor_and_classifies():
    model = _tiny()
    inputs = model.example_inputs(4)["inputs"]
    with torch.no_grad():
        full, probe = model(inputs), model(inputs, decode=False)
    assert probe.reconstruction == {} and probe.logits.shape == (4, 3)
    torch.testing.assert_close(probe.latents, full.latents)
    torch.testing.assert_close(probe.logits, full.logits)


def test_compile_fullgraph():
    torch._dynamo.reset()
    model = _tiny()
    inputs = model.example_inputs(2)["inputs"]
    compiled = torch.compile(model, fullgraph=True, backend="eager")
    with torch.no_grad():
        a, b = compiled(inputs), model(inputs)
    torch.testing.assert_close(a.latents, b.latents)
    torch._dynamo.reset()


@pytest.mark.parametrize(
    "overrides, message",
    [
        (dict(num_groups=(4, 1)), "odd number of blocks"),
        (dict(num_groups=(4, 2, 4)), r"num_groups\[1\] \(the processor\) must be 1"),
        (dict(num_groups=(4, 1, 2)), "start and end with the same number"),
        (dict(num_latents=(4, 4)), "num_latents must hold 3 positive integers"),
        (
            dict(num_groups=(1, 1, 1), modalities=("a", "b"), input_index_dims=(4, 4), input_channels=(1, 1)),
            "at least the number of modalities",
        ),
        (dict(num_groups=(2, 1, 2), num_latents=(5, 4, 5)), None),
        (dict(num_groups=(4, 1, 4), num_latents=(3, 4, 2)), "takes the skip from block 0"),
        (dict(num_self_attention_heads=(3, 4, 4)), "divisible by its self-attention heads"),
        (dict(input_channels=(3, 1)), "input_channels must hold one positive integer per modality"),
    ],
)
def test_config_errors_name_the_field(overrides, message):
    base = dict(
        num_groups=(4, 1, 4),
        num_latents=(4, 4, 4),
        num_latent_channels=(8, 16, 8),
        num_self_attention_heads=(2, 4, 2),
        input_index_dims=(16,),
    )
    if message is None:
        HiPConfig(**{**base, **overrides})
        return
    with pytest.raises(ConfigError, match=message):
        HiPConfig(**{**base, **overrides})


def test_bad_inputs_get_clear_errors():
    model = _tiny()
    x = model.example_inputs(2)["inputs"]
    with pytest.raises(ValueError, match=r"inputs\['image'\] must have shape \(B, 30, 3\), got \(2, 29, 3\)"):
        model({"image": x["image"][:, :29], "audio": x["audio"]})
    with pytest.raises(KeyError, match="unknown modality"):
        model({"video": x["image"]})
    with pytest.raises(ValueError, match="batch size"):
        model({"image": x["image"], "audio": x["audio"][:1]})
    with pytest.raises(ValueError, match=r"input_mask\['image'\] must be a bool tensor of shape \(2, 30\)"):
        model(x, {"image": torch.ones(2, 30)})
    with pytest.raises(ValueError, match="batch size 0"):
        model({n: v[:0] for n, v in x.items()})
    with pytest.raises(TypeError, match=r"inputs\['image'\] has dtype torch.float64"):
        model({"image": x["image"].double(), "audio": x["audio"]})
    poisoned = x["image"].clone()
    poisoned[0, 3] = float("nan")
    with pytest.raises(ValueError, match=r"inputs\['image'\] holds NaN"):
        model({"image": poisoned, "audio": x["audio"]})
    # a hidden input may hold anything: it reaches nothing
    visible = {"image": torch.ones(2, 30, dtype=torch.bool)}
    visible["image"][0, 3] = False
    with torch.no_grad():
        out = model({"image": poisoned, "audio": x["audio"]}, visible)
        clean = model({"image": x["image"], "audio": x["audio"]}, visible)
    torch.testing.assert_close(out.latents, clean.latents)
    assert all(torch.isfinite(r).all() for r in out.reconstruction.values())
