"""Training engine: LAMB, weight-decay groups, schedule, exact resume, SIGKILL, DDP equivalence, errors."""

from __future__ import annotations

import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from net import free_port
from perceiver_io.cli import app
from perceiver_io.config import ConfigError
from perceiver_io.tasks import build_config, get_task_class
from perceiver_io.training import LAMB, Trainer, apply_overrides, param_groups, warmup_cosine
from perceiver_io.training.checkpoint import CheckpointError, list_checkpoints, load_checkpoint

WORDS = (
    "the quick brown fox jumps over a lazy dog while seven wizards quietly judge boxing matches "
    "and a bright morning sun rises above green hills where farmers plant wheat and barley"
).split()


def write_corpus(path: Path, n_paragraphs: int = 40, seed: int = 0) -> Path:
    """A small offline text file: paragraphs (= documents) of random sentences."""
    rng = np.random.default_rng(seed)
    paras = []
    for _ in range(n_paragraphs):
        sents = [" ".join(rng.choice(WORDS, size=rng.integers(5, 12))).capitalize() + "." for _ in range(6)]
        paras.append(" ".join(sents))
    path.write_text("\n\n".join(paras))
    return path


def tiny_mlm(corpus: Path, run_dir: Path, **extra) -> dict:
    o = {
        "data.corpus": str(corpus),
        "data.fallback_corpus": None,
        "data.seq_len": 32,
        "data.eval_windows": 16,
        "data.num_fill_mask_examples": 1,
        "model.text.num_channels": 32,
        "model.encoder.num_latents": 8,
        "model.encoder.num_latent_channels": 32,
        "model.encoder.num_self_attends_per_block": 1,
        "model.encoder.num_cross_attention_heads": 2,
        "model.encoder.num_self_attention_heads": 2,
        "model.decoder.num_query_channels": 32,
        "model.decoder.num_heads": 2,
        "train.batch_size": 8,
        "train.max_steps": 6,
        "train.warmup_steps": 2,
        "train.log_every": 1,
        "train.checkpoint_every": 3,
        "train.eval_every": 0,
        "train.eval_batches": 1,
        "train.progress": False,
        "train.tensorboard": False,
        "train.plot": False,
        "train.run_dir": str(run_dir),
    }
    o.update(extra)
    return o


def as_args(overrides: dict) -> list[str]:
    return [f"{k}={'null' if v is None else v}" for k, v in overrides.items()]


def fit(overrides: dict):
    cfg = build_config("mlm", overrides=overrides)
    task = get_task_class("mlm")(cfg, log=lambda m: None)
    return Trainer(task, log=lambda m: None).fit()


# -- optimizer, groups, schedule ----------------------------------------------------------


def test_lamb_matches_hand_computation():
    w0 = np.array([[0.5, -1.0], [2.0, 0.25]])
    grads = [np.array([[0.1, -0.2], [0.3, 0.05]]), np.array([[-0.05, 0.4], [0.1, -0.3]])]
    lr, b1, b2, eps, wd = 0.1, 0.9, 0.99, 1e-6, 0.01
    p = torch.nn.Parameter(torch.tensor(w0, dtype=torch.float64))
    opt = LAMB([p], lr=lr, betas=(b1, b2), eps=eps, weight_decay=wd)
    w, m, v = w0.copy(), np.zeros_like(w0), np.zeros_like(w0)
    for t, g in enumerate(grads, 1):
        p.grad = torch.tensor(g)
        opt.step()
        m = b1 * m + (1 - b1) * g
        v = b2 * v + (1 - b2) * g * g
        u = (m / (1 - b1**t)) / (np.sqrt(v / (1 - b2**t)) + eps) + wd * w
        w = w - lr * (np.linalg.norm(w) / np.linalg.norm(u)) * u
        np.testing.assert_allclose(p.detach().numpy(), w, rtol=1e-10, atol=1e-12)


def test_lamb_trust_ratio_is_one_for_zero_weights():
    p = torch.nn.Parameter(torch.zeros(3, dtype=torch.float64))
    p.grad = torch.tensor([1.0, -2.0, 0.5], dtype=torch.float64)
    LAMB([p], lr=0.1, eps=0.0).step()
    # first step: m̂/√v̂ = sign(g), trust ratio 1 (‖w‖ = 0)
    np.testing.assert_allclose(p.detach().numpy(), [-0.1, 0.1, -0.1])


