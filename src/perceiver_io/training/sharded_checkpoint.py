"""Sharded training checkpoints with ``torch.distributed.checkpoint`` (DCP), for FSDP runs.

A checkpoint is a directory ``RUN_DIR/checkpoints/step-00000100/``:

* DCP's files (``.metadata``, ``__<rank>_0.distcp``): model and optimizer state keyed by parameter
  name, each rank writing its own shards; DCP reshards on load, so a checkpoint saved by 2 ranks
  resumes on 1, 2 or 4;
* ``trainer.pt``: step, data position (epoch, offset), scheduler, scaler, RNG states, task and config
  (rank 0's, as for whole-model checkpoints);
* ``SHA256SUMS``: every file's sha256, checked on load.

All ranks write into ``checkpoints/.step-00000100.dcp.tmp``; rank 0 writes ``trainer.pt`` and the
sums and only then renames the directory to its final name, so a kill at any moment never leaves
a directory under a final name that is not complete. :func:`remove_stale_temporaries` in
:mod:`.checkpoint` clears what such a kill leaves behind.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import warnings
from pathlib import Path
from typing import Any

import torch
from torch import nn

from perceiver_io.checkpoints import file_sha256
from perceiver_io.training.checkpoint import CheckpointError

__all__ = ["TRAINER_STATE", "is_sharded_checkpoint", "save_sharded", "load_sharded"]

TRAINER_STATE = "trainer.pt"
SUMS = "SHA256SUMS"


def is_sharded_checkpoint(path: str | Path) -> bool:
    return Path(path).is_dir()


def _barrier() -> None:
    from perceiver_io.training.distributed import barrier

    barrier()


def _is_main() -> bool:
    import torch.distributed as dist

    return not (dist.is_available() and dist.is_initialized()) or dist.get_rank() == 0


@contextlib.contextmanager
def _quiet_single_process():
    """DCP warns that it 'assumes the intent is to load in a single process' without a process group: it is."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*torch.distributed is disabled.*")
        yield


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def save_sharded(path: str | Path, model: nn.Module, optimizer: torch.optim.Optimizer, trainer: dict[str, Any]) -> Path:
    """Every rank: write model + optimizer shards; rank 0 adds ``trainer`` (plain values) and renames.

    ``path`` is the final directory; returns it. Collective: all ranks must call it.
    """
    import torch.distributed.checkpoint as dcp
    from torch.distributed.checkpoint.state_dict import get_state_dict

    from perceiver_io.training.distributed import broadcast_object

    path = Path(path)
    tmp = path.with_name(f".{path.name}.dcp.tmp")
    if _is_main():
        shutil.rmtree(tmp, ignore_errors=True)  # a killed writer's leftovers
        tmp.mkdir(parents=True)
    _barrier()
    model_state, optim_state = get_state_dict(model, optimizer)
    with _quiet_single_process():
        dcp.save({"model": model_state, "optimizer": optim_state}, checkpoint_id=str(tmp))
    _barrier()  # every rank's shards are written
    error = None
    if _is_main():
        try:
            torch.save(trainer, tmp / TRAINER_STATE)
            sums = "".join(f"{file_sha256(f)}  {f.name}\n" for f in sorted(tmp.iterdir()) if f.is_file())
            (tmp / SUMS).write_text(sums)
            for f in tmp.iterdir():
                with open(f, "rb") as fh:
                    os.fsync(fh.fileno())
            old = None
            if path.exists():  # re-saving a step that exists (resumed from an earlier one): swap it out
                old = path.with_name(f".{path.name}.old.tmp")
                shutil.rmtree(old, ignore_errors=True)
                os.replace(path, old)
            os.replace(tmp, path)
            _fsync_dir(path.parent)
            if old is not None:
                shutil.rmtree(old, ignore_errors=True)
        except OSError as e:
            error = e.strerror or str(e)
    error = broadcast_object(error)
    if error is not None:
        raise OSError(f"cannot write sharded checkpoint {str(path)!r}: {error}")
    return path


def _verify(path: Path) -> None:
    if not (path / TRAINER_STATE).is_file() or not (path / ".metadata").is_file():
        raise CheckpointError(f"{str(path)!r} is not a complete sharded checkpoint (no {TRAINER_STATE} or .metadata)")
    sums = path / SUMS
    if not sums.is_file():
        raise CheckpointError(f"sharded checkpoint {str(path)!r} has no {SUMS}")
    for line in sums.read_text().splitlines():
        digest, name = line.split("  ", 1)
        f = path / name
        if not f.is_file():
            raise CheckpointError(f"sharded checkpoint {str(path)!r} is missing {name}")
        if file_sha256(f) != digest:
            raise CheckpointError(
                f"sharded checkpoint {str(path)!r} is damaged: {name}'s sha256 differs from {SUMS}; "
                "resume from an earlier checkpoint (train.resume_from=...)"
            )


def load_sharded(path: str | Path, model: nn.Module, optimizer: torch.optim.Optimizer | None = None) -> dict[str, Any]:
    """Load model (and optimizer) state from a sharded checkpoint into ``model`` as it is now — sharded
    over any number of ranks or not at all — and return ``trainer.pt``'s dict. Collective under FSDP."""
    import torch.distributed.checkpoint as dcp
    from torch.distributed.checkpoint.state_dict import get_model_state_dict, get_state_dict, set_state_dict

    path = Path(path)
    _verify(path)
    try:
        if optimizer is None:
            state = {"model": get_model_state_dict(model)}
        else:
            model_state, optim_state = get_state_dict(model, optimizer)
            state = {"model": model_state, "optimizer": optim_state}
        with _quiet_single_process():
            dcp.load(state, checkpoint_id=str(path))
        set_state_dict(
            model,
            optimizer if optimizer is not None else [],
            model_state_dict=state["model"],
            optim_state_dict=state.get("optimizer", {}),
        )
    except (RuntimeError, ValueError, KeyError) as e:
        details = "; ".join(line.strip() for line in str(e).splitlines() if line.strip())[:2000]
        raise CheckpointError(f"checkpoint {str(path)!r} does not match this model/optimizer: {details}") from None
    return torch.load(path / TRAINER_STATE, weights_only=True)
