"""Scale-out: FSDP2 = DDP = one process, DCP checkpoints resumed on other world sizes, consolidation,
multi-node over two network namespaces, and a SIGKILLed worker restarted by ``torchrun``."""

from __future__ import annotations

import contextlib
import csv
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from torch import nn

from net import free_port
from perceiver_io.checkpoints import from_pretrained
from perceiver_io.registry import list_models
from perceiver_io.training.checkpoint import CheckpointError, list_checkpoints, remove_stale_temporaries
from perceiver_io.training.parallel import shardable_blocks
from perceiver_io.training.sharded_checkpoint import load_sharded, save_sharded
from test_training import as_args, tiny_mlm, write_corpus

ROOT = Path(__file__).resolve().parents[1]
ENV = {**os.environ, "OMP_NUM_THREADS": "1"}
# num_blocks 2: the self-attention layer runs twice with shared weights (sharded once, gathered twice)
SHARED = {"model.encoder.num_blocks": 2, "train.max_steps": 4, "train.checkpoint_every": 2}


def cli(args: list[str], nproc: int = 1, timeout: int = 240, extra: list[str] = ()) -> subprocess.CompletedProcess:
    """``perceiver-io ARGS`` in one process, or under ``torchrun --nproc-per-node NPROC``."""
    cmd = [sys.executable, "-m", "perceiver_io.cli", *args]
    if nproc > 1:
        launch = [
            sys.executable,
            "-m",
            "torch.distributed.run",
            f"--nproc-per-node={nproc}",
            f"--master-port={free_port()}",
        ]
        cmd = [*launch, *extra, "-m", "perceiver_io.cli", *args]
    res = subprocess.run(cmd, env=ENV, capture_output=True, text=True, timeout=timeout)
    assert res.returncode == 0, (res.stdout + res.stderr)[-4000:]
    return res


def train_losses(run: Path) -> dict[int, float]:
    with (run / "metrics.csv").open() as f:
        return {
            int(r["step"]): float(r["value"])
            for r in csv.DictReader(f)
            if r["split"] == "train" and r["metric"] == "loss"
        }


def weights(path: Path) -> dict[str, torch.Tensor]:
    return from_pretrained(path).state_dict()


def assert_same_run(a: Path, b: Path, atol: float) -> None:
    la, lb = train_losses(a), train_losses(b)
    assert la.keys() == lb.keys()
    for step in la:
        assert la[step] == pytest.approx(lb[step], rel=1e-5), (step, la[step], lb[step])
    wa, wb = weights(a / "model"), weights(b / "model")
    for k in wa:
        # an attention key bias shifts every logit of a query equally, so its exact gradient is zero and Adam
        # turns the float noise into steps of up to ~lr each: runs that sum gradients in another order may
        # differ by up to lr · steps there (4 steps at lr 1e-3 in these tests)
        tol = 4e-3 if k.endswith("k_proj.bias") else atol
        torch.testing.assert_close(wa[k], wb[k], rtol=0, atol=tol, msg=lambda m, k=k: f"{k}: {m}")


# -- which modules are sharded -------------------------------------------------------------------


@pytest.mark.parametrize("name", [n for n in list_models() if n.startswith("test-")])
def test_every_tiny_model_shards_its_attention_blocks_once(name):
    from perceiver_io import create_model

    model = create_model(name)
    blocks = shardable_blocks(model)
    assert blocks, f"{name}: no attention block to shard"
    ids = [id(m) for _, m in blocks]
    assert len(ids) == len(set(ids))
    inside = {id(p) for _, m in blocks for p in m.parameters()}
    # no block's parameters also belong to another block (a tied weight would be sharded twice)
    assert sum(sum(1 for _ in m.parameters()) for _, m in blocks) == len(inside)


def test_a_shared_self_attention_layer_is_one_block():
    from perceiver_io.encoder import PerceiverEncoder, tiny_encoder

    enc = PerceiverEncoder(tiny_encoder(num_blocks=4, num_self_attends_per_block=2), num_input_channels=8)
    names = [n for n, _ in shardable_blocks(enc)]
    assert names == ["cross_attention", "self_attention.0", "self_attention.1"]


# -- DCP checkpoints in one process ----------------------------------------------------------------


def _tiny_module() -> tuple[nn.Module, torch.optim.Optimizer]:
    model = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 2))
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2)
    model(torch.randn(3, 4)).sum().backward()
    opt.step()
    return model, opt


