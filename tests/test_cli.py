"""The command line: ``demo`` runs every registered preset, ``models`` lists them, errors are one line."""

import pytest
from typer.testing import CliRunner

import perceiver_io
from perceiver_io.cli import app

runner = CliRunner()
TINY = [n for n in perceiver_io.list_models() if perceiver_io.get_preset(n).info.tiny]
PUBLISHED = [n for n in perceiver_io.list_models() if not perceiver_io.get_preset(n).info.tiny]


def test_models_lists_every_preset():
    result = runner.invoke(app, ["models"])
    assert result.exit_code == 0
    assert result.output.split() == perceiver_io.list_models()
    result = runner.invoke(app, ["predict", "--help"])
    assert result.exit_code == 0 and "fill-mask" in result.output and "autoencode" in result.output


def _demo(name: str, *args: str) -> str:
    result = runner.invoke(app, ["demo", "--model", name, *args])
    assert result.exit_code == 0, result.output
    params = int(result.output.split("gradients on ")[1].split("/")[1].split()[0])
    assert f"gradients on {params}/{params} parameter tensors" in result.output or name == "multimodal-perceiver"
    return result.output


@pytest.mark.parametrize("name", TINY)
def test_demo_runs_forward_and_backward(name):
    out = _demo(name, "--batch-size", "2", "--steps", "2")
    assert "output latents: (2," in out


@pytest.mark.slow
@pytest.mark.parametrize("name", PUBLISHED)
def test_demo_runs_every_published_preset(name):
    """Full-size presets on their small example inputs (about 5-15 s each on 2 CPU cores)."""
    _demo(name)


def test_demo_unknown_model_is_one_line():
    result = runner.invoke(app, ["demo", "--model", "nosuch"])
    assert result.exit_code == 1
    assert "unknown model 'nosuch'" in result.output and "Traceback" not in result.output
