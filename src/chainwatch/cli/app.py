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
from typing import Annotated

import typer
from rich.console import Console
from typer.exceptions import Abort, Exit, TyperException

from chainwatch import __version__
from chainwatch.cli import advise, check, exporter, lab, monitor, stores
from chainwatch.cli.alerts import alerts_app
from chainwatch.cli.discover import discover_app
from chainwatch.errors import EXIT_UNKNOWN, ChainwatchError, StorageError
from chainwatch.model.names import printable

app = typer.Typer(
    name="chainwatch",
    help="Make TLS certificate outages impossible to miss.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


def _show_version(value: bool) -> None:
    if value:
        typer.echo(f"chainwatch {__version__}")
        raise typer.Exit(0)


@app.callback()
def _main(
    version: Annotated[bool, typer.Option(
        "--version", callback=_show_version, is_eager=True,
        help="Print the chainwatch version and exit.")] = False,
) -> None:
    """Make TLS certificate outages impossible to miss."""


app.command("check-bundle")(check.check_bundle)
app.command("check")(check.check_endpoint)
app.command("advise")(advise.advise_command)
app.command("stores")(stores.stores)
app.command("scan")(monitor.scan_command)
app.command("serve")(monitor.serve_command)
app.command("worker")(monitor.worker_command)
app.command("web")(monitor.web_command)
app.command("history")(monitor.history_command)
app.add_typer(discover_app, name="discover")
app.add_typer(alerts_app, name="alerts")
app.command("lab")(lab.lab_command)
app.command("exporter")(exporter.exporter_command)


@app.command("version")
def version() -> None:
    """Print the chainwatch version."""
    typer.echo(__version__)


def _fail(message: str) -> int:
    Console(stderr=True).print(printable(f"chainwatch: error: {message}"), style="red",
                               highlight=False, soft_wrap=True, markup=False)
    return EXIT_UNKNOWN


def run(argv: list[str] | None = None) -> int:
    """Run the CLI and return its exit status (for tests and ``main``)."""
    try:
        # With standalone_mode=False the command's Exit code is returned, not raised.
        result = app(args=argv, prog_name="chainwatch", standalone_mode=False)
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
