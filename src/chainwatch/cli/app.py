"""The ``chainwatch`` command line (Typer). Thin: parses flags, calls the rooms, renders.

Exit statuses follow the Nagios/Icinga plugin convention: 0 ok, 1 warning,
2 critical, 3 unknown. Usage errors and bad input are *unknown* (3), never 2, and
never a traceback: the message names the file, field, host or database at fault.
``CHAINWATCH_DEBUG=1`` adds the traceback of an internal error, for bug reports.

Each command group lives in its own module (:mod:`.check`, :mod:`.advise`, :mod:`.stores`,
:mod:`.monitor`, :mod:`.alerts`, :mod:`.discover`, :mod:`.lab`, :mod:`.exporter`); this
one assembles them.
"""

from __future__ import annotations

import gc
import os
import sys
import traceback
from typing import Annotated, Any

import typer
from rich.console import Console
from typer.exceptions import Abort, Exit, TyperException

from chainwatch.errors import EXIT_UNKNOWN, ChainwatchError, StorageError
from chainwatch.model.names import printable

COMMANDS: tuple[tuple[str, str, str, bool], ...] = (
    # (command, module in chainwatch.cli, attribute, a group of subcommands), in help order
    ("check-bundle", "check", "check_bundle", False),
    ("check", "check", "check_endpoint", False),
    ("advise", "advise", "advise_command", False),
    ("stores", "stores", "stores", False),
    ("scan", "monitor", "scan_command", False),
    ("serve", "monitor", "serve_command", False),
    ("worker", "monitor", "worker_command", False),
    ("web", "monitor", "web_command", False),
    ("history", "monitor", "history_command", False),
    ("discover", "discover", "discover_app", True),
    ("alerts", "alerts", "alerts_app", True),
    ("lab", "lab", "lab_command", False),
    ("exporter", "exporter", "exporter_command", False),
)
"""Every command, imported only when the app is assembled with it: ``chainwatch check``
(a monitoring plugin, run thousands of times per interval) does not import what
``scan``, ``serve`` or ``advise`` need."""


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
    import importlib

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


def _command_of(argv: list[str]) -> str | None:
    """The command ``argv`` names when it names one first, else ``None`` (help, no
    arguments, an unknown command: the whole app answers)."""
    known = {name for name, _, _, _ in COMMANDS} | {"version"}
    first = next((a for a in argv if not a.startswith("-")), None)
    if first is None or first not in known or (argv and argv[0] != first):
        return None
    return first


def __getattr__(name: str) -> Any:
    if name == "app":  # the whole app, for callers that want the Typer object
        return build_app()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def _fail(message: str) -> int:
    Console(stderr=True).print(printable(f"chainwatch: error: {message}"), style="red",
                               highlight=False, soft_wrap=True, markup=False)
    return EXIT_UNKNOWN


def run(argv: list[str] | None = None) -> int:
    """Run the CLI and return its exit status (for tests and ``main``)."""
    args = sys.argv[1:] if argv is None else argv
    try:
        app = build_app(_command_of(args))
        # With standalone_mode=False the command's Exit code is returned, not raised.
        result = app(args=args, prog_name="chainwatch", standalone_mode=False)
    except Exit as exc:
        return exc.exit_code
    except TyperException as exc:
        # Usage errors are "unknown" for a monitoring plugin, not "critical" (click's 2).
        if type(exc).__name__ == "NoArgsIsHelpError":
            return EXIT_UNKNOWN
        return _fail(exc.format_message())
    except Abort:
        return _fail("aborted")
    except StorageError as exc:
        return _fail(f"--db {exc.url}: {exc.reason}")
    except ChainwatchError as exc:
        return _fail(str(exc))
    except KeyboardInterrupt:
        return _fail("interrupted")
    except Exception as exc:  # last resort: an internal error is UNKNOWN, one line, no traceback
        if os.environ.get("CHAINWATCH_DEBUG") == "1":
            traceback.print_exc(file=sys.stderr)
        first = " ".join(str(exc).split())[:300]
        return _fail(f"internal error: {type(exc).__name__}: {first} (CHAINWATCH_DEBUG=1 "
                     "shows the traceback; please report it)")
    return result if isinstance(result, int) else 0


def tune_gc() -> None:
    """The collector settings of the ``chainwatch`` command (benchmarks use them too).

    Analysing thousands of distinct chains allocates many short-lived objects while the
    trust stores and caches hold many long-lived ones: with the default thresholds the
    cyclic collector spent a quarter of the analysis time re-walking the latter. What
    importing built is frozen out of its sight, and the young generation is collected
    less often. A process's choice, not the library's: :func:`run` and the Python API
    leave the collector alone.
    """
    gc.freeze()
    gc.set_threshold(50_000, 20, 20)


def main() -> None:
    tune_gc()
    sys.exit(run(sys.argv[1:]))
