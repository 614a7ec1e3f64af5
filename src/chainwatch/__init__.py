"""chainwatch: make TLS certificate outages impossible to miss.

The engine is values in, values out (:class:`Analyzer` is the engine with its memo
tables; :func:`analyze` runs the default one)::

    from chainwatch import analyze, resolve_profile, load_bundle_file
    report = analyze(load_bundle_file("fullchain.pem"),
                     [resolve_profile("mozilla"), resolve_profile("legacy:mozilla@2016-06-01")],
                     at=datetime(2021, 9, 29, tzinfo=UTC), host="app.example.com")
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from chainwatch.analysis.engine import Analyzer, analyze
    from chainwatch.errors import (
        BundleError,
        ChainwatchError,
        InputError,
        InventoryError,
        ProbeError,
        ProfileError,
        StoreError,
    )
    from chainwatch.model import (
        Behaviour,
        Building,
        Cert,
        Finding,
        FindingCode,
        PathError,
        Profile,
        ProfileResult,
        Report,
        Severity,
        Status,
        Store,
        Target,
    )
    from chainwatch.model.bundle import load_bundle_file, parse_bundle
    from chainwatch.stores import resolve_profile

_HOMES = {
    "chainwatch.analysis.engine": ("Analyzer", "analyze"),
    "chainwatch.errors": ("BundleError", "ChainwatchError", "InputError", "InventoryError",
                          "ProbeError", "ProfileError", "StoreError"),
    "chainwatch.model": ("Behaviour", "Building", "Cert", "Finding", "FindingCode",
                         "PathError", "Profile", "ProfileResult", "Report", "Severity",
                         "Status", "Store", "Target"),
    "chainwatch.model.bundle": ("load_bundle_file", "parse_bundle"),
    "chainwatch.stores": ("resolve_profile",),
}
_HOME_OF = {name: module for module, names in _HOMES.items() for name in names}
"""Where each name of the public API lives. They are imported when first asked for:
importing one room (``chainwatch.errors``, ``chainwatch.model``) does not import every
other one, so a command imports only what it uses."""

__version__: str  # read from the installed metadata when first asked for (importlib.metadata
# costs a command like ``chainwatch check`` a tenth of its imports)


def __getattr__(name: str) -> Any:
    home = _HOME_OF.get(name)
    if home is not None:
        value = getattr(import_module(home), name)
        globals()[name] = value
        return value
    if name != "__version__":
        raise AttributeError(f"module 'chainwatch' has no attribute {name!r}")
    from importlib.metadata import PackageNotFoundError, version

    try:
        found = version("chainwatch")
    except PackageNotFoundError:  # running from a source tree that was never installed
        found = "0+unknown"
    globals()["__version__"] = found
    return found


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})

__all__ = [
    "Analyzer",
    "Behaviour",
    "Building",
    "BundleError",
    "Cert",
    "ChainwatchError",
    "Finding",
    "FindingCode",
    "InputError",
    "InventoryError",
    "PathError",
    "ProbeError",
    "Profile",
    "ProfileError",
    "ProfileResult",
    "Report",
    "Severity",
    "Status",
    "Store",
    "StoreError",
    "Target",
    "__version__",
    "analyze",
    "load_bundle_file",
    "parse_bundle",
    "resolve_profile",
]