def test_sharded_checkpoint_round_trip_and_damage(tmp_path):
    torch.manual_seed(0)
    model, opt = _tiny_module()
    path = save_sharded(tmp_path / "step-00000001", model, opt, {"step": 1, "note": "x"})
    assert list_checkpoints(tmp_path) == [path] and not list(tmp_path.glob(".*"))
    torch.manual_seed(1)
    other, other_opt = _tiny_module()
    assert load_sharded(path, other, other_opt) == {"step": 1, "note": "x"}
    for k, v in model.state_dict().items():
        torch.testing.assert_close(other.state_dict()[k], v, rtol=0, atol=0)
    s1, s2 = opt.state_dict()["state"][0], other_opt.state_dict()["state"][0]
    torch.testing.assert_close(s2["exp_avg_sq"], s1["exp_avg_sq"], rtol=0, atol=0)
    # a damaged shard is named
    shard = next(path.glob("*.distcp"))
    data = bytearray(shard.read_bytes())
    data[-8] ^= 0xFF
    shard.write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match=r"is damaged: __0_0\.distcp's sha256"):
        load_sharded(path, other, other_opt)


def test_a_killed_sharded_write_leaves_nothing_that_looks_complete(tmp_path):
    """What a kill mid-write leaves is the temporary directory (never ``step-N``): not listed, and removed."""
    model, opt = _tiny_module()
    save_sharded(tmp_path / "step-00000002", model, opt, {"step": 2})
    partial = tmp_path / ".step-00000004.dcp.tmp"
    shutil.copytree(tmp_path / "step-00000002", partial)
    (partial / "trainer.pt").unlink()
    assert [p.name for p in list_checkpoints(tmp_path)] == ["step-00000002"]
    assert remove_stale_temporaries(tmp_path) == [partial] and not partial.exists()
    incomplete = tmp_path / "step-00000003"  # a directory with the final name but no trainer state
    incomplete.mkdir()
    with pytest.raises(CheckpointError, match="not a complete sharded checkpoint"):
        load_sharded(incomplete, model, opt)


# -- equivalence across strategies and world sizes --------------------------------------------------


def test_fsdp_ddp_and_one_process_train_the_same_model(tmp_path):
    """Same global batch of 8: one process (2 micro-batches), DDP on 2, FSDP2 on 2 (2 micro-batches each,
    so gradient sync is deferred, plus activation checkpointing). Then the FSDP run's step-2 sharded
    checkpoint resumes on 1 and on 4 processes and ends where the uninterrupted run ends."""
    corpus = write_corpus(tmp_path / "corpus.txt")

    def args(run: str, **extra) -> list[str]:
        return ["train", "mlm", *as_args(tiny_mlm(corpus, tmp_path / run, **SHARED, **extra))]

    cli(args("one", **{"train.grad_accum_steps": 2}))
    cli(args("ddp"), nproc=2)
    out = cli(
        args("fsdp", **{"train.strategy": "fsdp", "train.grad_accum_steps": 2, "train.activation_checkpointing": True}),
        nproc=2,
    ).stdout
    assert "[fsdp, sharded]" in out
    ck = tmp_path / "fsdp" / "checkpoints" / "step-00000002"
    assert sorted(p.name for p in ck.iterdir()) == [
        ".metadata",
        "SHA256SUMS",
        "__0_0.distcp",
        "__1_0.distcp",
        "trainer.pt",
    ]
    # weights agree to 1e-4 (attention key biases: see assert_same_run) while losses agree to 1e-5 relative
    assert_same_run(tmp_path / "one", tmp_path / "ddp", atol=1e-4)
    assert_same_run(tmp_path / "ddp", tmp_path / "fsdp", atol=1e-4)
    for n in (1, 4):
        run = tmp_path / f"resume{n}"
        (run / "checkpoints").mkdir(parents=True)
        shutil.copytree(ck, run / "checkpoints" / ck.name)
        shutil.copy(tmp_path / "fsdp" / "config.json", run / "config.json")
        (run / "metrics.csv").write_text((tmp_path / "fsdp" / "metrics.csv").read_text())
        strategy = "fsdp" if n > 1 else "single"
        res = cli(["train", "mlm", "--resume", str(run), f"train.strategy={strategy}"], nproc=n)
        assert f"resumed from {run / 'checkpoints' / ck.name} at step 2" in res.stdout
        assert_same_run(tmp_path / "fsdp", run, atol=1e-4)
    # a sharded checkpoint becomes a plain model directory
    res = cli(["consolidate", str(tmp_path / "fsdp" / "checkpoints" / "step-00000004"), "-o", str(tmp_path / "plain")])
    assert "wrote" in res.stdout
    for k, v in weights(tmp_path / "fsdp" / "model").items():
        torch.testing.assert_close(weights(tmp_path / "plain")[k], v, rtol=0, atol=0)


