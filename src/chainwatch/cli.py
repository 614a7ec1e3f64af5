"""The ``chainwatch`` command line (Typer). Thin: parses flags, calls the rooms, renders.

Exit statuses follow the Nagios/Icinga plugin convention: 0 ok, 1 warning,
2 critical, 3 unknown. Usage errors and bad input are *unknown* (3), never 2, and
never a traceback: the message names the file, field or host at fault.
"""

from __future__ import annotations

import datetime as dt
import sys
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from typer.exceptions import Abort, Exit, TyperException

from chainwatch import __version__
from chainwatch.analysis.engine import (
    DEFAULT_CRIT_DAYS,
    DEFAULT_WARN_DAYS,
    analyze,
    key_fingerprint,
)
from chainwatch.errors import EXIT_UNKNOWN, ChainwatchError, InputError
from chainwatch.model import Profile
from chainwatch.parsing import load_bundle_file, load_private_key
from chainwatch.render import dumps, render_text, report_json
from chainwatch.stores import resolve_profile

app = typer.Typer(
    name="chainwatch",
    help="Make TLS certificate outages impossible to miss.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


class Format(StrEnum):
    text = "text"
    json = "json"


def parse_when(value: str | None) -> dt.datetime:
    """ISO 8601 date or datetime; no offset means UTC; ``None`` means now."""
    if value is None:
        return dt.datetime.now(dt.UTC).replace(microsecond=0)
    try:
        parsed = dt.datetime.fromisoformat(value.strip())
    except ValueError:
        raise InputError(
            f"--at {value!r}: expected an ISO 8601 date or datetime, e.g. 2021-09-30 "
            "or 2021-09-30T14:01:15Z"
        ) from None
    return parsed.replace(tzinfo=dt.UTC) if parsed.tzinfo is None else parsed.astimezone(dt.UTC)


def resolve_profiles(specs: list[str] | None) -> list[Profile]:
    return [resolve_profile(s) for s in (specs or ["mozilla"])]


def _check_days(warn_days: int, crit_days: int) -> None:
    if warn_days < 0 or crit_days < 0:
        raise InputError("--warn-days and --crit-days must not be negative")


AtOpt = Annotated[
    str | None, typer.Option("--at", help="Evaluate at this instant (ISO 8601; default now, UTC).")
]
ProfileOpt = Annotated[
    list[str] | None,
    typer.Option(
        "--profile",
        help="Client profile spec (repeatable): mozilla, mozilla@DATE, system, file:PATH, "
        "legacy:STORE. Default: mozilla.",
    ),
]
WarnOpt = Annotated[int, typer.Option("--warn-days", help="Warning when fewer days are left.")]
CritOpt = Annotated[int, typer.Option("--crit-days", help="Critical when fewer days are left.")]
FormatOpt = Annotated[Format, typer.Option("--format", help="Output format.")]


@app.command("check-bundle")
def check_bundle(
    bundle: Annotated[Path, typer.Argument(help="PEM (leaf first), DER or PKCS#12 file.")],
    host: Annotated[str | None, typer.Option("--host", help="Name the leaf must cover.")] = None,
    key: Annotated[
        Path | None, typer.Option("--key", help="Private key that must match the leaf.")
    ] = None,
    at: AtOpt = None,
    profile: ProfileOpt = None,
    warn_days: WarnOpt = DEFAULT_WARN_DAYS,
    crit_days: CritOpt = DEFAULT_CRIT_DAYS,
    output: FormatOpt = Format.text,
) -> None:
    """Check a certificate bundle against every client profile, before deploying it."""
    _check_days(warn_days, crit_days)
    when = parse_when(at)
    profiles = resolve_profiles(profile)
    chain = load_bundle_file(bundle)
    key_spki = key_fingerprint(load_private_key(key)) if key is not None else None
    report = analyze(
        chain, profiles, at=when, host=host, warn_days=warn_days, crit_days=crit_days,
        key_spki=key_spki,
    )
    if output is Format.json:
        typer.echo(dumps(report_json(report)))
    else:
        render_text(report, Console(), warn_days, crit_days)
    raise typer.Exit(report.status.exit_code)


@app.command("stores")
def stores(
    root: Annotated[
        str | None,
        typer.Option("--root", help="Show when a root (name substring or SHA-256 prefix) "
                     "entered and left Mozilla's store."),
    ] = None,
    output: FormatOpt = Format.text,
) -> None:
    """List the trust-store snapshots and presets chainwatch ships, or one root's history."""
    from chainwatch.stores import history
    from chainwatch.stores.presets import PRESETS

    snaps = history.snapshots()
    if root is not None:
        found = history.find_roots(root)
        if not found:
            raise InputError(f"--root {root!r}: no root in Mozilla's history matches")
        rows: list[dict[str, Any]] = [
            {
                "sha256": r.sha256,
                "subject": r.subject,
                "not_after": r.not_after.strftime("%Y-%m-%dT%H:%M:%SZ"),
                "in_store": [
                    {
                        "from": first.date.isoformat(),
                        "from_release": first.version,
                        "until": None if gone is None else gone.date.isoformat(),
                        "removed_in_release": None if gone is None else gone.version,
                    }
                    for first, gone in r.ranges
                ],
            }
            for r in found
        ]
        if output is Format.json:
            typer.echo(dumps({"roots": rows}))
            return
        for row in rows:
            typer.echo(f"{row['subject']}\n  sha256 {row['sha256']}  expires {row['not_after']}")
            for span in row["in_store"]:
                until = span["until"] or "still present"
                removed = (
                    f" (removed in certifi {span['removed_in_release']})" if span["until"] else ""
                )
                since = span["from"]
                if span["from_release"] == snaps[0].version:
                    since = f"at least {since} (the first snapshot)"
                typer.echo(
                    f"  in Mozilla's store from {since} (certifi {span['from_release']})"
                    f" until {until}{removed}"
                )
        return
    if output is Format.json:
        typer.echo(dumps({
            "snapshots": [
                {"version": s.version, "date": s.date.isoformat(), "count": s.count} for s in snaps
            ],
            "presets": [
                {"name": p.name, "spec": p.spec, "description": p.description}
                for p in PRESETS.values()
            ],
        }))
        return
    typer.echo("Mozilla root store snapshots (certifi releases), use as mozilla@YYYY-MM-DD:")
    for s in snaps:
        typer.echo(f"  {s.date.isoformat()}  certifi {s.version:<12} {s.count:>4} roots")
    typer.echo("\nPresets:")
    for p in PRESETS.values():
        typer.echo(f"  {p.name:<14} = {p.spec:<28} {p.description}")


@app.command("version")
def version() -> None:
    """Print the chainwatch version."""
    typer.echo(__version__)


def _fail(message: str) -> int:
    Console(stderr=True).print(f"chainwatch: error: {message}", style="red", highlight=False,
                               soft_wrap=True)
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
    except ChainwatchError as exc:
        return _fail(str(exc))
    except KeyboardInterrupt:
        return _fail("interrupted")
    except Exception as exc:  # last resort: an internal error is UNKNOWN, one line, no traceback
        return _fail(f"internal error: {type(exc).__name__}: {exc}")
    return result if isinstance(result, int) else 0


def main() -> None:
    sys.exit(run(sys.argv[1:]))
