"""The shapes of the JSON API's answers, for ``/api/v1/openapi.json``.

The routes answer the dictionaries :mod:`.views` builds; these models only document
them (``responses={200: {"model": ...}}``), so the OpenAPI document describes every
field while what is answered stays byte for byte what it was. The tests validate
real answers against the document. A schema-1 report follows DESIGN.md ("JSON
report"), whose extensions (``handshakes``, a profile's ``leaf``) are allowed; the
web's own answers allow no field they do not list.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field

from chainwatch.model.values import FindingCode, Severity

Instant = Annotated[str, Field(pattern=r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$",
                               description="UTC, YYYY-MM-DDTHH:MM:SSZ",
                               examples=["2026-12-03T10:00:00Z"])]
Day = Annotated[str, Field(pattern=r"^\d{4}-\d\d-\d\d$", examples=["2026-12-03"])]
Sha256 = Annotated[str, Field(pattern=r"^[0-9a-f]{64}$",
                              description="SHA-256 of the DER, lower-case hex")]
Status = Literal["ok", "warning", "critical", "unknown"]


class _Closed(BaseModel):
    model_config = ConfigDict(extra="forbid")


class _Open(BaseModel):
    model_config = ConfigDict(extra="allow")


# -- schema-1 report (DESIGN.md) ------------------------------------------------------------


class TargetJson(_Closed):
    host: str
    port: int
    ip: str | None
    sni: str | None
    starttls: str | None


class ChainCert(_Open):
    index: int
    subject: str | None
    issuer: str | None
    sha256: Sha256
    not_before: Instant | None
    not_after: Instant | None
    is_ca: bool
    self_signed: bool


class ProfileVerdict(_Open):
    profile: str
    trusted: bool
    error: Literal["no_path", "expired", "not_yet_valid", "bad_signature", "purpose",
                   "other"] | None
    path: list[Sha256] = Field(description="leaf → anchor, the anchor included")
    breaks_at: Instant | None = Field(description="null when untrusted now")
    reason: str | None = None


class Finding(_Open):
    code: FindingCode
    severity: Severity
    message: str
    profile: str | None
    cert: Sha256 | None


class Report(_Open):
    """A schema-1 report (DESIGN.md, "JSON report")."""

    schema_: Literal[1] = Field(alias="schema")
    status: Status
    evaluated_at: Instant | None
    host: str | None
    breaks_at: Instant | None
    days_left: int | None
    chain: list[ChainCert]
    profiles: list[ProfileVerdict]
    findings: list[Finding]
    target: TargetJson | None = None


class Reports(_Closed):
    schema_: Literal[1] = Field(alias="schema")
    reports: list[Report] = Field(description="the newest report of each address")


# -- targets ------------------------------------------------------------------------------


class TargetRow(_Closed):
    key: str = Field(description="host:port, what /targets/{key} and the API take")
    target: TargetJson
    address: str | None
    status: Status
    breaks_at: Instant | None
    days_left: int | None
    observed_at: Instant
    leaf_sha256: Sha256 | None
    findings: list[FindingCode]
    owner: str | None
    tags: list[str]
    zone: str | None


class Filters(_Closed):
    status: list[Status]
    code: list[str]
    profile: str | None
    q: str | None
    owner: str | None
    tag: str | None
    zone: str | None
    limit: int
    offset: int


class Counts(_Closed):
    critical: int
    warning: int
    unknown: int
    ok: int


class TargetsPage(_Closed):
    schema_: Literal[1] = Field(alias="schema")
    total: int = Field(description="rows matching the filters, on every page")
    limit: int
    offset: int
    filters: Filters
    counts: Counts = Field(description="every target by status (no filter)")
    earliest_break: Instant | None
    targets: list[TargetRow]


class HistoryObservation(_Closed):
    observed_at: Instant
    target: TargetJson
    status: Status
    leaf_sha256: Sha256 | None
    chain: list[Sha256]
    breaks_at: Instant | None
    days_left: int | None
    findings: list[FindingCode]
    failure: str | None
    message: str | None


class History(_Closed):
    schema_: Literal[1] = Field(alias="schema")
    observations: list[HistoryObservation] = Field(description="newest first")


# -- alerts -------------------------------------------------------------------------------


class AckJson(_Closed):
    step: str
    until: Instant
    by: str
    why: str


class OpenAlert(_Closed):
    id: str = Field(description="what an ack takes")
    target: str
    step: str | None = Field(description="the current step, e.g. days:7")
    ackable: bool | None
    dedup_key: str
    message: str
    breaks_at: Instant | None
    days_left: int | None
    status: str | None
    fired: dict[str, Instant] = Field(description="step -> when it last fired, this cycle")
    last_fired: Instant | None
    ack: AckJson | None


class Alerts(_Closed):
    schema_: Literal[1] = Field(alias="schema")
    alerts: list[OpenAlert]


class AckDone(_Closed):
    schema_: Literal[1] = Field(alias="schema")
    target: str
    step: str
    until: Instant
    by: str
    why: str
    ackable: bool | None


# -- calendar, health, discovery ----------------------------------------------------------


class CalendarEvent(_Closed):
    uid: str = Field(description="stable across scans; a renewal makes a new one")
    kind: Literal["break", "renew"]
    key: str
    address: str | None
    host: str
    at: Instant
    date: Day
    profile: str | None
    reason: str


class Calendar(_Closed):
    schema_: Literal[1] = Field(alias="schema")
    events: list[CalendarEvent]


class FailingChannel(_Closed):
    channel: str
    since: Instant | None
    reason: str | None


class ZoneResult(_Closed):
    at: Instant | None
    worker: str | None
    observations: int | None
    status: str | None


class Zone(_Closed):
    zone: str
    workers: list[str]
    queue_depth: int
    last_worker_beat: Instant | None
    oldest_pending: Instant | None
    last_result: ZoneResult | None


class Health(_Closed):
    schema_: Literal[1] = Field(alias="schema")
    now: Instant
    last_scan: Instant | None
    heartbeat_age_seconds: float | None
    watchdog_firing: int
    outbox_pending: int
    failing_channels: list[FailingChannel]
    zones: list[Zone]
    inventory: bool


class UncoveredName(_Closed):
    name: str
    served_by: list[str]


class CtImport(_Closed):
    at: Instant
    source: str
    names: int


class CtName(_Closed):
    name: str
    source: str
    first_seen: Instant
    last_seen: Instant


class CtResults(_Closed):
    last_import: CtImport | None
    names: int
    uncovered: list[CtName]


class Discovery(_Closed):
    schema_: Literal[1] = Field(alias="schema")
    inventory: bool
    uncovered: list[UncoveredName]
    ct: CtResults


class ErrorDetail(_Closed):
    code: str = Field(examples=["invalid_parameter", "not_found", "unauthorized"])
    message: str


class Error(_Closed):
    error: ErrorDetail