def test_perceiver_ar_under_fsdp_equals_ddp(tmp_path):
    """Perceiver AR's encoder calls its cross-attention's ``keys_values`` outside ``forward``: registered
    as an FSDP forward method, the sharded run computes what DDP computes."""
    corpus = write_corpus(tmp_path / "corpus.txt")
    common = [
        f"data.corpus={corpus}", "data.fallback_corpus=null", "data.seq_len=64", "data.eval_windows=4",
        "data.sample_tokens=4", "data.num_samples=1", "model.num_latents=16", "model.num_input_channels=32",
        "model.num_latent_channels=32", "model.num_self_attention_layers=2", "model.num_cross_attention_heads=2",
        "model.num_self_attention_heads=2", "train.batch_size=4", "train.max_steps=3", "train.warmup_steps=1",
        "train.checkpoint_every=3", "train.log_every=1", "train.progress=false", "train.tensorboard=false",
        "train.plot=false",
    ]  # fmt: skip
    cli(["train", "clm", *common, f"train.run_dir={tmp_path / 'ddp'}"], nproc=2)
    cli(["train", "clm", *common, f"train.run_dir={tmp_path / 'fsdp'}", "train.strategy=fsdp"], nproc=2)
    assert_same_run(tmp_path / "ddp", tmp_path / "fsdp", atol=1e-5)


def test_fsdp_bf16_mixed_precision_policy_tracks_ddp_bf16(tmp_path):
    """precision=bf16 under FSDP2: bf16 parameters all-gathered, fp32 gradient reduction; DDP runs bf16 autocast
    over fp32 weights. Same run to bf16 accuracy."""
    corpus = write_corpus(tmp_path / "corpus.txt")
    o = {**SHARED, "train.precision": "bf16"}
    cli(["train", "mlm", *as_args(tiny_mlm(corpus, tmp_path / "ddp", **o))], nproc=2)
    cli(["train", "mlm", *as_args(tiny_mlm(corpus, tmp_path / "fsdp", **o, **{"train.strategy": "fsdp"}))], nproc=2)
    la, lb = train_losses(tmp_path / "ddp"), train_losses(tmp_path / "fsdp")
    for step in la:
        assert lb[step] == pytest.approx(la[step], rel=2e-2), (step, la[step], lb[step])
    assert weights(tmp_path / "fsdp" / "model")["encoder.latents.embeddings"].dtype == torch.float32


