"""What every command shares: one-line error reporting (a traceback only for bugs)."""

from __future__ import annotations

import contextlib

import typer

__all__ = ["user_errors", "train_errors"]


@contextlib.contextmanager
def user_errors():
    """Report the library's errors on user input as one line on stderr and exit with status 1."""
    try:
        yield
    except (FileNotFoundError, IsADirectoryError, NotADirectoryError, PermissionError) as e:
        typer.echo(f"error: {e}", err=True)
        raise typer.Exit(1) from None
    except (ValueError, TypeError, KeyError, ImportError, OSError, RuntimeError) as e:
        typer.echo(f"error: {e}".splitlines()[0], err=True)
        raise typer.Exit(1) from None


@contextlib.contextmanager
def train_errors():
    """Config, data and checkpoint problems -> one line on stderr, exit status 2 (config) or 1."""
    from perceiver_io.config import ConfigError
    from perceiver_io.tasks.base import DataUnavailable
    from perceiver_io.training.checkpoint import CheckpointError
    from perceiver_io.training.rundir import RunDirError

    try:
        yield
    except ConfigError as e:
        typer.echo(f"error: {e}".splitlines()[0], err=True)
        raise typer.Exit(2) from None
    except (CheckpointError, DataUnavailable, RunDirError, FileNotFoundError, NotADirectoryError) as e:
        typer.echo(f"error: {e}".splitlines()[0], err=True)
        raise typer.Exit(1) from None
    except Exception as e:
        from perceiver_io.data import DataError

        if isinstance(e, DataError):
            typer.echo(f"error: {e}".splitlines()[0], err=True)
            raise typer.Exit(1) from None
        raise
