"""``chainwatch exporter``: the multi-target exporter pattern of blackbox_exporter.

``GET /probe?target=HOST:PORT&module=NAME`` probes the target now (every address it
resolves to), analyses it with the module's profiles through the service's own
:func:`~chainwatch.service.collect.collect` (the path ``scan`` takes; analyses are
memoised by the analysis engine as everywhere), and answers that target's
``chainwatch_`` series plus the blackbox-compatible ones:

* ``probe_success``: 1 when every address answered with a chain that every profile of
  the module trusts now and that covers the name; else 0.
* ``probe_duration_seconds``: how long the probe and analysis took.
* ``probe_ssl_earliest_cert_expiry``: the earliest ``notAfter`` of any presented
  certificate (blackbox's meaning, expired cross-signs included).
* ``probe_ssl_last_chain_expiry_timestamp_seconds``: the last instant a verified chain
  stays valid: the latest profile ``breaks_at`` minus one second (what blackbox computes
  from Go's verified chains; chainwatch's per-profile answer is
  ``chainwatch_breaks_at_timestamp_seconds``).
* ``probe_tls_version_info{version="TLS 1.3"}``: the negotiated version.

A malformed target or an unknown module is HTTP 400 with a one-line reason. The
``X-Prometheus-Scrape-Timeout-Seconds`` header caps the probe (each phase gets a share
of it, a probe waiting for a free slot gives up within it). At most
``concurrency`` probes run at once.

Where the work runs: each ``/probe`` runs in one of the HTTP server's worker threads
(as many as requests in flight), and that thread probes on an event loop of its own that
lives as long as the thread does (:func:`run_here`), then analyses the chains there
(memoised by the engine as everywhere: a chain seen before is re-evaluated at the new
instant without a new path search). That is ``check``'s own probe-and-judge path minus
what a one-off command pays per call: no threads and no event loop are created per
request (``probe_all`` makes two of each), and none of ``collect``'s sweep-wide work
(situations, uncovered names, history) is done for a target nobody stores (:func:`judge`).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import ipaddress
import socket
import threading
import time
import weakref
from collections.abc import Callable, Coroutine, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

from fastapi import FastAPI, Request
from fastapi.responses import PlainTextResponse, Response
from prometheus_client.core import GaugeMetricFamily, Metric

from chainwatch.config.exporter import DEFAULT_MODULE, ExporterConfig, Module
from chainwatch.config.values import Endpoint
from chainwatch.errors import InputError
from chainwatch.model import FindingCode, RenewalPolicy, Report, Status
from chainwatch.model.names import parse_endpoint, parse_ip
from chainwatch.probe import Observation
from chainwatch.probe.handshake import Limits
from chainwatch.probe.parallel import probe_targets
from chainwatch.service.collect import (
    Item,
    network_inputs,
    population_handshakes,
    renewal_policies,
    track,
)
from chainwatch.service.metrics import CONTENT_TYPE, render, states_of_reports, target_families
from chainwatch.service.observe import report_for

SCRAPE_TIMEOUT_HEADER = "X-Prometheus-Scrape-Timeout-Seconds"
_MARGIN = 0.25  # seconds kept back from the scrape timeout for analysis and the answer
_PHASES = 4  # resolve, connect, STARTTLS, handshake: each gets a share of the budget
_PER_ADDRESS = 8  # probes of one address at once within a request (collect's default)

T = TypeVar("T")


class ProbeRequestError(InputError):
    """A ``/probe`` request the exporter cannot serve; ``status`` is the HTTP status."""

    def __init__(self, message: str, status: int = 400) -> None:
        self.status = status
        super().__init__(message)


@dataclass(frozen=True)
class ProbeAnswer:
    """What one ``/probe`` found: the reports and observations of each address."""

    reports: tuple[Report, ...]
    observations: tuple[Observation, ...]
    module: Module
    duration: float


def parse_target(text: str, module: Module) -> tuple[str, int]:
    """``HOST[:PORT]`` / ``[V6]:PORT`` as (ASCII host, port); the module's STARTTLS port,
    else 443, when none is given. Raises :class:`ProbeRequestError`."""
    raw = text.strip()
    if not raw:
        raise ProbeRequestError("target parameter is missing (target=HOST:PORT)")
    shown = raw[:80]
    if "://" in raw or "/" in raw or any(c.isspace() for c in raw):
        raise ProbeRequestError(f"target {shown!r}: expected HOST:PORT, not a URL")
    try:
        return parse_endpoint(raw, module.starttls.default_port if module.starttls else 443)
    except ValueError as exc:
        raise ProbeRequestError(f"target {shown!r}: {exc}") from None


def _budget(header: str | None, module: Module) -> float:
    """Seconds the whole probe may take: the module's timeout per phase, capped by the
    scrape timeout Prometheus announces."""
    full = module.timeout.total_seconds() * _PHASES
    if header is None:
        return full
    try:
        scrape = float(header)
    except ValueError:
        raise ProbeRequestError(f"{SCRAPE_TIMEOUT_HEADER}: not a number: {header[:40]!r}") \
            from None
    if not scrape > 0:
        raise ProbeRequestError(f"{SCRAPE_TIMEOUT_HEADER}: must be positive, got {header[:40]}")
    return max(0.1, min(full, scrape - _MARGIN))


async def _resolve(host: str, port: int, timeout: float) -> list[str]:
    if parse_ip(host) is not None:
        return [host]
    try:
        infos = await asyncio.wait_for(
            asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM),
            timeout)
    except (OSError, TimeoutError) as exc:
        raise ProbeRequestError(f"target {host}: cannot resolve: {exc or 'timeout'}",
                                403) from None
    return list(dict.fromkeys(str(info[4][0]) for info in infos))


class _ThreadLoop:
    """An event loop kept by one thread for all its probes, closed when the thread ends."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        weakref.finalize(self, self.loop.close)

    def run(self, work: Coroutine[Any, Any, T]) -> T:
        try:
            return self.loop.run_until_complete(_settled(work))
        finally:
            # What ``asyncio.run`` would do at its end: nothing of one probe (a task left
            # behind by a failure) runs on into the next.
            left = asyncio.all_tasks(self.loop)
            for task in left:
                task.cancel()
            if left:
                self.loop.run_until_complete(asyncio.gather(*left, return_exceptions=True))