def test_fsdp_refuses_a_whole_model_checkpoint_with_advice(tmp_path):
    corpus = write_corpus(tmp_path / "corpus.txt")
    run = tmp_path / "run"
    o = {"train.max_steps": 4, "train.checkpoint_every": 2, "train.stop_after_steps": 2}
    cli(["train", "mlm", *as_args(tiny_mlm(corpus, run, **o))])
    cmd = ["train", "mlm", "--resume", str(run), "train.strategy=fsdp", "train.stop_after_steps=null"]
    launch = [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node=2", f"--master-port={free_port()}"]
    res = subprocess.run(
        [*launch, "-m", "perceiver_io.cli", *cmd], env=ENV, capture_output=True, text=True, timeout=120
    )
    assert res.returncode != 0
    assert "resume it with train.strategy=ddp or single" in res.stdout + res.stderr


# -- multi-node and fault tolerance ------------------------------------------------------------------


def _can_make_namespaces() -> str | None:
    if shutil.which("ip") is None:
        return "the ip command (iproute2) is not installed"
    name = f"pio-probe-{os.getpid()}"
    res = subprocess.run(["ip", "netns", "add", name], capture_output=True, text=True)
    if res.returncode != 0:
        return f"cannot create network namespaces here ({res.stderr.strip() or 'ip netns add failed'})"
    subprocess.run(["ip", "netns", "del", name], capture_output=True)
    return None


def test_two_nodes_in_two_network_namespaces_train_like_one_process(tmp_path):
    why = _can_make_namespaces()
    if why:
        pytest.skip(why)
    corpus = write_corpus(tmp_path / "corpus.txt")
    o = {**SHARED, "train.grad_accum_steps": 2}
    cli(["train", "mlm", *as_args(tiny_mlm(corpus, tmp_path / "one", **o))])
    two = as_args(tiny_mlm(corpus, tmp_path / "two", **SHARED))
    res = subprocess.run(
        ["bash", str(ROOT / "scripts" / "two_nodes.sh"), "-m", "perceiver_io.cli", "train", "mlm", *two],
        env={**ENV, "PYTHON": sys.executable}, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    out = res.stdout + res.stderr
    assert res.returncode == 0, out[-4000:]
    assert "on 2 × cpu" in out  # world size 2, one process per "node"
    assert_same_run(tmp_path / "one", tmp_path / "two", atol=1e-4)


def _worker_pids(launcher: subprocess.Popen) -> dict[int, int]:
    """``{rank: pid}`` of the workers a torchrun process started (read from their environments)."""
    found = {}
    for p in Path("/proc").iterdir():
        if not p.name.isdigit():
            continue
        try:
            env = dict(x.split("=", 1) for x in (p / "environ").read_text().split("\0") if "=" in x)
            parent = int((p / "stat").read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, ValueError, IndexError):
            continue
        if parent == launcher.pid and "RANK" in env and "TORCHELASTIC_RUN_ID" in env:
            found[int(env["RANK"])] = int(p.name)
    return found


@pytest.mark.timeout(900)  # two attempts of up to 180 s + 150 s each, plus the clean run, on a loaded machine
def test_a_sigkilled_worker_is_restarted_and_the_run_ends_as_if_uninterrupted(tmp_path):
    if not Path("/proc/self/environ").exists():
        pytest.skip("needs /proc to find the workers")
    corpus = write_corpus(tmp_path / "corpus.txt")
    o = {"train.max_steps": 60, "train.checkpoint_every": 5, "train.strategy": "fsdp"}
    cli(["train", "mlm", *as_args(tiny_mlm(corpus, tmp_path / "clean", **o))], nproc=2)
    launch = [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node=2", "--max-restarts=4",
              f"--master-port={free_port()}", "-m", "perceiver_io.cli", "train", "mlm"]  # fmt: skip

    def attempt(run: Path) -> tuple[bool, str | None]:
        """Start the job, SIGKILL rank 1 after its 10th step, wait: ``(killed, output)``; output None on a hang."""
        proc = subprocess.Popen([*launch, *as_args(tiny_mlm(corpus, run, **o))], env=ENV, stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, text=True, start_new_session=True)  # fmt: skip
        killed, deadline = False, time.time() + 180
        while not killed and proc.poll() is None and time.time() < deadline:
            steps = [int(p.name[5:13]) for p in list_checkpoints(run / "checkpoints")]
            pids = _worker_pids(proc) if steps and 10 <= max(steps) < 50 else {}
            if 1 in pids:
                os.kill(pids[1], signal.SIGKILL)
                killed = True
            time.sleep(0.02)
        try:
            out = proc.communicate(timeout=150)[0]
        except subprocess.TimeoutExpired:
            workers = _worker_pids(proc)  # torchrun may start its workers outside its process group
            os.killpg(proc.pid, signal.SIGKILL)
            for pid in workers.values():
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
            try:
                print("the restarted job did not finish in 150 s:\n" + proc.communicate(timeout=30)[0][-6000:])
            except subprocess.TimeoutExpired:  # something still holds the pipe: stop reading it
                proc.kill()
                print("the restarted job did not finish in 150 s, and its output could not be read")
            return killed, None
        assert proc.returncode == 0, out[-4000:]
        return killed, out

    # timing-dependent: a job that hangs after the kill is retried once (its output is printed above)
    run = tmp_path / "killed"
    killed, out = attempt(run)
    if out is None:
        run = tmp_path / "killed-again"
        killed, out = attempt(run)
    assert out is not None, "the restarted job hung twice"
    assert killed, "the run ended before a worker could be killed: make it longer"
    assert "resumed from" in out, out[-3000:]
    assert_same_run(tmp_path / "clean", run, atol=1e-5)
