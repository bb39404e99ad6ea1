"""Fault injection: bad inputs and damaged state give one clear error (or are provably harmless).

Each test names the case of the reliability issue it covers; ``docs/reliability.md`` lists the
guarantees. Crash-recovery cases (SIGKILL mid-run, torn checkpoint writes) live in
``tests/test_training.py``; damaged data-cache cases in ``tests/test_data.py``.
"""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import perceiver_io
from conftest import tiny_multimodal
from net import free_port
from perceiver_io import ConfigError, DecoderConfig

TINY = [n for n in perceiver_io.list_models() if perceiver_io.get_preset(n).info.tiny]


# -- masked means masked ----------------------------------------------------------------------------


@pytest.mark.parametrize("poison", [float("nan"), float("inf"), -float("inf"), 1e30])
def test_padding_cannot_reach_the_outputs(poison):
    model = perceiver_io.create_model("test-perceiver-io-fourier").eval()
    x = torch.randn(2, 20, 12)
    mask = torch.ones(2, 20, dtype=torch.bool)
    mask[0, 13:] = False
    mask[1, 5:] = False
    poisoned = x.clone()
    poisoned[~mask] = poison
    with torch.no_grad():
        clean = model(x, mask).outputs
        got = model(poisoned, mask).outputs
    assert torch.isfinite(got).all()
    torch.testing.assert_close(got, clean, rtol=0, atol=0)


def test_padding_cannot_reach_gradients():
    model = perceiver_io.create_model("test-perceiver-io-fourier")
    x = torch.randn(1, 10, 12)
    x[0, 7:] = float("nan")
    mask = torch.arange(10)[None] < 7
    model(x, mask).outputs.sum().backward()
    assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)


def test_non_finite_real_inputs_are_reported_unless_allowed():
    from perceiver_io.validation import allow_non_finite

    model = perceiver_io.create_model("test-perceiver-io-fourier").eval()
    x = torch.randn(1, 8, 12)
    x[0, 3, 4] = float("inf")
    with pytest.raises(ValueError, match=r"inputs holds NaN or Inf \(first at index \(0, 3, 4\)\)"):
        model(x)
    allow_non_finite()
    try:
        assert not torch.isfinite(model(x).outputs).all()
    finally:
        allow_non_finite(False)


# -- indices, sizes, dtypes ---------------------------------------------------------------------------


@pytest.mark.parametrize("bad", [torch.tensor([0, 30]), torch.tensor([-1, 3]), torch.tensor([100])])
def test_fourier_query_indices_outside_the_grid(bad):
    model = perceiver_io.create_model("test-perceiver-io-fourier").eval()  # 6×5 grid: 30 points
    with pytest.raises(ValueError, match=r"query_indices must be in \[0, 30\)"):
        model(torch.randn(1, 8, 12), query_indices=bad)


def test_multimodal_query_indices_outside_the_video():
    model = tiny_multimodal()
    inputs = model.input_adapter.example_inputs(1)
    with pytest.raises(ValueError, match=r"query_indices must be in \[0, 128\)"):
        model(inputs, query_indices={"image": torch.tensor([10**6])})
    with pytest.raises(TypeError, match="query_indices must be an integer tensor"):
        model(inputs, query_indices={"image": torch.tensor([0.5])})


def test_inputs_query_indices_and_learned_query_indices():
    model = perceiver_io.create_model("test-perceiver-io-inputs").eval()
    with pytest.raises(ValueError, match=r"query_indices must be in \[0, 8\)"):
        model(torch.randn(1, 8, 12), query_indices=torch.tensor([8]))
    mlm = perceiver_io.create_model("test-language-perceiver").eval()
    with pytest.raises(ValueError, match=r"query_indices must be in \[0, 32\)"):
        mlm(torch.randint(6, 262, (1, 32)), query_indices=torch.tensor([32]))