def lamb_reference(w, g, m, v, t, lr, betas, eps, wd):
    """The LAMB docstring's formula for one parameter, in float64 numpy: returns the new (w, m, v)."""
    b1, b2 = betas
    m = b1 * m + (1 - b1) * g
    v = b2 * v + (1 - b2) * g * g
    u = (m / (1 - b1**t)) / (np.sqrt(v / (1 - b2**t)) + eps) + wd * w
    w_norm, u_norm = np.linalg.norm(w), np.linalg.norm(u)
    r = w_norm / u_norm if w_norm > 0 and u_norm > 0 else 1.0
    return w - lr * r * u, m, v


@pytest.mark.parametrize("dtype, rtol", [(torch.float64, 1e-12), (torch.float32, 2e-5)])
def test_lamb_matches_reference_over_steps(dtype, rtol):
    """Two groups (decay / none), a zero-norm weight, a zero gradient, a skipped gradient, 0-d and 2-d shapes."""
    rng = np.random.default_rng(0)
    init = {
        "w": rng.normal(size=(4, 3)),
        "zero": np.zeros((5,)),  # ‖w‖ = 0 at the first step: trust ratio 1
        "scalar": np.array(0.7),
        "frozen_grad": rng.normal(size=(2, 2)),  # zero gradient, no decay: ‖u‖ = 0, unchanged
        "sometimes": rng.normal(size=(3,)),  # no gradient at step 2: skipped, its step count lags
    }
    params = {k: torch.nn.Parameter(torch.tensor(v, dtype=dtype)) for k, v in init.items()}
    lr, betas, eps, wd = 0.05, (0.9, 0.99), 1e-6, 0.1
    opt = LAMB(
        [
            {"params": [params["w"], params["zero"], params["sometimes"]], "weight_decay": wd},
            {"params": [params["scalar"], params["frozen_grad"]], "weight_decay": 0.0},
        ],
        lr=lr,
        betas=betas,
        eps=eps,
    )
    decay = {"w": wd, "zero": wd, "sometimes": wd, "scalar": 0.0, "frozen_grad": 0.0}
    ref = {k: (v.copy(), np.zeros_like(v), np.zeros_like(v), 0) for k, v in init.items()}
    for step in range(1, 5):
        for k, p in params.items():
            if k == "sometimes" and step == 2:
                p.grad = None
                continue
            g = np.zeros_like(init[k]) if k == "frozen_grad" else rng.normal(size=init[k].shape)
            p.grad = torch.tensor(g, dtype=dtype)
            w, m, v, t = ref[k]
            ref[k] = (*lamb_reference(w, g, m, v, t + 1, lr, betas, eps, decay[k]), t + 1)
        opt.step()
        for k, p in params.items():
            assert p.dtype == dtype
            np.testing.assert_allclose(p.detach().numpy(), ref[k][0], rtol=rtol, atol=rtol * 1e-2, err_msg=k)
            np.testing.assert_allclose(opt.state[p]["exp_avg"].numpy(), ref[k][1], rtol=rtol, atol=1e-12)
            assert float(opt.state[p]["step"]) == ref[k][3]
    assert torch.equal(params["frozen_grad"], torch.tensor(init["frozen_grad"], dtype=dtype))


def test_lamb_step_has_no_host_syncs():
    """Meta tensors have no values: any ``.item()`` / ``bool()`` / ``float()`` on them raises."""
    ps = [torch.nn.Parameter(torch.empty(4, 3, device="meta")), torch.nn.Parameter(torch.empty(5, device="meta"))]
    for p in ps:
        p.grad = torch.empty_like(p)
    opt = LAMB([{"params": ps[:1], "weight_decay": 0.1}, {"params": ps[1:]}], lr=0.1)
    opt.step()
    opt.step()
    assert all(float(opt.state[p]["step"]) == 2 for p in ps)


def test_lamb_low_precision_params_keep_float32_moments():
    p = torch.nn.Parameter(torch.randn(4, 4, dtype=torch.bfloat16))
    p.grad = torch.randn(4, 4, dtype=torch.bfloat16)
    opt = LAMB([p], lr=0.01, weight_decay=0.1)
    opt.step()
    assert p.dtype == torch.bfloat16 and opt.state[p]["exp_avg"].dtype == torch.float32
    again = LAMB([p], lr=0.01, weight_decay=0.1)
    again.load_state_dict(opt.state_dict())  # casts the moments to bfloat16 ...
    again.step()  # ... the step brings them back to float32
    assert p.dtype == torch.bfloat16 and again.state[p]["exp_avg"].dtype == torch.float32
    assert float(again.state[p]["step"]) == 2


