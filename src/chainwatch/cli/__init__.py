"""The ``chainwatch`` command: thin Typer commands over the rooms above, one module per
command group. :func:`run` returns the exit status (tests use it), :func:`main` exits."""

from __future__ import annotations

from typing import Any

from chainwatch.cli.app import build_app, main, run, tune_gc

__all__ = ["app", "build_app", "main", "parse_when", "run", "tune_gc"]


def __getattr__(name: str) -> Any:
    """``app`` (the whole Typer app) and ``parse_when``, imported when asked for: the
    command imports only what the command it runs needs."""
    if name == "app":
        return build_app()
    if name == "parse_when":
        from chainwatch.cli.common import parse_when

        return parse_when
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
