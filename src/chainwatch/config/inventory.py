"""The inventory: the YAML file that says what chainwatch watches and whom it tells.

``load_inventory(path) -> Inventory`` turns the file (DESIGN.md, Inventory and Alerts)
into frozen domain values in three steps, each of which fails with one
:class:`~chainwatch.errors.InventoryError` naming the file, the line and the field::

    inv.yaml:7: endpoints[2].port: must be 1-65535, got 70000

1. **YAML to data.** PyYAML composes the document into nodes, which carry their line;
   the nodes are turned into plain Python data while a map from each value's path
   (``("endpoints", 2, "port")``) to its line is kept. Duplicate keys, which YAML
   parsers silently collapse, are rejected here.
2. **Data to edge models.** pydantic models with ``extra="forbid"`` check types,
   ranges and grammar (durations like ``90s``/``30m``/``1h``/``100d``, ports, STARTTLS
   protocols, secrets given only by reference). A pydantic error location is mapped
   back to a line through the path map.
3. **Edge models to domain values.** Defaults are applied, profile names and specs
   are resolved to trust stores (a named profile combines the anchors of all the
   stores it lists), relative ``file:`` paths and file globs are resolved against the
   inventory's directory, and cross references are checked (step channels, duplicate
   endpoints).

The domain values (:class:`Inventory`, :class:`Endpoint`, :class:`FileSource`,
:class:`AlertsConfig`, ...) are frozen dataclasses; nothing in them does I/O when
built. Credentials are :class:`Secret` references whose ``repr`` never shows a value.
"""

from __future__ import annotations

from chainwatch.alerts.config import (
    DEFAULT_BROKEN,
    DEFAULT_SHORT_LIVED,
    DEFAULT_STEPS,
    Action,
    AlertsConfig,
    AlertStep,
    AppriseChannel,
    BrokenRule,
    Channel,
    Deadman,
    FileChannel,
    GitHubChannel,
    GitLabChannel,
    JiraChannel,
    PagerDutyChannel,
    Route,
    Secret,
    ShortLivedPolicy,
    ShortLivedStep,
    WebhookChannel,
)
from chainwatch.config.build import batch_document, load_inventory, parse_inventory
from chainwatch.config.schema import MAX_INVENTORY_BYTES, parse_duration, renewal_policy
from chainwatch.config.values import (
    DEFAULT_ZONE,
    STARTTLS_PORTS,
    Defaults,
    Endpoint,
    FileSource,
    Inventory,
    MetricsSettings,
    Zone,
)
from chainwatch.model.names import StartTLS

__all__ = [
    "DEFAULT_BROKEN",
    "DEFAULT_SHORT_LIVED",
    "DEFAULT_STEPS",
    "DEFAULT_ZONE",
    "MAX_INVENTORY_BYTES",
    "STARTTLS_PORTS",
    "Action",
    "AlertStep",
    "AlertsConfig",
    "AppriseChannel",
    "BrokenRule",
    "Channel",
    "Deadman",
    "Defaults",
    "Endpoint",
    "FileChannel",
    "FileSource",
    "GitHubChannel",
    "GitLabChannel",
    "Inventory",
    "JiraChannel",
    "MetricsSettings",
    "PagerDutyChannel",
    "Route",
    "Secret",
    "ShortLivedPolicy",
    "ShortLivedStep",
    "StartTLS",
    "WebhookChannel",
    "Zone",
    "batch_document",
    "load_inventory",
    "parse_duration",
    "parse_inventory",
    "renewal_policy",
]
