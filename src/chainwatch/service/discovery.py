"""Discovery: names that have certificates but no endpoint watching them.

HelloSign's ``app.*`` had its own certificate while everyone watched ``www.*``:
Certificate Transparency logs know every name a CA issued for. ``chainwatch discover
ct`` reads a crt.sh-style JSON export (a list of entries whose ``name_value`` holds
newline-separated names) and lists the names no inventory endpoint covers; with a
database it also stores every name it read (:func:`store_ct_import`), which the
dashboard's Discovery page shows against the inventory in force.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING

from chainwatch.analysis.hostname import dns_pattern_matches, normalize_dns
from chainwatch.config.inventory import Inventory
from chainwatch.errors import BundleError, InputError
from chainwatch.model.bundle import read_source

if TYPE_CHECKING:
    from chainwatch.storage.repo import Database

MAX_EXPORT_BYTES = 256 * 1024 * 1024


def load_ct_export(path: str | Path) -> list[str]:
    """Every name in a crt.sh JSON export, lower-case, in first-seen order."""
    p = Path(path)
    try:
        data = json.loads(read_source(p, limit=MAX_EXPORT_BYTES, what="a JSON export")
                          .decode("utf-8"))
    except BundleError as exc:
        raise InputError(f"{p}: {exc.reason}") from None
    except UnicodeDecodeError as exc:
        raise InputError(f"{p}: not UTF-8 text ({exc.reason})") from None
    except json.JSONDecodeError as exc:
        raise InputError(f"{p}:{exc.lineno}: not JSON: {exc.msg}") from None
    if not isinstance(data, list):
        raise InputError(f"{p}: expected a JSON list of entries (crt.sh format)")
    names: dict[str, None] = {}
    for i, entry in enumerate(data):
        if not isinstance(entry, dict) or not isinstance(entry.get("name_value"), str):
            raise InputError(f"{p}: entry [{i}]: expected an object with a name_value string")
        for raw in entry["name_value"].splitlines():
            name = normalize_dns(raw)
            if name and "@" not in name:
                names.setdefault(name, None)
    return list(names)


def endpoint_names(inventory: Inventory) -> set[str]:
    return {(e.server_name or e.host).lower() for e in inventory.endpoints}


def is_covered(name: str, watched: Iterable[str]) -> bool:
    """A CT name is covered when an endpoint asks for it; a wildcard name when some
    endpoint's name falls under the wildcard."""
    if name.startswith("*."):
        return any(dns_pattern_matches(name, w) for w in watched)
    return name in watched


def uncovered_ct_names(names: Iterable[str], inventory: Inventory) -> list[str]:
    watched = endpoint_names(inventory)
    return sorted({n for n in names if not is_covered(n, watched)})


def store_ct_import(db: Database, names: Iterable[str], *, source: str,
                    at: dt.datetime) -> int:
    """Store the names of one CT import (``source``: the export read); returns how many."""
    from chainwatch.storage.discovery_repo import DiscoveryRepo

    return DiscoveryRepo(db).record_ct(names, source=source, at=at)
