"""The ``chainwatch`` Typer app: its root (``--version``, ``version``) and the assembly of
the commands of :data:`chainwatch.cli.app.COMMANDS`, each imported only when the app is
assembled with it."""

from __future__ import annotations

import importlib
from typing import Annotated

import typer

from chainwatch.cli.app import COMMANDS


def _show_version(value: bool) -> None:
    if value:
        from chainwatch import __version__

        typer.echo(f"chainwatch {__version__}")
        raise typer.Exit(0)


def _main(
    version: Annotated[bool, typer.Option(
        "--version", callback=_show_version, is_eager=True,
        help="Print the chainwatch version and exit.")] = False,
) -> None:
    """Make TLS certificate outages impossible to miss."""


def version() -> None:
    """Print the chainwatch version."""
    from chainwatch import __version__

    typer.echo(__version__)


def build_app(only: str | None = None) -> typer.Typer:
    """The ``chainwatch`` Typer app: every command, or only the command ``only`` (the
    same options, help and errors for it; the others are not imported)."""
    application = typer.Typer(
        name="chainwatch",
        help="Make TLS certificate outages impossible to miss.",
        no_args_is_help=True,
        add_completion=False,
        pretty_exceptions_enable=False,
    )
    application.callback()(_main)
    for name, module, attribute, group in COMMANDS:
        if only is not None and name != only:
            continue
        target = getattr(importlib.import_module(f"chainwatch.cli.{module}"), attribute)
        if group:
            application.add_typer(target, name=name)
        else:
            application.command(name)(target)
    if only is None or only == "version":
        application.command("version")(version)
    return application