@pytest.mark.parametrize("dtype", [torch.float64, torch.bfloat16, torch.float16])
def test_input_dtype_other_than_the_model_names_both(dtype):
    model = perceiver_io.create_model("test-perceiver-io-fourier")
    with pytest.raises(TypeError, match=rf"inputs has dtype {dtype} but the model's parameters are torch.float32"):
        model(torch.randn(1, 8, 12).to(dtype))
    with torch.autocast("cpu", dtype=torch.bfloat16):  # autocast casts by itself: allowed
        model(torch.randn(1, 8, 12))


def test_given_queries_with_another_batch_size():
    model = perceiver_io.create_model("perceiver-io-tiny", queries={"kind": "given"}, decoder={"num_query_channels": 8})
    with pytest.raises(ValueError, match="queries have batch size 3, latents 2"):
        model(torch.randn(2, 8, 32), queries=torch.randn(3, 4, 8))


def test_images_wrong_dtype_frames_or_empty():
    model = perceiver_io.create_model("test-optical-flow")
    with pytest.raises(TypeError, match="images must be floating point, got dtype torch.uint8"):
        model(torch.zeros(1, 2, 3, 8, 8, dtype=torch.uint8))
    with pytest.raises(ValueError, match=r"images must have shape \(B, 2, 3 or 27, H, W\)"):
        model(torch.zeros(1, 3, 3, 8, 8))
    with pytest.raises(ValueError, match="must not be empty"):
        model(torch.zeros(1, 2, 3, 0, 8))


def test_boolean_config_fields_take_booleans_only():
    with pytest.raises(ConfigError, match="DecoderConfig.use_query_residual must be true or false, got 'no'"):
        DecoderConfig(use_query_residual="no")
    with pytest.raises(ConfigError, match="must be one of"):
        DecoderConfig(shape_for_attention="k")


# -- property-based fuzz of the public entry points ---------------------------------------------------

ERRORS = (ValueError, TypeError, KeyError, ConfigError)


@settings(max_examples=60, deadline=None)
@given(
    name=st.sampled_from(TINY),
    batch=st.integers(0, 3),
    extra_dim=st.booleans(),
    scale=st.sampled_from([1.0, 255.0, float("nan")]),
    dtype=st.sampled_from([torch.float32, torch.float64, torch.int64, torch.uint8]),
)
def test_fuzz_forward_either_works_or_names_the_problem(name, batch, extra_dim, scale, dtype):
    """Random batch sizes, extra dimensions, dtypes and values: a forward returns finite outputs
    or raises one of the library's error types with a message — never a raw internal error, and
    never NaN outputs from NaN inputs without a word."""
    torch.manual_seed(0)
    model = perceiver_io.create_model(name).eval()
    kwargs = model.example_inputs(max(batch, 1))

    poisoned = []

    def mutate(x):
        if not isinstance(x, torch.Tensor):
            return {k: mutate(v) for k, v in x.items()} if isinstance(x, dict) else x
        if batch == 0:
            x = x[:0]
        if extra_dim:
            x = x[..., None]
        if x.is_floating_point() and x.numel():
            x = x * scale
            poisoned.append(scale != scale)
        return x.to(dtype) if (x.is_floating_point() or dtype in (torch.int64, torch.uint8)) else x

    kwargs["inputs"] = mutate(kwargs["inputs"])
    try:
        with torch.no_grad():
            out = model(**kwargs)
    except ERRORS as e:
        assert str(e), type(e)
        return
    # no error: then any NaN put in was provably harmless (e.g. a label replaced by its mask token)
    for f, v in vars(out).items():
        if isinstance(v, torch.Tensor):
            assert torch.isfinite(v.float()).all(), f


# -- run directories are owned ------------------------------------------------------------------------


def _training():
    from test_training import fit, tiny_mlm, write_corpus

    return fit, tiny_mlm, write_corpus