async def _settled(work: Coroutine[Any, Any, T]) -> T:
    try:
        return await work
    finally:
        await asyncio.sleep(0)  # transports closed at the end finish closing now


_LOCAL = threading.local()


def run_here(work: Coroutine[Any, Any, T]) -> T:
    """Run ``work`` to completion on the calling thread's own long-lived event loop (made
    at its first call, closed when the thread ends); the thread must have no loop
    running."""
    mine: _ThreadLoop | None = getattr(_LOCAL, "loop", None)
    if mine is None:
        mine = _LOCAL.loop = _ThreadLoop()
    return mine.run(work)


class Exporter:
    """The exporter's probing, independent of the HTTP server in front of it."""

    def __init__(self, config: ExporterConfig, *,
                 clock: Callable[[], dt.datetime] = lambda: dt.datetime.now(dt.UTC)) -> None:
        self.config = config
        self.clock = clock
        self._slots = threading.BoundedSemaphore(config.concurrency)

    def module(self, name: str | None) -> Module:
        chosen = name or DEFAULT_MODULE
        module = self.config.modules.get(chosen)
        if module is None:
            known = ", ".join(sorted(self.config.modules))
            raise ProbeRequestError(f"unknown module {chosen[:60]!r} (modules: {known})")
        return module

    def probe(self, target: str, module_name: str | None = None,
              scrape_timeout: str | None = None) -> ProbeAnswer:
        """Probe and analyse ``target`` now, blocking the calling thread (which must not
        be running an event loop); raises :class:`ProbeRequestError`."""
        started = time.perf_counter()
        module = self.module(module_name)
        host, port = parse_target(target, module)
        budget = _budget(scrape_timeout, module)
        deadline = started + budget
        if not self._slots.acquire(timeout=budget):
            raise ProbeRequestError(f"{self.config.concurrency} probes in flight: no slot "
                                    f"within {budget:.1f}s", 503)
        try:
            phase = max(0.05, min(module.timeout.total_seconds(),
                                  (deadline - time.perf_counter()) / _PHASES))
            endpoints, observations = run_here(self._observe(host, port, module, phase))
            reports = judge(endpoints, observations, self.clock())
        finally:
            self._slots.release()
        return ProbeAnswer(tuple(reports), tuple(observations), module,
                           time.perf_counter() - started)

    async def _observe(self, host: str, port: int, module: Module, phase: float
                       ) -> tuple[tuple[Endpoint, ...], list[Observation]]:
        """The endpoints of one request (an allow list pins each checked address) and
        what probing them saw."""
        ips: Sequence[str | None] = [None]
        if self.config.allow is not None:
            ips = await self._allowed(host, port, phase)
        endpoints = tuple(
            Endpoint(host=host, port=port, profiles=module.profiles, ip=ip,
                     sni=module.sni if module.sni != host else None,
                     starttls=module.starttls, timeout=dt.timedelta(seconds=phase),
                     warn_days=module.warn_days, crit_days=module.crit_days)
            for ip in ips
        )
        observations = await probe_targets(
            [e.target for e in endpoints], concurrency=len(endpoints) * 4,
            per_address=_PER_ADDRESS, limits=Limits(timeout=phase))
        return endpoints, observations

    async def _allowed(self, host: str, port: int, timeout: float) -> list[str]:
        allow = self.config.allow or ()
        addresses = await _resolve(host, port, timeout)
        refused = [a for a in addresses
                   if not any(ipaddress.ip_address(a) in net for net in allow)]
        if refused or not addresses:
            raise ProbeRequestError(f"target {host}: {', '.join(refused) or 'no address'} "
                                    "not in the exporter's allow list", 403)
        return addresses

    def answer(self, target: str, module_name: str | None = None,
               scrape_timeout: str | None = None) -> tuple[bytes, str]:
        """The ``/probe`` body and content type."""
        return exposition(self.probe(target, module_name, scrape_timeout))


