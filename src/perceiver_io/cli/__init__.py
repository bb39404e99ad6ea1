"""The ``perceiver-io`` command line: ``demo``, ``models``, ``train``, ``evaluate``, ``predict ...``, ``data ...``.

One module per command group: :mod:`.models` (the registry), :mod:`.train`, :mod:`.predict`,
:mod:`perceiver_io.data.cli`; :mod:`.common` turns user and environment errors into one line.
"""

from __future__ import annotations

import typer

from perceiver_io.cli.common import set_debug
from perceiver_io.cli.models import models_app
from perceiver_io.cli.predict import predict_app
from perceiver_io.cli.train import train_app
from perceiver_io.data.cli import data_app

__all__ = ["app", "main"]

app = typer.Typer(help="Perceiver IO: build, train, evaluate and benchmark Perceiver models.", no_args_is_help=True)


@app.callback()
def _options(
    debug: bool = typer.Option(False, "--debug", help="show the full traceback of an error instead of one line"),
) -> None:
    set_debug(debug)


for group in (models_app, train_app):
    app.registered_commands.extend(group.registered_commands)
app.add_typer(predict_app, name="predict")
app.add_typer(data_app, name="data")


def main() -> None:
    app()
