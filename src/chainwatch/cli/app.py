"""The ``chainwatch`` command line (Typer; ``check`` also without it, see :func:`run`). Thin:
parses flags, calls the rooms, renders.

Exit statuses follow the Nagios/Icinga plugin convention: 0 ok, 1 warning,
2 critical, 3 unknown. Usage errors and bad input are *unknown* (3), never 2, and
never a traceback: the message names the file, field, host or database at fault.
``CHAINWATCH_DEBUG=1`` adds the traceback of an internal error, for bug reports.

Each command group lives in its own module (:mod:`.check`, :mod:`.advise`, :mod:`.stores`,
:mod:`.monitor`, :mod:`.alerts`, :mod:`.discover`, :mod:`.lab`, :mod:`.exporter`); this
one assembles them.
"""

from __future__ import annotations

import atexit
import errno
import gc
import os
import sys
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from chainwatch.errors import EXIT_UNKNOWN, ChainwatchError, StorageError

if TYPE_CHECKING:
    import typer

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


def build_app(only: str | None = None) -> typer.Typer:
    """The ``chainwatch`` Typer app: every command, or only the command ``only`` (the
    same options, help and errors for it; the others are not imported)."""
    from chainwatch.cli.root import build_app as assemble

    return assemble(only)


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
    from rich.console import Console

    from chainwatch.model.names import printable

    Console(stderr=True).print(printable(f"chainwatch: error: {message}"), style="red",
                               highlight=False, soft_wrap=True, markup=False)
    return EXIT_UNKNOWN


def run(argv: list[str] | None = None, *, fast_check: bool = True) -> int:
    """Run the CLI and return its exit status (for tests and ``main``).

    ``chainwatch check`` with arguments :func:`chainwatch.cli.endpoint.parse_check` reads
    runs without Typer (a monitoring plugin runs it thousands of times per interval, and
    Typer with pydantic is most of its imports); every other command line, ``check``'s help
    and errors included, goes to the Typer app (``fast_check=False``: every one, for tests
    that hold the two to each other)."""
    args = sys.argv[1:] if argv is None else argv
    if fast_check and args[:1] == ["check"]:
        from chainwatch.cli.endpoint import check_endpoint, parse_check

        parsed = parse_check(args[1:])
        if parsed is not None:
            return _guarded(lambda: _plain(lambda: check_endpoint(**parsed)))
    return _guarded(lambda: _typer(args))


def _typer(args: list[str]) -> int:
    """``args`` run by the Typer app, with Typer's exceptions turned into exit statuses."""
    from typer.exceptions import Abort, Exit, TyperException

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
    return result if isinstance(result, int) else 0


def _plain(command: Callable[[], int]) -> int:
    """A command run without Typer, answering as Typer's invocation of it would: an
    interrupt exits 130, the end of input is "aborted", a closed output pipe exits 1."""
    try:
        return command()
    except EOFError:
        sys.stderr.write("\n")
        return _fail("aborted")
    except KeyboardInterrupt:
        return 130
    except OSError as exc:
        if exc.errno != errno.EPIPE:
            raise
        quiet_broken_pipe()
        sys.exit(1)


def quiet_broken_pipe() -> None:
    """After a closed output pipe, what is still buffered goes nowhere, quietly, at exit."""
    try:
        fd = sys.stdout.fileno()
    except (OSError, ValueError):
        return
    null = os.open(os.devnull, os.O_WRONLY)
    os.dup2(null, fd)
    os.close(null)


def _guarded(command: Callable[[], int]) -> int:
    """``command``'s exit status, with chainwatch's errors as one line on stderr and exit
    status 3 (unknown), never a traceback."""
    try:
        return command()
    except StorageError as exc:
        return _fail(f"--db {exc.url}: {exc.reason}")
    except ChainwatchError as exc:
        return _fail(str(exc))
    except KeyboardInterrupt:
        return _fail("interrupted")
    except Exception as exc:  # last resort: an internal error is UNKNOWN, one line, no traceback
        if os.environ.get("CHAINWATCH_DEBUG") == "1":
            import traceback

            traceback.print_exc(file=sys.stderr)
        first = " ".join(str(exc).split())[:300]
        return _fail(f"internal error: {type(exc).__name__}: {first} (CHAINWATCH_DEBUG=1 "
                     "shows the traceback; please report it)")


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


_EXIT_STATUS: list[int] = []
"""The status :func:`main` is about to exit with, for :func:`_leave`."""


def _leave() -> None:
    """The last exit handler: leave without tearing the interpreter down.

    Once the command is done, every thread joined and every other exit handler run
    (they were registered later, so they ran first: logging's flush, temporary
    directories, multiprocessing's), what is left of exiting is freeing every module and
    object one by one: 0.5-0.6 s after a 1,000-endpoint scan, for memory the kernel
    frees at once anyway. So the output is flushed and the process ends here, with the
    command's status. When the output cannot be flushed (a closed pipe), or the command
    never returned a status, the interpreter exits the ordinary way instead."""
    if not _EXIT_STATUS:
        return
    try:
        sys.stdout.flush()
        sys.stderr.flush()
    except (OSError, ValueError):
        return
    os._exit(_EXIT_STATUS[0])


def main() -> None:
    tune_gc()
    atexit.register(_leave)  # before anything else registers: it runs last
    status = run(sys.argv[1:])
    _EXIT_STATUS.append(status)
    sys.exit(status)