def judge(endpoints: Sequence[Endpoint], observations: Sequence[Observation],
          at: dt.datetime) -> list[Report]:
    """The reports of one target's probed addresses: what
    :func:`~chainwatch.service.collect.collect` does after its probe (the profiles' own
    handshakes, network inputs, the analysis, the findings across the addresses), with
    no history and no sweep."""
    by_ip = {e.ip: e for e in endpoints}
    items: list[tuple[Item, Observation]] = []
    for obs in observations:
        e = by_ip.get(obs.target.ip) or endpoints[0]
        items.append((Item(obs.target, e.target.key, e.server_name or e.host, e), obs))
    served = population_handshakes(items)
    inputs = network_inputs(items)
    reports = [
        report_for(obs, item.source.profiles, at=at, host=item.host,
                   warn_days=item.source.warn_days, crit_days=item.source.crit_days,
                   revocation=inp.revocation, fetched=inp.fetched, served=served.get(n, ()))
        for n, ((item, obs), inp) in enumerate(zip(items, inputs, strict=True))
    ]
    policies, _ = renewal_policies([i for i, _ in items], reports)
    reports, _ = track([i for i, _ in items], reports, {}, at, policies)
    return reports


def exposition(found: ProbeAnswer) -> tuple[bytes, str]:
    """The ``/probe`` body of one answer, and its content type."""
    states = states_of_reports(found.reports, [RenewalPolicy() for _ in found.reports])

    def families() -> Iterator[Metric]:
        yield from blackbox_families(found)
        yield from target_families(states, per_cert=True)

    return render(families()), CONTENT_TYPE