@pytest.mark.parametrize("name", ["mlm", "image-classification", "text-classification"])
def test_weight_decay_groups(name):
    model = get_task_class(name)(build_config(name)).build_model()
    decay, skip = param_groups(model, 0.1)
    assert decay["weight_decay"] == 0.1 and skip["weight_decay"] == 0.0
    ids = {id(p) for p in skip["params"]}
    names = {n: id(p) in ids for n, p in model.named_parameters()}
    assert len(decay["params"]) + len(skip["params"]) == len(names)
    for n, p in model.named_parameters():
        embedding = n.endswith(".embeddings")  # latents, position embeddings, learned queries
        assert names[n] == (p.ndim < 2 or embedding), n
    assert names["encoder.latents.embeddings"] and names["head.query_builder.embedding.embeddings"]
    assert not names["encoder.self_attention.0.attention.q_proj.weight"]
    assert names["encoder.cross_attention.q_norm.weight"] and names["encoder.cross_attention.attention.q_proj.bias"]
    if name == "mlm":
        assert names["input_adapter.position_embedding.embeddings"]
        assert not names["input_adapter.token_embedding.weight"]


def test_warmup_cosine_values():
    assert warmup_cosine(0, 10, 110) == pytest.approx(0.1)
    assert warmup_cosine(4, 10, 110) == pytest.approx(0.5)
    assert warmup_cosine(9, 10, 110) == pytest.approx(1.0)
    assert warmup_cosine(10, 10, 110) == pytest.approx(1.0)
    assert warmup_cosine(60, 10, 110, 0.1) == pytest.approx(0.1 + 0.9 * 0.5)
    assert warmup_cosine(35, 10, 110) == pytest.approx(0.5 * (1 + math.cos(math.pi * 0.25)))
    assert warmup_cosine(110, 10, 110, 0.1) == pytest.approx(0.1)
    assert warmup_cosine(500, 10, 110, 0.1) == pytest.approx(0.1)
    assert warmup_cosine(0, 0, 10) == pytest.approx(1.0)


# -- resume -------------------------------------------------------------------------------


@pytest.mark.parametrize("optimizer", ["adamw", "lamb"])
def test_resume_reproduces_uninterrupted_run(tmp_path, optimizer):
    corpus = write_corpus(tmp_path / "corpus.txt")
    full = fit(tiny_mlm(corpus, tmp_path / "full", **{"train.optimizer": optimizer}))
    part = fit(tiny_mlm(corpus, tmp_path / "part", **{"train.optimizer": optimizer, "train.stop_after_steps": 3}))
    assert sorted(part.losses) == [1, 2, 3]
    assert [c.name for c in list_checkpoints(tmp_path / "part" / "checkpoints")] == ["step-00000003.pt"]
    rest = fit(tiny_mlm(corpus, tmp_path / "part", **{"train.optimizer": optimizer}))  # auto-resumes
    assert sorted(rest.losses) == [4, 5, 6]
    for step in range(1, 7):
        got = part.losses.get(step, rest.losses.get(step))
        assert got == pytest.approx(full.losses[step], abs=1e-6), step
    a, b = full.model.state_dict(), rest.model.state_dict()
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=0, atol=1e-6)
    rows = (tmp_path / "part" / "metrics.csv").read_text().splitlines()
    assert sum(",train,loss," in r for r in rows) == 6  # no duplicated steps after resume


def test_sigkill_then_resume(tmp_path):
    corpus = write_corpus(tmp_path / "corpus.txt")
    run = tmp_path / "run"
    args = as_args(tiny_mlm(corpus, run, **{"train.max_steps": 400, "train.checkpoint_every": 1}))
    cmd = [sys.executable, "-m", "perceiver_io.cli", "train", "mlm", *args]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env)
    ckpts = run / "checkpoints"
    deadline = time.time() + 60
    while time.time() < deadline and proc.poll() is None:
        if any(int(p.name[5:13]) >= 3 for p in list_checkpoints(ckpts)):
            break
        time.sleep(0.05)
    assert proc.poll() is None, proc.stderr.read().decode()[-2000:]
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    saved = list_checkpoints(ckpts)
    assert saved
    for p in saved:  # every checkpoint under its final name is complete
        assert load_checkpoint(p)["step"] == int(p.name[5:13])
    last = int(saved[-1].name[5:13])
    # resume to a nearby end (same schedule: max_steps is unchanged, stop early)
    res = CliRunner().invoke(app, ["train", "mlm", "--resume", str(run), f"train.stop_after_steps={last + 2}"])
    assert res.exit_code == 0, res.output
    assert f"resumed from {saved[-1]} at step {last}" in res.output
    assert not list(ckpts.glob("*.tmp")) and not list(ckpts.glob(".*"))
    assert load_checkpoint(list_checkpoints(ckpts)[-1])["step"] == last + 2


# -- DDP ----------------------------------------------------------------------------------


