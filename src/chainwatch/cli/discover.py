"""``chainwatch discover``: names that have certificates but no endpoint."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from chainwatch.cli.common import DbOpt, Format, FormatOpt
from chainwatch.render.codec import dumps

discover_app = typer.Typer(help="Find names that have certificates but no endpoint.",
                           no_args_is_help=True)



@discover_app.command("ct")
def discover_ct(
    export: Annotated[Path, typer.Argument(help="crt.sh-style JSON export (a list of entries "
                                           "whose name_value holds newline-separated names).")],
    inventory: Annotated[Path, typer.Option("--inventory", help="Inventory YAML file.")],
    output: FormatOpt = Format.text,
    db: DbOpt = None,
    store: Annotated[bool, typer.Option(
        "--store", help="Store the names read in the database (implied by --db), for the "
        "dashboard's Discovery page.")] = False,
) -> None:
    """Names in Certificate Transparency results that no inventory endpoint covers."""
    from chainwatch.config.inventory import load_inventory
    from chainwatch.service.discovery import load_ct_export, uncovered_ct_names

    inv = load_inventory(inventory)
    found = load_ct_export(export)
    names = uncovered_ct_names(found, inv)
    if store or db is not None:
        import datetime as dt

        from chainwatch.service.discovery import store_ct_import
        from chainwatch.storage.repo import Database

        with Database(db) as database:
            store_ct_import(database, found, source=export.name, at=dt.datetime.now(dt.UTC))
    if output is Format.json:
        typer.echo(dumps(names))
    else:
        for name in names:
            typer.echo(name)
