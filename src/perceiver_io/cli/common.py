"""What every command shares: one-line error reporting; the traceback only with ``--debug``.

User errors (bad arguments, files, configs) and environment errors (disk full, read-only
directory, no CUDA) print ``error: ...`` on one line and exit with status 1 (2 for configs);
anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

import contextlib
import errno
import os

import typer

__all__ = ["user_errors", "train_errors", "set_debug", "check_device"]

_DEBUG = False

_ENVIRONMENT = (errno.ENOSPC, errno.EROFS, errno.EACCES, errno.EDQUOT)  # disk full, read-only, ...


def set_debug(debug: bool) -> None:
    """``--debug``: let errors propagate with their traceback."""
    global _DEBUG
    _DEBUG = debug


def _fail(e: BaseException, status: int = 1) -> None:
    if _DEBUG:
        raise e
    if isinstance(e, OSError) and e.strerror:
        message = e.strerror + (f": {e.filename!r}" if e.filename else "")
        if e.errno in _ENVIRONMENT and os.strerror(e.errno).lower() not in message.lower():
            message = f"{os.strerror(e.errno)}: {message}"
    else:
        message = str(e).splitlines()[0] if str(e) else type(e).__name__
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(status) from None


def check_device(device: str) -> None:
    """``--device``: a CUDA device on a machine or build without CUDA is a one-line error."""
    import torch

    if device.startswith("cuda") and not torch.cuda.is_available():
        raise ValueError(f"--device {device}: CUDA is not available (this torch build or machine has no GPU); use cpu")


@contextlib.contextmanager
def user_errors():
    """Report the library's errors on user input as one line on stderr and exit with status 1."""
    try:
        yield
    except typer.Exit:
        raise
    except (ValueError, TypeError, KeyError, ImportError, OSError, RuntimeError) as e:
        _fail(e)


@contextlib.contextmanager
def train_errors():
    """Config, data, checkpoint, run-directory and environment problems -> one line on stderr,
    exit status 2 (config) or 1."""
    from perceiver_io.config import ConfigError
    from perceiver_io.data import DataError
    from perceiver_io.tasks.base import DataUnavailable
    from perceiver_io.training.checkpoint import CheckpointError
    from perceiver_io.training.rundir import RunDirError

    try:
        yield
    except ConfigError as e:
        _fail(e, 2)
    except (CheckpointError, DataUnavailable, DataError, RunDirError, OSError, ValueError) as e:
        _fail(e)
