"""torch.export and ONNX export of the masked LM and the image classifiers match eager outputs."""

from __future__ import annotations

import pytest
import torch

import perceiver_io
from perceiver_io.export import export_onnx, export_program, input_names, logits_module

TINY_ENCODER = {
    "num_latents": 8,
    "num_latent_channels": 32,
    "num_blocks": 2,
    "num_self_attends_per_block": 1,
    "num_cross_attention_heads": 2,
    "num_self_attention_heads": 2,
    "cross_attention_qk_channels": None,
    "cross_attention_v_channels": None,
    "self_attention_qk_channels": None,
    "self_attention_v_channels": None,
}


def tiny_mlm():
    torch.manual_seed(0)
    return perceiver_io.create_model(
        "language-perceiver",
        text={"max_seq_len": 32, "num_channels": 16},
        encoder=TINY_ENCODER,
        decoder={"num_query_channels": 16, "num_heads": 2, "num_qk_channels": None, "num_v_channels": None},
    ).eval()


def tiny_image_classifier(name: str = "vision-perceiver-fourier"):
    torch.manual_seed(0)
    image = {"image_shape": (16, 16), "num_bands": 4}
    if name == "vision-perceiver-conv":
        image.update(spatial_downsample=4, out_channels=8)
    return perceiver_io.create_model(
        name,
        image=image,
        encoder={**TINY_ENCODER, "num_cross_attention_heads": 1},
        decoder={"num_query_channels": 16},
        num_classes=5,
    ).eval()


def text_inputs(batch: int, length: int, seed: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(0, 262, (batch, length), generator=g)
    mask = torch.ones(batch, length, dtype=torch.bool)
    mask[-1, length // 2 :] = False  # padding in the last row
    ids[-1, length // 2 :] = 0
    return ids, mask


def test_mlm_program_dynamic_batch_and_length():
    model = tiny_mlm()
    program = export_program(model, text_inputs(2, 10))
    assert [s.arg.name for s in program.graph_signature.input_specs if s.kind.name == "USER_INPUT"] == [
        "input_ids",
        "input_mask",
    ]
    exported = program.module()
    with torch.no_grad():
        for batch, length in ((3, 17), (1, 32), (4, 1)):
            ids, mask = text_inputs(batch, length, seed=batch)
            torch.testing.assert_close(exported(ids, mask), model(ids, mask).logits, atol=1e-5, rtol=0)


def test_mlm_program_without_mask_and_all_padding_row():
    model = tiny_mlm()
    with torch.no_grad():
        ids, _ = text_inputs(3, 12)
        program = export_program(model, (ids[:1, :5],))  # size-1 example dims are widened, not specialised
        torch.testing.assert_close(program.module()(ids), model(ids).logits, atol=1e-5, rtol=0)
        # a row with nothing to attend to must stay finite (zeros from the attention, as eagerly)
        program = export_program(model, text_inputs(2, 8))
        ids, mask = text_inputs(2, 9)
        mask[0] = False
        out = program.module()(ids, mask)
        assert torch.isfinite(out).all()
        torch.testing.assert_close(out, model(ids, mask).logits, atol=1e-5, rtol=0)


def test_mlm_program_static_length_rejects_other_lengths():
    model = tiny_mlm()
    program = export_program(model, text_inputs(2, 10), dynamic_length=False)
    with torch.no_grad():
        ids, mask = text_inputs(3, 10)
        torch.testing.assert_close(program.module()(ids, mask), model(ids, mask).logits, atol=1e-5, rtol=0)
        with pytest.raises(AssertionError, match="Guard failed"):
            program.module()(*text_inputs(3, 11))


@pytest.mark.parametrize("name", ["vision-perceiver-fourier", "vision-perceiver-conv"])
def test_image_classifier_program_dynamic_batch(name):
    model = tiny_image_classifier(name)
    program = export_program(model, torch.randn(2, 3, 16, 16))
    with torch.no_grad():
        images = torch.randn(5, 3, 16, 16)
        torch.testing.assert_close(program.module()(images), model(images).logits, atol=1e-5, rtol=0)


def test_default_example_inputs_and_training_flag_restored():
    model = tiny_image_classifier().train()
    program = export_program(model)  # example inputs from the config
    assert model.training and model.encoder.training
    model.input_adapter.eval()  # a mixed state is restored module by module
    export_program(model)
    assert model.training and not model.input_adapter.training
    model.eval()
    with torch.no_grad():
        images = torch.randn(3, 3, 16, 16)
        torch.testing.assert_close(program.module()(images), model(images).logits, atol=1e-5, rtol=0)


def test_clear_errors():
    with pytest.raises(TypeError, match="export supports .*got Linear"):
        export_program(torch.nn.Linear(2, 2), torch.randn(2, 2))
    with pytest.raises(TypeError, match="got Identity"):
        logits_module(torch.nn.Identity())
    with pytest.raises(ValueError, match="dynamic_length"):
        export_program(tiny_image_classifier(), torch.randn(2, 3, 16, 16), dynamic_length=True)
    with pytest.raises(ValueError, match="example_inputs"):
        export_program(tiny_image_classifier(), (torch.randn(2, 3, 16, 16), torch.ones(2, 3)))
    assert input_names(tiny_mlm()) == ["input_ids", "input_mask"]
    assert input_names(tiny_image_classifier()) == ["images"]


def _run_onnx(path, feeds):
    ort = pytest.importorskip("onnxruntime")
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    assert [o.name for o in session.get_outputs()] == ["logits"]
    assert [i.name for i in session.get_inputs()] == list(feeds)
    return session.run(["logits"], {k: v.numpy() for k, v in feeds.items()})[0]


def test_mlm_onnx_matches_eager(tmp_path):
    pytest.importorskip("onnxruntime")
    pytest.importorskip("onnxscript")
    model = tiny_mlm()
    path = tmp_path / "mlm.onnx"
    export_onnx(model, path, text_inputs(2, 10))
    assert path.is_file()
    for batch, length in ((3, 17), (1, 32)):
        ids, mask = text_inputs(batch, length, seed=batch)
        out = _run_onnx(path, {"input_ids": ids, "input_mask": mask})
        with torch.no_grad():
            ref = model(ids, mask).logits
        torch.testing.assert_close(torch.from_numpy(out), ref, atol=1e-4, rtol=0)


def test_image_classifier_onnx_matches_eager(tmp_path):
    pytest.importorskip("onnxruntime")
    pytest.importorskip("onnxscript")
    model = tiny_image_classifier("vision-perceiver-conv")
    path = tmp_path / "classifier.onnx"
    export_onnx(model, path, torch.randn(2, 3, 16, 16))
    images = torch.randn(4, 3, 16, 16)
    out = _run_onnx(path, {"images": images})
    with torch.no_grad():
        ref = model(images).logits
    torch.testing.assert_close(torch.from_numpy(out), ref, atol=1e-4, rtol=0)


def test_text_classifier_program():
    from perceiver_io.models import TextClassifier, TextClassifierConfig

    torch.manual_seed(0)
    config = TextClassifierConfig.from_dict(
        dict(
            text={"max_seq_len": 32, "num_channels": 16},
            encoder=TINY_ENCODER,
            decoder={"num_query_channels": 16, "num_heads": 1},
            num_classes=3,
        )
    )
    model = TextClassifier(config).eval()
    program = export_program(model, text_inputs(2, 10))
    with torch.no_grad():
        ids, mask = text_inputs(3, 20)
        out = program.module()(ids, mask)
        assert out.shape == (3, 3)
        torch.testing.assert_close(out, model(ids, mask).logits, atol=1e-5, rtol=0)
