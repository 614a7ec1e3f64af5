"""Step 2 of loading: pydantic errors mapped back to one :class:`InventoryError` naming
file, line and field."""

from __future__ import annotations

import difflib
from typing import Any

from pydantic import (
    ValidationError,
)
from pydantic_core import ErrorDetails

from chainwatch.config.schema import (
    _CHANNEL_TYPES,
    YamlPath,
    _show,
)
from chainwatch.config.yaml import _Document, _field_name
from chainwatch.errors import InventoryError

# -- step 2: pydantic errors to one InventoryError ------------------------------------------


def _error_path(loc: tuple[int | str, ...], doc: _Document) -> YamlPath:
    """A pydantic location as a path in the YAML, without union tags."""
    path: YamlPath = ()
    for seg in loc:
        if seg in _CHANNEL_TYPES and (*path, seg) not in doc.lines:
            continue
        path = (*path, seg)
    return path


_SHORT_FORMS = {"endpoints": "a host name", "files": "a path"}


def _reason(err: ErrorDetails, path: YamlPath) -> tuple[YamlPath, str]:
    kind = err["type"]
    ctx: dict[str, Any] = dict(err.get("ctx") or {})
    value = err.get("input")
    if kind == "unknown_key":
        key = str(ctx["key"])
        allowed: list[str] = ctx["allowed"]
        close = difflib.get_close_matches(key, allowed, n=1)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        return (*path, key), f"unknown key{hint} (allowed: {', '.join(allowed)})"
    if kind == "field_error":
        return (*path, str(ctx["field"])), str(ctx["reason"])
    if kind == "model_type" and len(path) == 2 and path[0] in _SHORT_FORMS:
        return path, f"expected {_SHORT_FORMS[str(path[0])]} or a mapping, got {_show(value)}"
    if kind == "extra_forbidden":
        return path, "unknown key"
    if kind == "missing":
        return path, "is required"
    if kind == "union_tag_not_found":
        return (*path, "type"), f"is required: one of {', '.join(_CHANNEL_TYPES)}"
    if kind == "union_tag_invalid":
        return (*path, "type"), (
            f"must be one of {', '.join(_CHANNEL_TYPES)}, got {_show(ctx.get('tag'))}"
        )
    if kind in ("value_error", "assertion_error") and "error" in ctx:
        return path, str(ctx["error"])
    expected = {
        "int_type": "an integer",
        "int_parsing": "an integer",
        "int_from_float": "an integer",
        "string_type": "a string",
        "bool_type": "true or false",
        "bool_parsing": "true or false",
        "list_type": "a list",
        "dict_type": "a mapping",
        "model_type": "a mapping",
        "model_attributes_type": "a mapping",
        "float_type": "a number",
        "float_parsing": "a number",
    }.get(kind)
    if expected is not None:
        return path, f"expected {expected}, got {_show(value)}"
    if kind == "literal_error":
        return path, f"must be {ctx.get('expected')}, got {_show(value)}"
    return path, err["msg"]


def _validation_error(exc: ValidationError, doc: _Document, source: str) -> InventoryError:
    found: list[tuple[int, int, YamlPath, str]] = []
    for n, err in enumerate(exc.errors()):
        path, reason = _reason(err, _error_path(err["loc"], doc))
        found.append((doc.line(path) or 0, n, path, reason))
    line, _, path, reason = min(found)
    if len(found) > 1:
        more = len(found) - 1
        reason += f" (and {more} more problem{'s' if more > 1 else ''})"
    return InventoryError(source, line or None, _field_name(path) or None, reason)