def test_a_second_run_into_a_locked_directory_fails_at_once(tmp_path):
    import subprocess
    import sys

    from perceiver_io.training.rundir import RunDirError, RunLock
    from test_training import as_args

    fit, tiny_mlm, write_corpus = _training()
    corpus = write_corpus(tmp_path / "corpus.txt")
    run = tmp_path / "run"
    with RunLock(run):
        with pytest.raises(RunDirError, match=r"is in use by another run \(pid \d+ on .*, started"):
            fit(tiny_mlm(corpus, run))
        cmd = [sys.executable, "-m", "perceiver_io.cli", "train", "mlm", *as_args(tiny_mlm(corpus, run))]
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
        assert proc.returncode == 1 and "in use by another run" in proc.stderr and "Traceback" not in proc.stderr
    assert not (run / "metrics.csv").exists()  # the refused runs wrote nothing
    fit(tiny_mlm(corpus, run))  # released: now it runs


def test_default_run_names_are_unique_for_simultaneous_starts(tmp_path):
    from perceiver_io.training.trainer import default_run_dir

    names = {default_run_dir("mlm", tmp_path) for _ in range(64)}
    assert len(names) == 64 and all(p.is_dir() for p in names)


def test_a_new_run_never_clobbers_a_finished_one(tmp_path):
    from perceiver_io.training.checkpoint import list_checkpoints
    from perceiver_io.training.rundir import RunDirError

    fit, tiny_mlm, write_corpus = _training()
    corpus = write_corpus(tmp_path / "corpus.txt")
    run = tmp_path / "run"
    fit(tiny_mlm(corpus, run))
    before = {p.name: p.read_bytes() for p in (run / "metrics.csv", run / "config.json")}
    ckpts = [p.name for p in list_checkpoints(run / "checkpoints")]
    with pytest.raises(RunDirError, match=r"holds another run \(config.json, metrics.csv, model, 2 checkpoint"):
        fit(tiny_mlm(corpus, run, **{"train.resume": False}))
    with pytest.raises(RunDirError, match=r"different config \(train.lr: 0.001 -> 0.002\)"):
        fit(tiny_mlm(corpus, run, **{"train.lr": 0.002}))
    with pytest.raises(RunDirError, match=r"data.mask_prob: 0.15 -> 0.3"):
        fit(tiny_mlm(corpus, run, **{"data.mask_prob": 0.3}))
    assert {p.name: p.read_bytes() for p in (run / "metrics.csv", run / "config.json")} == before
    assert [p.name for p in list_checkpoints(run / "checkpoints")] == ckpts
    # asked for explicitly: resume with the change (nothing left to train at max_steps, so 0 steps)
    fit(tiny_mlm(corpus, run, **{"train.lr": 0.002, "train.allow_config_change": True}))


def test_a_torn_metrics_row_is_dropped_on_resume(tmp_path):
    from perceiver_io.training.logging import read_metrics

    fit, tiny_mlm, write_corpus = _training()
    corpus = write_corpus(tmp_path / "corpus.txt")
    run = tmp_path / "run"
    fit(tiny_mlm(corpus, run, **{"train.stop_after_steps": 3}))
    with (run / "metrics.csv").open("a") as f:
        f.write("4,train,lo")  # a kill mid-append
    rows = read_metrics(run / "metrics.csv")
    assert all(r["step"] <= 3 for r in rows)
    rest = fit(tiny_mlm(corpus, run))
    assert sorted(rest.losses) == [4, 5, 6]
    steps = [r["step"] for r in read_metrics(run / "metrics.csv") if r["metric"] == "loss" and r["split"] == "train"]
    assert steps == [1, 2, 3, 4, 5, 6]


