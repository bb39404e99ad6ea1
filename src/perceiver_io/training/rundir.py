"""A run owns its directory: one exclusive lock for the run's lifetime, and no writing into a
directory that holds another run's files unless the user asks to resume that run with its config.

* :func:`new_run_dir` gives a default name unique even for simultaneous starts
  (``runs/<task>-<YYYYmmdd-HHMMSS>-<4 hex>``, created atomically with ``mkdir``);
* :class:`RunLock` holds ``fcntl.flock`` on ``RUN_DIR/.lock`` (released by the OS when the process
  dies, so a SIGKILLed run never leaves a stale lock); a second run into the same directory fails
  at once with a line naming the holder (pid, host, start time);
* :func:`check_run_dir` refuses a fresh run in a directory with another run's files, and a resume
  whose config differs from the saved one (naming the fields), unless ``train.allow_config_change``.
"""

from __future__ import annotations

import json
import os
import secrets
import socket
import time
from datetime import datetime
from pathlib import Path
from typing import Any

__all__ = ["RunDirError", "RunLock", "new_run_dir", "check_run_dir", "config_differences"]

# keys that say where/how a run executes, not what it computes: they may change on resume
RUNTIME_KEYS = frozenset(
    {
        "train.resume",
        "train.resume_from",
        "train.run_dir",
        "train.runs_root",
        "train.device",
        "train.num_threads",
        "train.progress",
        "train.stop_after_steps",
        "train.allow_config_change",
        "train.tensorboard",
        "train.plot",
        "train.log_every",
        "train.eval_every",
        "train.eval_batches",
        "train.checkpoint_every",
        "train.keep_checkpoints",
        "train.save_model",
        "train.compile",
        "train.activation_checkpointing",
        "train.strategy",
        "data.cache_dir",
    }
)


class RunDirError(RuntimeError):
    """The run directory is in use, holds another run, or was asked to resume with another config."""


def new_run_dir(task: str, root: str | Path = "runs") -> Path:
    """Create and return a fresh, uniquely named run directory under ``root``."""
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    for _ in range(100):
        path = root / f"{task}-{stamp}-{secrets.token_hex(2)}"
        try:
            path.mkdir()
            return path
        except FileExistsError:
            continue
    raise RunDirError(f"could not create a unique run directory under {str(root)!r}")


class RunLock:
    """Exclusive lock on ``RUN_DIR/.lock`` for the lifetime of a run (context manager)."""

    def __init__(self, run_dir: str | Path) -> None:
        self.path = Path(run_dir) / ".lock"
        self._fd: int | None = None

    def acquire(self) -> RunLock:
        import fcntl

        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 4096, 0).decode("utf-8", errors="replace").strip() or "unknown"
            os.close(fd)
            raise RunDirError(
                f"run directory {str(self.path.parent)!r} is in use by another run ({holder}); "
                "wait for it to finish or choose another train.run_dir"
            ) from None
        info = f"pid {os.getpid()} on {socket.gethostname()}, started {time.strftime('%Y-%m-%d %H:%M:%S')}"
        os.ftruncate(fd, 0)
        os.pwrite(fd, info.encode(), 0)
        self._fd = fd
        return self

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)  # closing the descriptor releases the flock
            self._fd = None

    def __enter__(self) -> RunLock:
        return self.acquire()

    def __exit__(self, *exc: object) -> None:
        self.release()


def _flatten(d: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict) and v and all(isinstance(x, str) for x in v):
            out.update(_flatten(v, key + "."))
        else:
            out[key] = list(v) if isinstance(v, tuple) else v
    return out


def config_differences(saved: dict[str, Any], current: dict[str, Any]) -> list[str]:
    """``key: saved -> current`` for every non-runtime field that differs between two task configs."""
    a, b = _flatten(saved), _flatten(json.loads(json.dumps(current)))
    keys = sorted((set(a) | set(b)) - RUNTIME_KEYS)
    return [f"{k}: {a.get(k)!r} -> {b.get(k)!r}" for k in keys if a.get(k) != b.get(k)]


def check_run_dir(run_dir: Path, task: str, config: dict[str, Any], resuming: bool, allow_change: bool) -> None:
    """Refuse to clobber: see the module docstring. ``resuming``: a checkpoint of this directory will be loaded."""
    saved_path = run_dir / "config.json"
    checkpoints = sorted((run_dir / "checkpoints").glob("*.pt")) if (run_dir / "checkpoints").is_dir() else []
    others = [p.name for p in (saved_path, run_dir / "metrics.csv", run_dir / "model") if p.exists()]
    if not resuming:
        if checkpoints or others:
            found = others + ([f"{len(checkpoints)} checkpoint(s)"] if checkpoints else [])
            raise RunDirError(
                f"run directory {str(run_dir)!r} holds another run ({', '.join(found)}); resume it with "
                "train.resume=true (same config), or choose a new train.run_dir"
            )
        return
    if not saved_path.is_file():
        return
    try:
        saved = json.loads(saved_path.read_text())
    except (OSError, ValueError) as e:
        raise RunDirError(f"{saved_path}: cannot read the saved run config ({e})") from None
    if saved.get("task") not in (None, task):
        raise RunDirError(f"run directory {str(run_dir)!r} holds a {saved.get('task')!r} run, not {task!r}")
    diffs = config_differences(saved.get("config", {}), config)
    if diffs and not allow_change:
        raise RunDirError(
            f"resuming {str(run_dir)!r} with a different config ({'; '.join(diffs)}); pass "
            "train.allow_config_change=true to resume with these changes, or choose a new train.run_dir"
        )
