"""Training checkpoints: model, optimizer, scheduler, scaler, RNG states and data position in one file.

Files are ``RUN_DIR/checkpoints/step-00000100.pt`` (FSDP runs write sharded directories instead:
:mod:`.sharded_checkpoint`), written atomically (temporary file in the
same directory, then ``os.replace``), so a crash or SIGKILL never leaves a partial checkpoint
under the final name. Each checkpoint's sha256 is kept beside it (``step-00000100.pt.sha256``)
and checked on load, so a damaged file is named instead of resuming into NaN. Loading uses
``torch.load(weights_only=True)``: RNG states are stored as tensors and plain Python values.
"""

from __future__ import annotations

import errno
import random
import re
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import torch

from perceiver_io.checkpoints import atomic_write, file_sha256

__all__ = [
    "CheckpointError",
    "save_checkpoint",
    "load_checkpoint",
    "list_checkpoints",
    "latest_checkpoint",
    "remove_stale_temporaries",
    "remove_checkpoint",
    "checksum_path",
    "rng_state",
    "set_rng_state",
]

_NAME = re.compile(r"^step-(\d+)(\.pt)?$")  # a file (one process, DDP) or a sharded directory (FSDP, DCP)


class CheckpointError(RuntimeError):
    """A checkpoint file is missing, unreadable or not a training checkpoint."""


def rng_state() -> dict[str, Any]:
    """RNG states of torch (CPU and CUDA), numpy and Python ``random``, as safe-to-load values."""
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    state: dict[str, Any] = {
        "torch": torch.get_rng_state(),
        "numpy": {"keys": torch.from_numpy(keys.astype(np.int64)), "pos": int(pos), "has_gauss": int(has_gauss)},
        "numpy_cached_gaussian": float(cached),
        "python": random.getstate(),
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    n = state["numpy"]
    np.random.set_state(
        ("MT19937", n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"], state["numpy_cached_gaussian"])
    )
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def checksum_path(path: str | Path) -> Path:
    """The sidecar ``step-N.pt.sha256`` that holds a checkpoint's sha256."""
    path = Path(path)
    return path.with_name(path.name + ".sha256")


def save_checkpoint(path: str | Path, state: dict[str, Any]) -> Path:
    """Write ``state`` to ``path`` atomically, its sha256 to :func:`checksum_path` just before the rename."""
    path = Path(path)

    def write(tmp: str) -> None:
        full = False
        try:
            torch.save(state, tmp)
        except (RuntimeError, OSError) as e:  # torch's zip writer reports a full disk as "unexpected pos"
            if getattr(e, "errno", None) != errno.ENOSPC and shutil.disk_usage(path.parent).free >= 1 << 16:
                raise
            full = True
        if full:  # raised outside the handler, so the failed writer (and its open file) is freed now
            raise OSError(errno.ENOSPC, f"No space left on device: cannot write checkpoint {str(path)!r}")
        digest = file_sha256(tmp)
        atomic_write(checksum_path(path), lambda t: Path(t).write_text(digest + "\n"))

    atomic_write(path, write)
    return path


def remove_checkpoint(path: str | Path) -> None:
    """Delete a checkpoint (file and its checksum, or a sharded directory)."""
    if Path(path).is_dir():
        shutil.rmtree(path, ignore_errors=True)
        return
    Path(path).unlink(missing_ok=True)
    checksum_path(path).unlink(missing_ok=True)


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Read a training checkpoint; raises :class:`CheckpointError` with the path and the reason."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint {str(path)!r} does not exist")
    sidecar = checksum_path(path)
    if sidecar.is_file():  # checkpoints written before checksums existed have none
        expected, actual = sidecar.read_text().strip(), file_sha256(path)
        if actual != expected:
            raise CheckpointError(
                f"checkpoint {str(path)!r} is damaged: its sha256 is {actual}, {sidecar.name} recorded {expected}; "
                "resume from an earlier checkpoint (train.resume_from=...)"
            )
    try:
        state = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as e:  # pickle/zip errors vary by corruption
        reason = str(e).splitlines()[0] if str(e) else type(e).__name__
        if "weights only load failed" in reason.lower():  # never advise unsafe unpickling of a foreign file
            reason = "it holds objects a training checkpoint never contains"
        raise CheckpointError(f"checkpoint {str(path)!r} is unreadable or corrupted ({reason})") from None
    if not isinstance(state, dict) or "model" not in state or "step" not in state:
        raise CheckpointError(f"{str(path)!r} is not a perceiver-io training checkpoint (no 'model'/'step')")
    return state


def list_checkpoints(directory: str | Path) -> list[Path]:
    """``step-*.pt`` files and ``step-*/`` sharded directories in ``directory``, oldest step first."""
    directory = Path(directory)
    if not directory.is_dir():
        return []
    found = [
        (int(m.group(1)), p)
        for p in directory.iterdir()
        if (m := _NAME.match(p.name)) and (p.is_file() if m.group(2) else p.is_dir())
    ]
    return [p for _, p in sorted(found)]


def latest_checkpoint(directory: str | Path) -> Path | None:
    ckpts = list_checkpoints(directory)
    return ckpts[-1] if ckpts else None


def remove_stale_temporaries(directory: str | Path) -> list[Path]:
    """Delete what a killed writer left behind (``.NAME.*.tmp`` files and sharded directories,
    checksums without a checkpoint)."""
    directory = Path(directory)
    stale = [p for p in directory.glob(".*.tmp")] if directory.is_dir() else []
    if directory.is_dir():
        stale += [p for p in directory.glob("step-*.pt.sha256") if not p.with_name(p.name[: -len(".sha256")]).exists()]
    for p in stale:
        if p.is_dir():
            shutil.rmtree(p, ignore_errors=True)
        else:
            p.unlink(missing_ok=True)
    return stale


def checkpoint_path(directory: str | Path, step: int) -> Path:
    return Path(directory) / f"step-{step:08d}.pt"