def test_fill_mask_examples_of_a_small_run_never_crash():
    """The example miner and the masked word use one rule (a word that only looked maskable in a
    shifted slice used to give ``ValueError: high <= 0``)."""
    from perceiver_io.tasks.base import build_config, get_task_class

    cfg = build_config("mlm", overrides={"data.seq_len": 48})
    task = get_task_class("mlm")(cfg, log=lambda m: None)
    task.test_docs = ["Abcdefghijklmnop is a big cat at sea. Then the small brown fox jumps over it all."]
    task.valid_docs = []
    model = perceiver_io.create_model("test-language-perceiver", text={"max_seq_len": 48})
    for original, masked, filled in task.fill_mask_examples(model, num=4):
        assert "[MASK×" in masked and len(filled) >= len(original) - 8
    task.train_docs = ["The small cat sat. A big brown dog."]
    scores = task.fill_mask_scores(model, num=4)
    assert scores["fill_mask_sentences"] == 1  # the first sentence has no maskable word (>= 4 letters, byte >= 8)
    assert all(0 <= scores[k] <= 1 for k in scores if k != "fill_mask_sentences")
    assert {"word_accuracy_iterative", "real_word_independent", "word_accuracy_most_frequent"} <= set(scores)


# -- damage is detected ---------------------------------------------------------------------------------


def _flip_payload_byte(path, offset_from_end: int = 64) -> None:
    data = bytearray(path.read_bytes())
    data[-offset_from_end] ^= 0x01
    path.write_bytes(bytes(data))


def test_damaged_saved_model_is_named(tmp_path):
    model = perceiver_io.create_model("test-vision-perceiver")
    model.save_pretrained(tmp_path)
    _flip_payload_byte(tmp_path / "model.safetensors")
    with pytest.raises(ValueError, match=r"model.safetensors is damaged: its sha256 is [0-9a-f]{64}, config.json"):
        perceiver_io.from_pretrained(tmp_path)


def test_truncated_saved_model_is_one_clear_error(tmp_path):
    import json

    model = perceiver_io.create_model("test-vision-perceiver")
    model.save_pretrained(tmp_path)
    meta = json.loads((tmp_path / "config.json").read_text())
    del meta["weights_sha256"]  # as a model saved before checksums existed
    (tmp_path / "config.json").write_text(json.dumps(meta))
    (tmp_path / "model.safetensors").write_bytes(b"\x00" * 100)
    with pytest.raises(ValueError, match="is not a readable safetensors file"):
        perceiver_io.from_pretrained(tmp_path)


def test_damaged_training_checkpoint_is_named_and_an_earlier_one_still_resumes(tmp_path):
    from perceiver_io.training.checkpoint import CheckpointError, list_checkpoints, load_checkpoint

    fit, tiny_mlm, write_corpus = _training()
    corpus = write_corpus(tmp_path / "corpus.txt")
    run = tmp_path / "run"
    fit(tiny_mlm(corpus, run, **{"train.stop_after_steps": 6, "train.max_steps": 9}))
    first, last = list_checkpoints(run / "checkpoints")
    _flip_payload_byte(last, 200)
    with pytest.raises(CheckpointError, match=r"step-00000006.pt' is damaged: its sha256 is"):
        load_checkpoint(last)
    with pytest.raises(CheckpointError, match="is damaged"):
        fit(tiny_mlm(corpus, run, **{"train.max_steps": 9}))
    rest = fit(tiny_mlm(corpus, run, **{"train.max_steps": 9, "train.resume_from": str(first)}))
    assert sorted(rest.losses) == [4, 5, 6, 7, 8, 9]


# -- one line from the command line, never a traceback --------------------------------------------------


@pytest.fixture
def small_mount(tmp_path):
    """A tiny tmpfs (``size`` bytes, optionally read-only); skipped where mounting is not allowed."""
    import subprocess

    mounts = []

    def make(size: str, read_only: bool = False):
        path = tmp_path / f"mnt{len(mounts)}"
        path.mkdir()
        opts = f"size={size}" + (",ro" if read_only else "")
        res = subprocess.run(["mount", "-t", "tmpfs", "-o", opts, "tmpfs", str(path)], capture_output=True)
        if res.returncode != 0:
            pytest.skip(f"cannot mount a tmpfs here ({res.stderr.decode().strip() or 'not root'})")
        mounts.append(path)
        return path

    yield make

    for path in mounts:
        subprocess.run(["umount", "-l", str(path)], capture_output=True)  # lazy: a dead writer may hold a file


def _cli(*args):
    from typer.testing import CliRunner

    from perceiver_io.cli import app

    return CliRunner().invoke(app, list(args))