def test_ddp_two_processes_match_one_process(tmp_path):
    corpus = write_corpus(tmp_path / "corpus.txt")
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    common = {"train.max_steps": 4, "train.checkpoint_every": 4}
    # one process, global batch 8 in 2 accumulation steps  vs  2 processes × 4 examples
    single = as_args(tiny_mlm(corpus, tmp_path / "one", **common, **{"train.grad_accum_steps": 2}))
    double = as_args(tiny_mlm(corpus, tmp_path / "two", **common, **{"train.grad_accum_steps": 1}))
    port = free_port()
    r1 = subprocess.Popen([sys.executable, "-m", "perceiver_io.cli", "train", "mlm", *single], env=env,
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT)  # fmt: skip
    launcher = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", f"--master_port={port}"]
    r2 = subprocess.run([*launcher, "-m", "perceiver_io.cli", "train", "mlm", *double], env=env,
                        capture_output=True, text=True, timeout=240)  # fmt: skip
    out1 = r1.communicate(timeout=240)[0].decode()
    assert r1.returncode == 0, out1[-2000:]
    assert r2.returncode == 0, (r2.stdout + r2.stderr)[-3000:]
    from perceiver_io.checkpoints import from_pretrained

    a = from_pretrained(tmp_path / "one" / "model").state_dict()
    b = from_pretrained(tmp_path / "two" / "model").state_dict()
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=0, atol=1e-5)
    # and the parameters did move (the comparison is not vacuous)
    torch.manual_seed(0)  # the trainer seeds with train.seed before building the model
    init = get_task_class("mlm")(build_config("mlm", overrides=tiny_mlm(corpus, tmp_path / "x"))).build_model()
    moved = max(float((a[k] - v).abs().max()) for k, v in init.state_dict().items())
    assert moved > 1e-4


# -- errors -------------------------------------------------------------------------------


def test_bad_config_errors():
    cfg = build_config("mlm")
    with pytest.raises(ConfigError, match=r"unknown config key 'train\.max_step'; did you mean 'train\.max_steps'"):
        apply_overrides(cfg, {"train.max_step": 3})
    with pytest.raises(ConfigError, match=r"'train\.max_steps' expects int, got 'abc'"):
        apply_overrides(cfg, {"train.max_steps": "abc"})
    with pytest.raises(ConfigError, match=r"'train\.optimizer'"):
        apply_overrides(cfg, {"train.optimizer": 3})
    with pytest.raises(ConfigError, match="'train.optimizer' expects one of 'adamw', 'lamb', got 'sgd'"):
        apply_overrides(cfg, {"train.optimizer": "sgd"})
    with pytest.raises(ConfigError, match="unknown task"):
        build_config("nope")


@pytest.mark.parametrize(
    "args, needle",
    [
        (["train.max_steps=abc"], "error: config key 'train.max_steps' expects int, got 'abc' (str)"),
        (["model.encoder.num_latent=3"], "error: unknown config key 'model.encoder.num_latent'"),
        (["oops"], "error: override 'oops' is not of the form key=value"),
        (["data.corpus=/no/such/corpus", "data.fallback_corpus=null"], "error: corpus '/no/such/corpus'"),
    ],
)
def test_cli_config_errors_are_one_line(args, needle, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # the default run directory is ./runs/...
    res = CliRunner().invoke(app, ["train", "mlm", *args])
    assert res.exit_code != 0
    lines = [ln for ln in res.output.splitlines() if ln.startswith("error:")]
    assert len(lines) == 1 and lines[0].startswith(needle), res.output
    assert not any((tmp_path / "runs").glob("*")), "a run that failed to start left its directory behind"


def test_corrupted_checkpoint_errors(tmp_path):
    corpus = write_corpus(tmp_path / "corpus.txt")
    run = tmp_path / "run"
    fit(tiny_mlm(corpus, run, **{"train.max_steps": 3}))
    ckpt = list_checkpoints(run / "checkpoints")[-1]
    data = ckpt.read_bytes()
    ckpt.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="is damaged: its sha256 is"):
        load_checkpoint(ckpt)
    (ckpt.parent / (ckpt.name + ".sha256")).unlink()  # without its checksum: the reader names the damage
    with pytest.raises(CheckpointError, match="unreadable or corrupted"):
        load_checkpoint(ckpt)
    with pytest.raises(CheckpointError, match=str(ckpt)):
        fit(tiny_mlm(corpus, run, **{"train.max_steps": 3}))
    res = CliRunner().invoke(app, ["train", "mlm", "--resume", str(ckpt)])
    assert res.exit_code == 1 and res.output.strip().startswith("error: checkpoint") and "corrupted" in res.output
    (tmp_path / "junk.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError):
        load_checkpoint(tmp_path / "junk.pt")
    with pytest.raises(CheckpointError, match="does not exist"):
        load_checkpoint(tmp_path / "missing.pt")
