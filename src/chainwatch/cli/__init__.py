"""The ``chainwatch`` command: thin Typer commands over the rooms above, one module per
command group. :func:`run` returns the exit status (tests use it), :func:`main` exits."""

from __future__ import annotations

from chainwatch.cli.app import app, main, run, tune_gc
from chainwatch.cli.common import parse_when

__all__ = ["app", "main", "parse_when", "run", "tune_gc"]