def _one_line_error(res, needle):
    assert res.exit_code == 1, res.output
    assert "Traceback" not in res.output and needle in res.output, res.output
    assert res.output.strip().startswith("error:") and len(res.output.strip().splitlines()) == 1, res.output


def test_full_disk_during_a_checkpoint_write_says_so(tmp_path, small_mount):
    from perceiver_io.training.checkpoint import list_checkpoints
    from test_training import as_args

    _, tiny_mlm, write_corpus = _training()
    corpus = write_corpus(tmp_path / "corpus.txt")
    run = small_mount("256k") / "run"
    res = _cli("train", "mlm", *as_args(tiny_mlm(corpus, run)))
    lines = [line for line in res.output.splitlines() if line.startswith("error:")]
    assert res.exit_code == 1 and lines == [
        f"error: No space left on device: cannot write checkpoint '{run / 'checkpoints' / 'step-00000003.pt'}'"
    ], res.output
    assert not list_checkpoints(run / "checkpoints") and not list((run / "checkpoints").glob(".*"))


def test_read_only_run_directory_is_one_line(tmp_path, small_mount):
    from test_training import as_args

    _, tiny_mlm, write_corpus = _training()
    corpus = write_corpus(tmp_path / "corpus.txt")
    run = small_mount("1m", read_only=True) / "run"
    res = _cli("train", "mlm", *as_args(tiny_mlm(corpus, run)))
    _one_line_error(res, "Read-only file system")


def test_cli_device_and_damaged_weights_are_one_line(tmp_path):
    model = perceiver_io.create_model("test-language-perceiver")
    model.save_pretrained(tmp_path / "m")
    if not torch.cuda.is_available():
        _one_line_error(
            _cli("predict", "fill-mask", "ab[MASK]", "--model", str(tmp_path / "m"), "--device", "cuda"),
            "CUDA is not available",
        )
    _flip_payload_byte(tmp_path / "m" / "model.safetensors")
    _one_line_error(_cli("predict", "fill-mask", "ab[MASK]", "--model", str(tmp_path / "m")), "is damaged")
    _one_line_error(_cli("demo", "--model", "nosuch"), "unknown model 'nosuch'")
    res = _cli("--debug", "demo", "--model", "nosuch")
    assert res.exit_code != 0 and isinstance(res.exception, KeyError)  # --debug keeps the exception


# -- values, sizes and ranges at the other entry points --------------------------------------------------


def test_multimodal_video_of_the_wrong_size_or_frames():
    model = tiny_multimodal()
    inputs = model.input_adapter.example_inputs(1)
    for bad in (torch.rand(1, 3, 3, 8, 8), torch.rand(1, 2, 3, 8, 12)):
        with pytest.raises(ValueError, match="images must"):
            model({**inputs, "image": bad})


def test_inference_value_ranges(tmp_path):
    from perceiver_io.inference import estimate_flow, load_image
    from perceiver_io.visualize import flow_to_rgb

    with pytest.raises(ValueError, match=r"floating-point images must be in \[0, 1\], got values in \[0, 255\]"):
        load_image(torch.linspace(0, 255, 3 * 4 * 4).reshape(3, 4, 4))
    with pytest.raises(IsADirectoryError, match="is a directory"):
        load_image(str(tmp_path))
    flow = perceiver_io.create_model("test-optical-flow").eval()
    frame = torch.rand(3, 40, 60)
    with pytest.raises(ValueError, match=r"tile_overlap must be an integer in \[0, 12\)"):
        estimate_flow(flow, frame, frame, tile_overlap=100000)
    with pytest.raises(ValueError, match="max_radius must be a positive number"):
        flow_to_rgb(torch.zeros(4, 4, 2), max_radius=-1.0)


def test_fill_mask_longer_than_the_model_is_refused():
    model = perceiver_io.create_model("test-language-perceiver")  # 32 positions
    with pytest.raises(ValueError, match=r"more than max_seq_len \(32\)"):
        model.fill_mask("x" * 40 + "[MASK]")


