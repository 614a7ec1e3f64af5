"""``chainwatch lab``: real incidents' certificate failures on loopback."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console

from chainwatch.cli.common import LogFormat, LogFormatOpt

if TYPE_CHECKING:
    from chainwatch.service.collect import ScanResult


def lab_command(
    listen: Annotated[str, typer.Option("--listen", help="Loopback address to serve on "
                                        "(127.0.0.0/8 or ::1).")] = "127.0.0.1",
    port_base: Annotated[int, typer.Option("--port-base", help="Scenario i listens on "
                                           "PORT_BASE+i; 0: ephemeral ports.")] = 9440,
    directory: Annotated[Path, typer.Option("--dir", help="Where the inventory, trust "
                                            "bundles and README go.")] = Path("chainwatch-lab"),
    serve: Annotated[bool, typer.Option("--serve", help="Also run `chainwatch serve` on the "
                                        "lab's inventory (what `make run` does).")] = False,
    db: Annotated[str | None, typer.Option(
        "--db", help="With --serve: the database (default: lab.sqlite in --dir, never your "
        "real default database).")] = None,
    max_batches: Annotated[int | None, typer.Option(
        "--max-batches", min=1, help="With --serve: stop after this many scan batches.")] = None,
    log_format: LogFormatOpt = LogFormat.text,
    web_listen: Annotated[str, typer.Option(
        "--web-listen", help="With --serve: the dashboard and API address HOST:PORT.")]
    = "127.0.0.1:8080",
    no_web: Annotated[bool, typer.Option("--no-web", help="With --serve: no dashboard.")]
    = False,
    token_file: Annotated[Path | None, typer.Option(
        "--token-file", help="With --serve: file holding the token writes (ack) need "
        "(default: $CHAINWATCH_WEB_TOKEN).")] = None,
) -> None:
    """Serve real incidents' certificate failures on loopback until Ctrl-C, with an
    inventory to try chainwatch and your alert routing on."""
    from chainwatch.testing.lab import run_foreground, serve_foreground

    def echo(text: str) -> None:
        typer.echo(text)
        sys.stdout.flush()

    if serve:
        from chainwatch.render.text import scan_text

        def show(result: ScanResult) -> None:
            scan_text(result, Console())
            sys.stdout.flush()

        from chainwatch.service.web import read_token

        raise typer.Exit(serve_foreground(directory, listen, port_base, db_url=db,
                                          max_batches=max_batches, echo=echo, show=show,
                                          log_format=log_format.value,
                                          web_listen=None if no_web else web_listen,
                                          web_token=read_token(token_file)))
    raise typer.Exit(run_foreground(directory, listen, port_base, echo=echo))
