"""``chainwatch stores``: the trust-store snapshots and presets chainwatch ships."""

from __future__ import annotations

from typing import Annotated, Any

import typer

from chainwatch.cli.common import Format, FormatOpt
from chainwatch.errors import InputError
from chainwatch.model.times import iso
from chainwatch.render.codec import dumps


def stores(
    root: Annotated[
        str | None,
        typer.Option("--root", help="Show when a root (name substring or SHA-256 prefix) "
                     "entered and left Mozilla's store."),
    ] = None,
    behaviours: Annotated[bool, typer.Option(
        "--behaviours", help="List the client behaviours (BEHAVIOUR:STORE) with their sources.",
    )] = False,
    output: FormatOpt = Format.text,
) -> None:
    """List the trust-store snapshots and presets chainwatch ships, or one root's history."""
    from chainwatch.stores import android, history
    from chainwatch.stores.presets import PRESETS

    if behaviours:
        from chainwatch.model import behaviours as registry

        if output is Format.json:
            typer.echo(dumps({"behaviours": registry.describe()}))
        else:
            typer.echo("\n".join(registry.text_lines()))
        return

    snaps = history.snapshots()
    if root is not None:
        found = history.find_roots(root)
        if not found:
            raise InputError(f"--root {root!r}: no root in Mozilla's history matches")
        rows: list[dict[str, Any]] = [
            {
                "sha256": r.sha256,
                "subject": r.subject,
                "not_after": iso(r.not_after),
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
                {"name": p.name, "spec": p.spec, "description": p.description,
                 "source": p.source}
                for p in PRESETS.values()
            ],
            "android": [
                {"release": r.name, "spec": f"android@{r.name}", "tag": r.tag,
                 "repository": r.repository, "commit": r.commit, "count": r.count}
                for r in android.releases()
            ],
        }))
        return
    typer.echo("Mozilla root store snapshots (certifi releases), use as mozilla@YYYY-MM-DD:")
    for s in snaps:
        typer.echo(f"  {s.date.isoformat()}  certifi {s.version:<12} {s.count:>4} roots")
    typer.echo("\nAndroid system stores (AOSP release tags), use as android@VERSION:")
    for r in android.releases():
        typer.echo(f"  {r.name:<6} {r.tag:<18} {r.count:>4} roots  {r.repository}")
    typer.echo("\nPresets:")
    for p in PRESETS.values():
        typer.echo(f"  {p.name:<14} = {p.spec:<28} {p.description}")
        if p.source:
            typer.echo(f"  {'':<14}   source: {p.source}")
    typer.echo(
        "\nJava: no preset (a JVM trusts its runtime's own cacerts, which the vendor or the "
        "distribution makes); use java:jks:$JAVA_HOME/lib/security/cacerts (JDK 8-17) or "
        "java:pkcs12:... (JDK 18+).\nOther stores: file:PATH (PEM/DER/PKCS#12 bundle), "
        "jks:PATH, pkcs12:PATH (password: $CHAINWATCH_STORE_PASSWORD, default changeit), "
        "dir:PATH (OpenSSL CApath, /etc/ssl/certs)."
    )