@pytest.mark.parametrize(
    ("override", "needle"),
    [
        ({"lr": float("inf")}, "lr must be a finite non-negative number"),
        ({"min_lr_ratio": 5.0}, r"min_lr_ratio must be in \[0, 1\]"),
        ({"betas": (0.9, 1.5)}, "betas must be two numbers"),
    ],
)
def test_train_config_ranges(override, needle):
    from perceiver_io.training.trainer import TrainConfig

    with pytest.raises(ConfigError, match=needle):
        TrainConfig(**override)


def test_query_grid_and_architecture_messages(tmp_path):
    import json

    from perceiver_io import QueryConfig

    with pytest.raises(ConfigError, match=r"index_dims must be positive integers, got \(0, 4\)"):
        QueryConfig(kind="fourier", index_dims=(0, 4))
    (tmp_path / "config.json").write_text(json.dumps({"architectures": "PerceiverForMaskedLM"}))
    with pytest.raises(FileNotFoundError, match="no model.safetensors or pytorch_model.bin"):
        perceiver_io.from_pretrained(tmp_path)  # a string architecture is understood, not "unsupported"


def test_autoencode_video_outside_its_range():
    from perceiver_io.inference import autoencode

    model = tiny_multimodal()
    with pytest.raises(ValueError, match=r"video must have values in \[0, 1\].*got \[0, 255\]"):
        autoencode(model, video=torch.linspace(0, 255, 2 * 3 * 8 * 8).reshape(2, 3, 8, 8))


class _Foreign:
    """An arbitrary object: unpickling it would run this module's code."""


def test_foreign_pickle_is_not_advised_to_be_unpickled(tmp_path):
    from perceiver_io.training.checkpoint import CheckpointError, load_checkpoint

    path = tmp_path / "step-00000001.pt"
    torch.save({"model": {}, "step": 1, "x": _Foreign()}, path)
    with pytest.raises(CheckpointError) as info:
        load_checkpoint(path)
    assert "is unreadable or corrupted (it holds objects a training checkpoint never contains)" in str(info.value)
    assert "trust" not in str(info.value)


def test_sigkill_at_random_moments_never_leaves_a_partial_checkpoint(tmp_path):
    """Kill a training process (checkpoint every step) at three random moments, resuming in between:
    every file under a checkpoint's name is complete and verified, and the last resume finishes."""
    import random
    import signal
    import subprocess
    import sys
    import time

    from perceiver_io.training.checkpoint import list_checkpoints, load_checkpoint
    from test_training import as_args

    _, tiny_mlm, write_corpus = _training()
    corpus = write_corpus(tmp_path / "corpus.txt")
    run = tmp_path / "run"
    args = as_args(tiny_mlm(corpus, run, **{"train.max_steps": 60, "train.checkpoint_every": 1}))
    cmd = [sys.executable, "-m", "perceiver_io.cli", "train", "mlm", *args]
    rng = random.Random(0)
    for _ in range(3):
        proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.time() + 60
        while time.time() < deadline and not list_checkpoints(run / "checkpoints"):
            time.sleep(0.02)
        time.sleep(rng.uniform(0.0, 0.5))
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        for p in list_checkpoints(run / "checkpoints"):
            assert load_checkpoint(p)["step"] == int(p.name[5:13])  # complete, and its sha256 matches
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr[-2000:]
    assert load_checkpoint(list_checkpoints(run / "checkpoints")[-1])["step"] == 60


