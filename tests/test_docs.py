"""The worked example of docs/architecture.md (adding a model family) runs as written."""

import re
from pathlib import Path

import torch

import perceiver_io
from perceiver_io import registry

ARCHITECTURE = Path(__file__).resolve().parents[1] / "docs" / "architecture.md"


def test_architecture_example_adds_a_family():
    code = re.findall(r"```python\n(.*?)```", ARCHITECTURE.read_text(), re.S)
    assert len(code) == 1
    namespace: dict = {}
    try:
        exec(compile(code[0], str(ARCHITECTURE), "exec"), namespace)
        model = perceiver_io.create_model("test-point-segmenter")
        kwargs = model.example_inputs(batch_size=2)
        out = model(**kwargs)
        assert out.logits.shape == (2, 256, 13)
        out.logits.square().mean().backward()
        assert all(p.grad is not None for p in model.parameters())
        with torch.no_grad():
            model.eval()
            idx = torch.tensor([0, 5, 200])
            torch.testing.assert_close(model(**kwargs, query_indices=idx).logits, model(**kwargs).logits[:, idx])
            torch.testing.assert_close(model(**kwargs, chunk_size=7).logits, model(**kwargs).logits)
    finally:
        registry._PRESETS.pop("test-point-segmenter", None)
        registry._CLASSES.pop("PointSegmenter", None)


def test_perceiver_ar_example_runs():
    doc = ARCHITECTURE.with_name("perceiver_ar.md")
    code = re.findall(r"```python\n(.*?)```", doc.read_text(), re.S)
    assert len(code) == 1
    namespace: dict = {}
    exec(compile(code[0], str(doc), "exec"), namespace)
    assert namespace["logits"].shape == (1, 8, 262)
    assert torch.isfinite(namespace["loss"])


def test_hip_example_runs():
    doc = ARCHITECTURE.with_name("hip.md")
    code = re.findall(r"```python\n(.*?)```", doc.read_text(), re.S)
    assert len(code) == 1
    namespace: dict = {}
    with torch.no_grad():
        exec(compile(code[0], str(doc), "exec"), namespace)
    assert namespace["probe"].reconstruction == {}