def success(report: Report) -> bool:
    """blackbox's ``probe_success`` for one address: a chain every profile trusts now,
    covering the name."""
    return (report.status is not Status.UNKNOWN and bool(report.profiles)
            and all(p.trusted for p in report.profiles)
            and not any(f.code is FindingCode.HOSTNAME_MISMATCH for f in report.findings))


_VERSIONS = {"TLSv1": "TLS 1.0", "TLSv1.1": "TLS 1.1", "TLSv1.2": "TLS 1.2",
             "TLSv1.3": "TLS 1.3", "SSLv3": "SSL 3.0"}


def blackbox_families(found: ProbeAnswer) -> Iterator[Metric]:
    """The blackbox_exporter-compatible series of one probe (all addresses together)."""
    reports = found.reports
    g = GaugeMetricFamily("probe_success", "1 when every address served a chain that every "
                          "profile of the module trusts now and that covers the name.")
    g.add_metric((), 1.0 if reports and all(success(r) for r in reports) else 0.0)
    yield g
    g = GaugeMetricFamily("probe_duration_seconds", "Seconds the probe and analysis took.")
    g.add_metric((), found.duration)
    yield g
    presented = [c.not_after.timestamp() for r in reports for c in r.chain]
    g = GaugeMetricFamily("probe_ssl_earliest_cert_expiry",
                          "Earliest notAfter of any presented certificate (blackbox).")
    if presented:
        g.add_metric((), min(presented))
    yield g
    verified = [p.breaks_at.timestamp() - 1 for r in reports for p in r.profiles
                if p.trusted and p.breaks_at is not None]
    g = GaugeMetricFamily("probe_ssl_last_chain_expiry_timestamp_seconds",
                          "Last instant a verified chain stays valid (the latest profile "
                          "breaks_at minus one second).")
    if verified:
        g.add_metric((), max(verified))
    yield g
    g = GaugeMetricFamily("probe_tls_version_info", "The negotiated TLS version.",
                          labels=("version",))
    for version in dict.fromkeys(o.tls_version for o in found.observations if o.tls_version):
        g.add_metric((_VERSIONS.get(version, version),), 1.0)
    yield g


# -- the HTTP server ------------------------------------------------------------------------

_INDEX = """chainwatch exporter

GET /probe?target=HOST:PORT&module=NAME   probe now; the target's chainwatch_ series and
                                          blackbox's probe_* series
modules: {modules}
"""


def create_app(exporter: Exporter) -> FastAPI:
    """The exporter's ASGI application (FastAPI): ``/probe``, ``/`` and ``/-/healthy``."""
    app = FastAPI(title="chainwatch exporter", docs_url=None, redoc_url=None,
                  openapi_url=None)

    def probe(request: Request) -> Response:
        # A plain (sync) route without FastAPI's parameter injection (this is the one hot
        # path): Starlette runs it in its worker threads, each of which probes on an event
        # loop of its own, never blocking the server's.
        query = request.query_params
        try:
            body, content_type = exporter.answer(
                query.get("target", ""), query.get("module"),
                request.headers.get(SCRAPE_TIMEOUT_HEADER))
        except ProbeRequestError as exc:
            return PlainTextResponse(f"{exc}\n", status_code=exc.status)
        return Response(content=body, media_type=content_type)

    app.add_route("/probe", probe, methods=["GET"])

    @app.get("/")
    async def index() -> Response:
        names = ", ".join(sorted(exporter.config.modules))
        return PlainTextResponse(_INDEX.format(modules=names))

    @app.get("/-/healthy")
    async def healthy() -> Response:
        return PlainTextResponse("ok\n")

    return app


def serve(config: ExporterConfig, host: str, port: int) -> None:
    """Run the exporter on ``host:port`` until SIGINT/SIGTERM (uvicorn)."""
    import uvicorn

    uvicorn.run(create_app(Exporter(config)), host=host, port=port, log_level="warning",
                access_log=False)
