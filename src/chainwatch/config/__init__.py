"""The inventory: YAML with a line for every value, a pydantic edge schema, errors that
name file, line and field, and the domain values the rest of chainwatch works with."""

from __future__ import annotations

from chainwatch.config.inventory import (
    Endpoint,
    FileSource,
    Inventory,
    load_inventory,
    parse_inventory,
)

__all__ = ["Endpoint", "FileSource", "Inventory", "load_inventory", "parse_inventory"]