# -- found in review ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "renames"),
    [
        ("perceiver-io-tiny", {"head.query_builder.": "query_builder."}),
        ("test-language-perceiver", {"head.query_builder.": "query_builder.", "head.bias": "output_adapter.bias"}),
        ("test-perceiver", {"head.projection.": "head."}),
        (
            "test-multimodal-perceiver",
            {
                "head.heads.label.query_builder.": "query_builder.builders.label.",
                "head.padding.": "query_builder.padding.",
                "head.heads.": "output_adapter.adapters.",
            },
        ),
    ],
)
def test_models_saved_by_earlier_versions_still_load(name, renames, tmp_path):
    """State-dict names from before output heads (``query_builder.*``, ``output_adapter.*``) are upgraded."""
    import json

    from safetensors.torch import load_file, save_file

    model = perceiver_io.create_model(name).eval()
    model.save_pretrained(tmp_path)
    state = load_file(str(tmp_path / "model.safetensors"))
    old = {}
    for key, value in state.items():
        for new, legacy in renames.items():
            if key.startswith(new):
                key = legacy + key[len(new) :]
                break
        old[key] = value
    assert set(old) != set(state)
    save_file(old, str(tmp_path / "model.safetensors"))
    meta = json.loads((tmp_path / "config.json").read_text())
    del meta["weights_sha256"]
    (tmp_path / "config.json").write_text(json.dumps(meta))
    loaded = perceiver_io.from_pretrained(tmp_path)
    for key, value in model.state_dict().items():
        torch.testing.assert_close(loaded.state_dict()[key], value, rtol=0, atol=0, msg=key)


def test_an_unregistered_model_class_loads_through_its_own_from_pretrained(tmp_path):
    class MyPerceiverIO(perceiver_io.PerceiverIO):
        pass

    model = MyPerceiverIO(perceiver_io.get_config("perceiver-io-tiny"))
    model.save_pretrained(tmp_path)
    assert type(MyPerceiverIO.from_pretrained(tmp_path)) is MyPerceiverIO
    with pytest.raises(ValueError, match="unknown model_class 'MyPerceiverIO'"):
        perceiver_io.from_pretrained(tmp_path)


def test_rank_zero_problems_raise_everywhere_without_distributed():
    from perceiver_io.training.distributed import raise_on_all_ranks
    from perceiver_io.training.rundir import RunDirError

    raise_on_all_ranks(None, RunDirError)
    with pytest.raises(RunDirError, match="in use"):
        raise_on_all_ranks("run directory 'x' is in use", RunDirError)


def test_fourier_chunks_equal_the_whole_grid_bit_for_bit():
    from perceiver_io.queries import FourierQueries

    q = FourierQueries((4, 7, 9), 3, (8, 14, 18))
    whole = q(1)
    pieces = torch.cat([q.chunk(1, s, min(s + 50, 252)) for s in range(0, 252, 50)], dim=1)
    assert torch.equal(pieces, whole)


def test_a_fresh_run_is_refused_where_a_run_without_checkpoints_left_files(tmp_path):
    from perceiver_io.training.rundir import RunDirError

    fit, tiny_mlm, write_corpus = _training()
    corpus = write_corpus(tmp_path / "corpus.txt")
    run = tmp_path / "run"
    run.mkdir()
    (run / "metrics.csv").write_text("step,split,metric,value\n1,train,loss,5.0\n")
    with pytest.raises(RunDirError, match=r"holds another run \(metrics.csv\)"):
        fit(tiny_mlm(corpus, run))


def test_under_torchrun_a_locked_directory_stops_every_rank(tmp_path):
    """Two ranks (gloo): rank 0 finds the run directory locked; both exit promptly with the error
    instead of rank 1 waiting in a collective until a timeout."""
    import os
    import subprocess
    import sys

    from perceiver_io.training.rundir import RunLock
    from test_training import as_args

    _, tiny_mlm, write_corpus = _training()
    corpus = write_corpus(tmp_path / "corpus.txt")
    run = tmp_path / "run"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    port = free_port()
    launcher = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", f"--master_port={port}"]
    with RunLock(run):
        res = subprocess.run(
            [*launcher, "-m", "perceiver_io.cli", "train", "mlm", *as_args(tiny_mlm(corpus, run))],
            env=env, capture_output=True, text=True, timeout=120,
        )  # fmt: skip
    assert res.returncode != 0
    assert (res.stdout + res.stderr).count("is in use by another run") >= 2, (res.stdout + res.stderr)[-3000:]
