"""The training loop: plain PyTorch, one file.

Batches are a pure function of ``(seed, step)``: step ``s`` takes positions ``[s·B, (s+1)·B)`` of
epoch ``s // steps_per_epoch``'s permutation (seeded by ``seed`` and the epoch), rank ``r`` takes
its contiguous ``B / world_size`` slice, and every example gets its own random seed from
``(seed, step, position in the global batch)`` for the task's ``collate`` (masking etc.).
Resuming from a checkpoint therefore reproduces the uninterrupted run exactly, and ``N``
processes compute the same update as one process with the same global batch (the loss is
summed per unit and divided by the *global* count of units).

``train.strategy`` picks how several processes share the work (:mod:`.parallel`): ``ddp``
replicates the model, ``fsdp`` shards parameters, gradients and optimizer state with FSDP2 and
checkpoints with DCP (:mod:`.sharded_checkpoint`), which resumes on any number of processes.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import torch
from torch import nn

from perceiver_io.checkpoints import upgrade_state_dict
from perceiver_io.config import Config, ConfigError
from perceiver_io.training.checkpoint import (
    CheckpointError,
    checkpoint_path,
    latest_checkpoint,
    list_checkpoints,
    load_checkpoint,
    remove_checkpoint,
    remove_stale_temporaries,
    rng_state,
    save_checkpoint,
    set_rng_state,
)
from perceiver_io.training.distributed import (
    DistInfo,
    all_reduce_sum,
    barrier,
    broadcast_object,
    cleanup_distributed,
    raise_on_all_ranks,
    setup_distributed,
)
from perceiver_io.training.logging import MetricLogger
from perceiver_io.training.optim import build_optimizer
from perceiver_io.training.parallel import (
    Strategy,
    full_state_dict,
    grad_norm_value,
    gradient_sync,
    is_sharded,
    resolve_strategy,
    shard,
    wrap_ddp,
)
from perceiver_io.training.rundir import RunDirError, RunLock, check_run_dir, new_run_dir
from perceiver_io.training.schedule import build_scheduler
from perceiver_io.training.sharded_checkpoint import is_sharded_checkpoint, load_sharded, save_sharded

__all__ = ["TrainConfig", "Trainer", "TrainResult", "default_run_dir"]


@dataclass
class TrainConfig(Config):
    """Optimisation and bookkeeping. ``batch_size`` is the *global* number of examples per optimizer step."""

    seed: int = 0
    max_steps: int = 1000
    batch_size: int = 64
    grad_accum_steps: int = 1
    optimizer: Literal["adamw", "lamb"] = "adamw"
    lr: float = 1e-3
    min_lr_ratio: float = 0.1
    warmup_steps: int = 100
    weight_decay: float = 0.01
    betas: tuple[float, float] = (0.9, 0.999)
    eps: float = 1e-8
    grad_clip: float = 1.0
    precision: Literal["fp32", "bf16", "fp16"] = "fp32"
    compile: bool = False
    activation_checkpointing: bool = False
    device: str = "auto"
    strategy: Strategy = "auto"
    num_threads: int | None = None  # None: the idle cores (see auto_threads)
    eval_every: int = 0
    eval_batches: int | None = None
    checkpoint_every: int = 100
    keep_checkpoints: int = 2
    log_every: int = 10
    run_dir: str | None = None
    runs_root: str = "runs"
    resume: bool = True
    resume_from: str | None = None
    allow_config_change: bool = False
    stop_after_steps: int | None = None
    progress: bool = True
    tensorboard: bool = True
    plot: bool = True
    save_model: bool = True

    def validate(self) -> None:
        self._positive("max_steps", "batch_size", "grad_accum_steps", "log_every", "checkpoint_every")
        self._positive("num_threads", "eval_batches", "stop_after_steps", allow_none=True)
        for name in ("lr", "weight_decay", "eps", "grad_clip", "min_lr_ratio"):
            v = getattr(self, name)
            if not isinstance(v, (int, float)) or isinstance(v, bool) or not 0 <= v < float("inf"):
                raise ConfigError(f"TrainConfig.{name} must be a finite non-negative number, got {v!r}")
        if self.min_lr_ratio > 1:
            raise ConfigError(
                f"TrainConfig.min_lr_ratio must be in [0, 1] (a fraction of lr), got {self.min_lr_ratio!r}"
            )
        if len(self.betas) != 2 or not all(isinstance(b, (int, float)) and 0 <= b < 1 for b in self.betas):
            raise ConfigError(f"TrainConfig.betas must be two numbers in [0, 1), got {self.betas!r}")
        for name in ("warmup_steps", "eval_every", "keep_checkpoints"):
            v = getattr(self, name)
            if not isinstance(v, int) or v < 0:
                raise ConfigError(f"TrainConfig.{name} must be a non-negative integer, got {v!r}")
        if self.batch_size % self.grad_accum_steps:
            raise ConfigError(
                f"TrainConfig.batch_size ({self.batch_size}) must be divisible by grad_accum_steps "
                f"({self.grad_accum_steps})"
            )


@dataclass
class TrainResult:
    run_dir: Path
    step: int
    losses: dict[int, float] = field(default_factory=dict)
    metrics: dict[str, float] = field(default_factory=dict)
    model: nn.Module | None = None


def default_run_dir(task: str, root: str = "runs") -> Path:
    """A new, uniquely named run directory (created): ``root/<task>-<timestamp>-<4 hex>``."""
    return new_run_dir(task, root)


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError as e:
        raise ConfigError(f"train.device: {e}") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"train.device={name}: CUDA is not available (no GPU or a CPU build of torch); use cpu")
    return device


def auto_threads() -> int:
    """CPU threads for this process: the cores not already busy (1-minute load average), split among the
    ``torchrun`` processes on this machine; at least 1. Oversubscribed OpenMP threads slow CPU training several-fold.
    """
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:
        cores = os.cpu_count() or 1
    local = int(os.environ.get("LOCAL_WORLD_SIZE", "1"))
    busy = os.getloadavg()[0] if hasattr(os, "getloadavg") and local == 1 else 0.0
    return max(1, min(cores, round(cores - busy + 0.4)) // local)


class Trainer:
    """``Trainer(task).fit()`` trains ``task.build_model()`` on ``task.train_data`` with ``task.config.train``."""

    def __init__(self, task, log: Callable[[str], None] | None = None) -> None:
        self.task = task
        self.cfg: TrainConfig = task.config.train
        self._log = log

    # -- helpers --------------------------------------------------------------------------
    def log(self, msg: str) -> None:
        if not self.dist.is_main:
            return
        if self._log is not None:
            self._log(msg)
        else:
            from tqdm.auto import tqdm

            tqdm.write(msg)

    def _autocast(self):
        c = self.cfg
        if c.precision == "fp32":
            return contextlib.nullcontext()
        dtype = torch.bfloat16 if c.precision == "bf16" else torch.float16
        return torch.autocast(device_type=self.device.type, dtype=dtype)

    def _epoch_perm(self, epoch: int) -> torch.Tensor:
        if self._perm_epoch != epoch:
            g = torch.Generator().manual_seed(self.cfg.seed * 1_000_003 + epoch)
            self._perm = torch.randperm(self.num_examples, generator=g)
            self._perm_epoch = epoch
        return self._perm

    def batch_plan(self, step: int) -> list[tuple[list[int], list[int]]]:
        """This rank's micro-batches of step ``step``: ``[(example indices, example seeds), ...]``."""
        c, w = self.cfg, self.dist.world_size
        b = c.batch_size
        epoch, offset = divmod(step, self.steps_per_epoch)
        idx = self._epoch_perm(epoch)[offset * b : (offset + 1) * b].tolist()
        seeds = [(c.seed * 2_147_483_647 + step * b + j) % (2**62) for j in range(b)]
        per_rank = b // w
        lo = self.dist.rank * per_rank
        idx, seeds = idx[lo : lo + per_rank], seeds[lo : lo + per_rank]
        m = per_rank // c.grad_accum_steps
        return [(idx[i : i + m], seeds[i : i + m]) for i in range(0, per_rank, m)]

    # -- main entry -----------------------------------------------------------------------
    def fit(self) -> TrainResult:
        c = self.cfg
        self.device = resolve_device(c.device)
        self.threads = c.num_threads or (auto_threads() if self.device.type == "cpu" else torch.get_num_threads())
        torch.set_num_threads(self.threads)
        if c.precision == "fp16" and self.device.type != "cuda":
            raise ConfigError("train.precision=fp16 needs a CUDA device (GradScaler); use bf16 on CPU")
        self.dist: DistInfo = setup_distributed(self.device, single_process_group=c.strategy == "fsdp")
        if self.device.type == "cuda" and torch.distributed.is_initialized():
            self.device = torch.device("cuda", self.dist.local_rank)
            torch.cuda.set_device(self.device)
        try:
            return self._fit()
        finally:
            cleanup_distributed()

    def _fit(self) -> TrainResult:
        c, task, d = self.cfg, self.task, self.dist
        if c.batch_size % (d.world_size * c.grad_accum_steps):
            raise ConfigError(
                f"train.batch_size ({c.batch_size}) must be divisible by world_size × grad_accum_steps "
                f"({d.world_size} × {c.grad_accum_steps})"
            )
        run_dir = None
        if d.is_main:
            run_dir = Path(c.run_dir) if c.run_dir else default_run_dir(task.name, c.runs_root)
        run_dir = Path(broadcast_object(str(run_dir)))
        self.run_dir = run_dir
        ckpt_dir = run_dir / "checkpoints"
        lock, error = None, None
        created = not c.run_dir or not run_dir.exists()  # default_run_dir makes a new, empty directory
        if d.is_main:
            try:
                lock = RunLock(run_dir).acquire()  # held until this run ends
            except RunDirError as e:
                error = str(e)
        raise_on_all_ranks(error, RunDirError)
        try:
            return self._fit_locked(run_dir, ckpt_dir)
        except BaseException:
            if lock is not None and created and {p.name for p in run_dir.iterdir()} == {".lock"}:
                lock.path.unlink()  # a run that failed before writing anything leaves no directory behind
                run_dir.rmdir()
            raise
        finally:
            if lock is not None:
                lock.release()

    def _fit_locked(self, run_dir: Path, ckpt_dir: Path) -> TrainResult:
        c, task, d = self.cfg, self.task, self.dist
        resume_path = Path(c.resume_from) if c.resume_from else (latest_checkpoint(ckpt_dir) if c.resume else None)
        resume_path = broadcast_object(resume_path)  # every rank resumes from the checkpoint rank 0 found
        error = None
        if d.is_main:
            try:
                check_run_dir(run_dir, task.name, task.config.to_dict(), resume_path is not None, c.allow_config_change)
            except RunDirError as e:
                error = str(e)
        raise_on_all_ranks(error, RunDirError)  # every rank stops, none waits in a barrier

        # data: rank 0 fetches, everyone loads
        if d.is_main:
            task.prepare_data()
        barrier()
        task.setup()
        self.num_examples = len(task.train_data)
        self.steps_per_epoch = self.num_examples // c.batch_size
        if self.steps_per_epoch == 0:
            raise ConfigError(
                f"train.batch_size ({c.batch_size}) is larger than the training set ({self.num_examples} examples)"
            )
        self._perm_epoch = -1

        torch.manual_seed(c.seed)
        model = task.build_model().to(self.device)
        self.strategy = resolve_strategy(c.strategy, d.world_size)
        if self.strategy == "fsdp" and torch.distributed.is_initialized():  # torchrun: shard, even over one rank
            bf16 = c.precision == "bf16"  # bf16 parameters (all-gathered in bf16), gradients reduced in fp32
            shard(model, param_dtype=torch.bfloat16 if bf16 else None, reduce_dtype=torch.float32 if bf16 else None)
        optimizer = build_optimizer(model, c.optimizer, c.lr, c.weight_decay, tuple(c.betas), c.eps)  # after shard
        scheduler = build_scheduler(optimizer, c.warmup_steps, c.max_steps, c.min_lr_ratio)
        scaler = torch.amp.GradScaler("cuda", enabled=c.precision == "fp16")

        # resume
        start_step = 0
        if d.is_main and ckpt_dir.is_dir():
            remove_stale_temporaries(ckpt_dir)
        if resume_path is not None and is_sharded_checkpoint(resume_path):
            state = load_sharded(resume_path, model, optimizer)
        elif resume_path is not None:
            if is_sharded(model):
                raise CheckpointError(
                    f"train.strategy=fsdp resumes from sharded checkpoints (directories); {str(resume_path)!r} is "
                    "a whole-model file: resume it with train.strategy=ddp or single"
                )
            state = load_checkpoint(resume_path)
            try:
                model.load_state_dict(upgrade_state_dict(state["model"], set(model.state_dict())))
                optimizer.load_state_dict(state["optimizer"])
            except (RuntimeError, ValueError, KeyError) as e:
                details = "; ".join(line.strip() for line in str(e).splitlines() if line.strip())  # every key
                raise CheckpointError(
                    f"checkpoint {str(resume_path)!r} does not match this model/optimizer: {details}"
                ) from None
        if resume_path is not None:
            scheduler.load_state_dict(state["scheduler"])
            if "scaler" in state and state["scaler"]:
                scaler.load_state_dict(state["scaler"])
            set_rng_state(state["rng"])
            start_step = int(state["step"])
            self.log(f"resumed from {resume_path} at step {start_step}")
        if d.is_main:
            run_dir.mkdir(parents=True, exist_ok=True)
            (run_dir / "config.json").write_text(
                json.dumps({"task": task.name, "config": task.config.to_dict()}, indent=2)
            )
        logger = MetricLogger(run_dir, c.tensorboard, resume_step=start_step) if d.is_main else None

        net: nn.Module = wrap_ddp(model, self.device) if self.strategy == "ddp" else model
        if c.compile:
            net = torch.compile(net)

        stop = min(c.max_steps, c.stop_after_steps or c.max_steps)
        n_params = sum(p.numel() for p in model.parameters())
        self.log(
            f"task {task.name}: {n_params:,} parameters, {self.num_examples:,} training examples, "
            f"{stop - start_step} steps × {c.batch_size} examples on {d.world_size} × {self.device} "
            f"[{self.strategy}{', sharded' if is_sharded(model) else ''}] "
            f"({self.threads} threads) -> {run_dir}"
        )
        losses: dict[int, float] = {}
        metrics: dict[str, float] = {}
        from tqdm.auto import tqdm

        bar = tqdm(
            total=stop, initial=start_step, unit="step", disable=not (d.is_main and c.progress), dynamic_ncols=True
        )
        model.train()
        t_last, ex_last = time.perf_counter(), 0
        for step in range(start_step, stop):
            plan = self.batch_plan(step)
            task.step = step
            batches = [task.collate([task.train_data[i] for i in idx], seeds) for idx, seeds in plan]
            counts = torch.tensor([float(sum(task.count(b) for b in batches))], dtype=torch.float64)
            global_count = float(all_reduce_sum(counts).item())
            if global_count == 0:
                raise RuntimeError(f"step {step}: the batch has no units to compute the loss on")
            scale = d.world_size / global_count
            loss_sum = torch.zeros((), dtype=torch.float64)
            for k, batch in enumerate(batches):
                batch = {key: v.to(self.device) for key, v in batch.items()}
                with gradient_sync(net, k == len(batches) - 1):
                    with self._autocast():
                        loss = task.loss(net, batch)
                    scaler.scale(loss.float() * scale).backward()
                loss_sum += loss.detach().double().cpu()
            if c.grad_clip > 0:
                scaler.unscale_(optimizer)
                grad_norm = grad_norm_value(torch.nn.utils.clip_grad_norm_(model.parameters(), c.grad_clip))
            else:
                grad_norm = float("nan")
            scaler.step(optimizer)
            scaler.update()
            lr = scheduler.get_last_lr()[0]
            scheduler.step()
            optimizer.zero_grad(set_to_none=True)
            step_loss = float(all_reduce_sum(loss_sum).item()) / global_count
            losses[step + 1] = step_loss
            ex_last += c.batch_size
            done = step + 1
            if not math.isfinite(step_loss):
                raise FloatingPointError(f"loss is {step_loss} at step {done}; lower train.lr or use fp32")

            if d.is_main:
                bar.update(1)
                if done % c.log_every == 0 or done == stop:
                    now = time.perf_counter()
                    rate = ex_last / max(now - t_last, 1e-9)
                    t_last, ex_last = now, 0
                    bar.set_postfix(loss=f"{step_loss:.4f}", lr=f"{lr:.2e}", ex_s=f"{rate:.0f}")
                    logger.log(
                        done, "train", {"loss": step_loss, "lr": lr, "grad_norm": grad_norm, "examples_per_s": rate}
                    )
            if c.eval_every and done % c.eval_every == 0 and done != stop:
                metrics = self._evaluate(model, logger, done)
                model.train()
            if done % c.checkpoint_every == 0 or done == stop:
                self._save(ckpt_dir, done, model, optimizer, scheduler, scaler)
        bar.close()

        plain = self._plain_model(model)  # gathered once for the last evaluation and the saved model
        if start_step < stop or not metrics:
            metrics = self._evaluate(plain, logger, stop)
        if d.is_main:
            if c.save_model and stop == c.max_steps and hasattr(plain, "save_pretrained"):
                plain.save_pretrained(run_dir / "model")
            logger.close()
        barrier()
        return TrainResult(run_dir=run_dir, step=stop, losses=losses, metrics=metrics, model=plain)

    def _plain_model(self, model: nn.Module) -> nn.Module | None:
        """``model`` itself, or for a sharded model an unsharded copy on rank 0 (``None`` elsewhere):
        evaluation and saving run on rank 0 alone. A collective under FSDP."""
        if not is_sharded(model):
            return model
        state = full_state_dict(model)
        if not self.dist.is_main:
            return None
        plain = self.task.build_model()
        plain.load_state_dict(state)
        return plain.to(self.device).train(model.training)

    def _evaluate(self, model: nn.Module, logger: MetricLogger | None, step: int) -> dict[str, float]:
        metrics: dict[str, float] = {}
        model = self._plain_model(model)
        if self.dist.is_main:
            model.eval()
            with torch.no_grad(), self._autocast():
                metrics = self.task.evaluate(model, "valid", self.cfg.eval_batches)
            logger.log(step, "valid", metrics)
            self.log(f"step {step} valid: " + ", ".join(f"{k} {v:.4f}" for k, v in metrics.items()))
            if self.cfg.plot:
                logger.plot(f"{self.task.name} — {self.run_dir.name}")
        barrier()
        return metrics

    def _save(self, ckpt_dir: Path, step: int, model, optimizer, scheduler, scaler) -> None:
        error: OSError | None = None
        epoch, offset = divmod(step, self.steps_per_epoch)
        state: dict[str, Any] = {
            "step": step,
            "epoch": epoch,
            "offset": offset,
            "world_size": self.dist.world_size,
            "scheduler": scheduler.state_dict(),
            "scaler": scaler.state_dict() if scaler.is_enabled() else {},
            "rng": rng_state(),
            "task": self.task.name,
            "config": json.dumps(self.task.config.to_dict()),
        }
        if self.strategy == "fsdp":  # every rank writes its shards; DCP reshards on resume
            save_sharded(ckpt_dir / f"step-{step:08d}", model, optimizer, state)
            if self.dist.is_main and self.cfg.keep_checkpoints:
                for old in list_checkpoints(ckpt_dir)[: -self.cfg.keep_checkpoints]:
                    remove_checkpoint(old)
            barrier()
            return
        if self.dist.is_main:
            state.update(model=model.state_dict(), optimizer=optimizer.state_dict())
            try:
                save_checkpoint(checkpoint_path(ckpt_dir, step), state)
            except OSError as e:  # e.g. disk full: tell the other ranks instead of leaving them in a barrier
                error = e
            else:
                if self.cfg.keep_checkpoints:
                    for old in list_checkpoints(ckpt_dir)[: -self.cfg.keep_checkpoints]:
                        remove_checkpoint(old)
        raise_on_all_ranks(None if error is None else (error.strerror or str(error)), OSError)
        barrier()
