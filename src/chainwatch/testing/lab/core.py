"""The running lab: binds each scenario's port on loopback, serves its certificates, and
writes the inventory, trust bundles and a README for trying chainwatch against them.

As a library (the test suite's use)::

    with Lab(tmp_path, port_base=0) as lab:          # ephemeral ports
        ep = lab.endpoint("crates-expired")
        ep.port, ep.sni, ep.status, ep.codes          # where it is and what to expect
        lab.renew("crates-expired")                   # install the renewal at last
        lab.swap_hierarchy("healthy")                 # serve from the other CA hierarchy
        lab.replace_certificate("stale", chain, key, ip="127.0.0.2")

From the command line: ``chainwatch lab`` (see :func:`run_foreground`).
"""

from __future__ import annotations

import datetime as dt
import errno
import ipaddress
import json
import os
import signal
import ssl
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING

from chainwatch.errors import LabError
from chainwatch.model import Cert, Status
from chainwatch.testing.lab.scenarios import (
    Scenario,
    Served,
    Site,
    TrustBundle,
    World,
    build_scenarios,
    build_world,
    issue,
    trust_bundles,
)
from chainwatch.testing.lab.servers import (
    STARTTLS_SERVERS,
    ServerLoop,
    SniRouter,
    server_context,
    tls_handler,
)

if TYPE_CHECKING:
    from chainwatch.service.collect import ScanResult
from chainwatch.testing.pki import PrivateKey, pem_of

DEFAULT_DIR = "chainwatch-lab"
DEFAULT_PORT_BASE = 9440
DEFAULT_LISTEN = "127.0.0.1"


LAB_CHANNEL = "lab-log"
"""The lab inventory's alert channel: a ``file`` channel writing :data:`DELIVERIES`."""
DELIVERIES = "deliveries.jsonl"


@dataclass(frozen=True)
class LabEndpoint:
    """One lab endpoint: where it listens, the name to send, and what to expect.

    ``status`` and ``codes`` describe the certificate served at start, judged for
    ``profiles`` (inventory profile names): ``chainwatch check`` reports that status and
    at least those finding codes. ``scenario`` is the port it shares with other
    endpoints (the HelloSign case), ``ip`` the address (the stale case has two).
    """

    name: str
    scenario: str
    incident: str
    description: str
    ip: str
    port: int
    sni: str
    starttls: str | None
    profiles: tuple[str, ...]
    status: Status
    codes: frozenset[str]

    @property
    def hostport(self) -> str:
        return f"[{self.ip}]:{self.port}" if ":" in self.ip else f"{self.ip}:{self.port}"

    def check_args(self, profile_specs: dict[str, str]) -> list[str]:
        """``chainwatch check`` arguments that judge this endpoint as the inventory does."""
        args = ["check", self.hostport, "--sni", self.sni]
        if self.starttls is not None:
            args += ["--starttls", self.starttls]
        for profile in self.profiles:
            args += ["--profile", profile_specs[profile]]
        return args

    def inventory_entry(self) -> dict[str, object]:
        entry: dict[str, object] = {"host": self.sni, "ip": self.ip, "port": self.port,
                                    "sni": self.sni}
        if self.starttls is not None:
            entry["starttls"] = self.starttls
        entry["profiles"] = list(self.profiles)
        entry["tags"] = ["lab", self.scenario]
        return entry


@dataclass
class _Listener:
    scenario: Scenario
    slot: int
    ip: str
    port: int
    router: SniRouter
    sites: list[Site]
    served: dict[str, Served]  # by SNI name


def second_address_of(listen: str) -> str | None:
    """The next IPv4 loopback address after ``listen`` (127.0.0.1 -> 127.0.0.2), or
    ``None`` (IPv6 has a single loopback address)."""
    address = ipaddress.ip_address(listen)
    if address.version != 4:
        return None
    nxt = address + 1
    return str(nxt) if nxt in ipaddress.ip_network("127.0.0.0/8") else None


class Lab:
    """The incident lab. ``start()`` (or ``with``) builds the hierarchies, listens and
    writes ``directory``; ``stop()`` closes every port.

    Args:
        directory: where ``inventory.yaml``, ``trust/``, ``bundles/`` and ``README.txt``
            go (created if missing).
        listen: a loopback address; the lab serves broken certificates on purpose and
            never listens elsewhere.
        port_base: scenario ``i`` listens on ``port_base + i``; 0 gives every scenario an
            ephemeral port.
        second_address: the other loopback address for the stale-deployment case
            (default: ``listen`` + 1; ``None`` leaves that case out). If it cannot be
            bound (not every OS routes all of 127/8), the case is left out.
        now: the instant the hierarchies are dated from (default: the current time).
    """

    def __init__(
        self,
        directory: str | Path = DEFAULT_DIR,
        listen: str = DEFAULT_LISTEN,
        port_base: int = DEFAULT_PORT_BASE,
        *,
        second_address: str | None = "auto",
        now: dt.datetime | None = None,
    ) -> None:
        self.directory = Path(directory).expanduser().absolute()
        self.listen = _loopback(listen, "--listen")
        if not 0 <= port_base <= 65535:
            raise LabError(f"--port-base {port_base}: must be 0 (ephemeral ports) or 1-65535")
        self.port_base = port_base
        if second_address == "auto":
            second_address = second_address_of(self.listen)
        self.second_address = (None if second_address is None
                               else _loopback(second_address, "second address"))
        self._now = now
        self._loop: ServerLoop | None = None
        self._listeners: list[_Listener] = []
        self._endpoints: tuple[LabEndpoint, ...] = ()
        self._lock = threading.Lock()
        self.notes: list[str] = []
        self.world: World | None = None
        self.bundles: tuple[TrustBundle, ...] = ()

    # -- lifecycle ------------------------------------------------------------------------

    def __enter__(self) -> Lab:
        return self.start()

    def __exit__(self, *_: object) -> None:
        self.stop()

    def start(self) -> Lab:
        """Build, listen and write the files. Raises :class:`LabError` when a port or
        address cannot be bound (nothing is left listening then)."""
        if self._loop is not None:
            return self
        self.world = build_world(self._now)
        self.bundles = trust_bundles(self.world)
        scenarios = build_scenarios(self.world, second_address=self.second_address is not None)
        self._loop = ServerLoop(name="chainwatch-lab")
        try:
            for index, scenario in enumerate(scenarios):
                self._listen(index, scenario)
            self._endpoints = tuple(self._endpoint_rows())
            self.write_files()
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        """Close every port and connection (idempotent)."""
        loop, self._loop = self._loop, None
        if loop is not None:
            loop.close()

    @property
    def running(self) -> bool:
        return self._loop is not None

    # -- what the lab serves --------------------------------------------------------------

    @property
    def endpoints(self) -> tuple[LabEndpoint, ...]:
        return self._endpoints

    def endpoint(self, name: str, *, ip: str | None = None) -> LabEndpoint:
        """The endpoint called ``name`` (on address ``ip`` when it has two)."""
        found = [e for e in self._endpoints if e.name == name and ip in (None, e.ip)]
        if not found:
            known = ", ".join(dict.fromkeys(e.name for e in self._endpoints))
            raise KeyError(f"no lab endpoint {name!r}" + (f" on {ip}" if ip else "")
                           + f"; endpoints: {known}")
        return found[0]

    def served(self, name: str, *, ip: str | None = None) -> tuple[Cert, ...]:
        """The chain ``name`` serves to new connections now."""
        listener, site = self._sites(name, ip)[0]
        return listener.served[site.sni].chain

    def replace_certificate(
        self, name: str, chain: Sequence[Cert], key: PrivateKey, *, ip: str | None = None
    ) -> None:
        """Serve ``chain`` (leaf first, in the order given) with ``key`` for ``name``
        from now on, on every address of ``name`` or only on ``ip``. Connections already
        in their handshake finish with the old certificate."""
        self._install(name, Served(tuple(chain), key, "custom"), ip)

    def renew(self, name: str, *, ip: str | None = None, days: int | None = None) -> Served:
        """Issue ``name`` a fresh leaf from the same hierarchy (valid from now for
        ``days``, default the scenario's usual lifetime) and serve it: a renewal that was
        installed. Returns what is now served."""
        listener, site = self._sites(name, ip)[0]
        hierarchy = listener.served[site.sni].hierarchy
        world = self._world()
        if hierarchy not in world.issuers:
            hierarchy = "lab"
        served = issue(world, hierarchy, site.sni, days=days or site.lifetime)
        self._install(name, served, ip)
        return served

    def swap_hierarchy(self, name: str, *, ip: str | None = None,
                       to: str | None = None) -> Served:
        """Serve ``name`` a fresh leaf from a different CA hierarchy (default: ``alt``,
        or ``lab`` when it is already on ``alt``), as a CA change would. Returns what is
        now served."""
        listener, site = self._sites(name, ip)[0]
        current = listener.served[site.sni].hierarchy
        world = self._world()
        target = to or ("lab" if current == "alt" else "alt")
        if target not in world.issuers:
            raise KeyError(f"unknown hierarchy {target!r}; one of {', '.join(world.issuers)}")
        served = issue(world, target, site.sni, days=site.lifetime)
        self._install(name, served, ip)
        return served

    # -- files ----------------------------------------------------------------------------

    @property
    def inventory_path(self) -> Path:
        return self.directory / "inventory.yaml"

    def profile_specs(self) -> dict[str, str]:
        """Each inventory profile as a ``--profile`` spec for ``chainwatch check``."""
        specs: dict[str, str] = {}
        for b in self.bundles:
            spec = f"file:{self.directory / b.inventory_path}"
            specs[b.profile] = f"legacy:{spec}" if b.building == "legacy" else spec
        return specs

    def write_files(self) -> None:
        """(Re)write inventory.yaml, trust/*.pem, bundles/*.pem and README.txt."""
        d = self.directory
        (d / "trust").mkdir(parents=True, exist_ok=True)
        (d / "bundles").mkdir(exist_ok=True)
        for b in self.bundles:
            (d / b.inventory_path).write_bytes(pem_of(*b.anchors))
        for listener in self._listeners:
            for site in listener.sites:
                suffix = "" if listener.slot == 0 else f"@{listener.ip}"
                path = d / "bundles" / f"{site.name}{suffix}.pem"
                path.write_bytes(pem_of(*listener.served[site.sni].chain))
        self.inventory_path.write_text(self.inventory_text(), encoding="utf-8")
        (d / "README.txt").write_text(self.instructions(), encoding="utf-8")

    def inventory_text(self) -> str:
        lines = [
            "# chainwatch incident lab: every endpoint below is served by `chainwatch lab`",
            "# on loopback with deliberately broken (or healthy) throwaway certificates.",
            "# Relative file: paths are resolved against this file's directory.",
            "defaults: {profiles: [lab], warn_days: 30, crit_days: 7, interval: 5m, "
            "timeout: 5s}",
            "# The lab's OCSP, CRL and ACME servers listen on loopback, which chainwatch does",
            "# not fetch from unless allowed (URLs in certificates could point anywhere).",
            "fetch: {allow_private: [127.0.0.0/8, '::1/128']}",
            "profiles:",
        ]
        for b in self.bundles:
            lines.append(f"  # {b.description}")
            lines.append(f"  {b.profile}: {{trust: [{json.dumps('file:' + b.inventory_path)}]"
                         f", building: {b.building}}}")
        lines.append("endpoints:")
        for e in self._endpoints:
            lines.append(f"  # {e.name}: {e.description} (expect {_expectation(e)})")
            lines.append(f"  - {json.dumps(e.inventory_entry())}")
        lines += [
            "# Alerts: every delivery is appended to deliveries.jsonl beside this file",
            "# (one JSON line each; watch it with `tail -f`). Replace or add channels to try",
            "# your own routing, e.g. hook: {type: webhook, url_env: LAB_WEBHOOK_URL}.",
            "alerts:",
            "  channels:",
            f"    {LAB_CHANNEL}: {{type: file, path: {DELIVERIES}}}",
            "  steps:",
            "    - {days: 30, action: ticket}",
            "    - {days: 14, action: notify}",
            "    - {days: 7, action: page, repeat: 24h}",
            "    - {days: 2, action: page, repeat: 4h, ackable: false}",
            "  broken: {action: page, repeat: 1h}",
        ]
        return "\n".join(lines) + "\n"

    def instructions(self) -> str:
        """What the lab serves and how to check it (printed at start, and README.txt)."""
        specs = self.profile_specs()
        d = self.directory
        ports = sorted({e.port for e in self._endpoints})
        span = f"{ports[0]}-{ports[-1]}" if ports and self.port_base else "ephemeral ports"
        addresses = ", ".join(dict.fromkeys(e.ip for e in self._endpoints))
        out = [
            f"chainwatch lab: {len(self._endpoints)} endpoints on {addresses} ({span})",
            f"files in {d}:",
            "  inventory.yaml   every endpoint, with ip, port, sni and profiles",
            "  trust/           the trust bundles behind the inventory's profiles:",
        ]
        for b in self.bundles:
            out.append(f"    {b.profile:<15} {specs[b.profile]}")
            out.append(f"    {'':<15} {b.description}")
        out += [
            "  bundles/         each served chain (try: chainwatch check-bundle FILE ...)",
            "",
            "Endpoints (name, address, SNI, expected status and findings):",
        ]
        for e in self._endpoints:
            extra = f" starttls={e.starttls}" if e.starttls else ""
            out.append(f"  {e.name:<28} {e.hostport:<16} {e.sni:<26} {_expectation(e)}{extra}")
            out.append(f"  {'':<28} {e.incident}: {e.description}")
        out += ["", "Check one endpoint, judged as the inventory judges it:"]
        for e in self._endpoints:
            out.append(f"  chainwatch {' '.join(e.check_args(specs))}")
        hourfleet = [e for e in self._endpoints if e.name == "hourfleet"]
        if hourfleet:
            out += [
                "",
                "Check a renewed bundle against every consumer before deploying it (Hourfleet):",
                f"  chainwatch check-bundle {d / 'bundles' / 'hourfleet.pem'} --host "
                f"{hourfleet[0].sni} --profile {specs['lab']} --profile {specs['backend']}",
            ]
        out += [
            "",
            f"Alerts go to {d / DELIVERIES} (one JSON line per delivery):",
            f"  tail -f {d / DELIVERIES}",
            f"  chainwatch alerts list {self.inventory_path} --db {d / 'lab.sqlite'}",
            "",
            "Scan them all (a separate database keeps the lab out of your real history):",
            f"  chainwatch scan {self.inventory_path} --db {d / 'lab.sqlite'}",
            "",
            "Watch an escalation as if it were a week later:",
            f"  chainwatch scan {self.inventory_path} --db {d / 'lab.sqlite'} --at "
            f"{(dt.datetime.now(dt.UTC) + dt.timedelta(days=7)).date().isoformat()}",
        ]
        out.extend(f"note: {n}" for n in self.notes)
        return "\n".join(out) + "\n"

    # -- internals ------------------------------------------------------------------------

    def _world(self) -> World:
        if self.world is None:
            raise RuntimeError("the lab is not started")
        return self.world

    def _listen(self, index: int, scenario: Scenario) -> None:
        assert self._loop is not None
        port = self.port_base + index if self.port_base else 0
        if port > 65535:
            raise LabError(f"--port-base {self.port_base}: scenario {index + 1} would need "
                           f"port {port}; choose a lower base")
        slots = sorted({s.slot for s in scenario.sites})
        for slot in slots:
            ip = self.listen if slot == 0 else self.second_address
            assert ip is not None
            sites = [s for s in scenario.sites if s.slot == slot]
            served = {s.sni: s.served for s in sites}
            contexts = {s.sni: _context(s.served) for s in sites}
            router = SniRouter(contexts[sites[0].sni], contexts)
            handler = (tls_handler(router) if scenario.starttls is None
                       else STARTTLS_SERVERS[scenario.starttls](router))
            try:
                bound = self._loop.serve(handler, host=ip, port=port)
            except OSError as exc:
                if slot == 0 or exc.errno not in (errno.EADDRNOTAVAIL, errno.EADDRINUSE):
                    raise LabError(
                        f"cannot listen on {ip}:{port} for {scenario.name}: "
                        f"{exc.strerror or exc}"
                        + ("; choose another --port-base" if port else "")
                    ) from None
                if exc.errno == errno.EADDRINUSE and self.port_base == 0:
                    bound = self._loop.serve(handler, host=ip, port=0)  # any other port
                else:
                    self.notes.append(f"{scenario.name} on {ip} left out: cannot listen "
                                      f"there ({exc.strerror or exc})")
                    continue
            # The second address shares the first's port: one name, two addresses.
            port = bound.port
            self._listeners.append(_Listener(scenario, slot, ip, bound.port, router,
                                             sites, served))

    def _endpoint_rows(self) -> list[LabEndpoint]:
        rows = []
        for listener in self._listeners:
            for site in listener.sites:
                rows.append(LabEndpoint(
                    name=site.name, scenario=listener.scenario.name,
                    incident=listener.scenario.incident, description=site.description,
                    ip=listener.ip, port=listener.port, sni=site.sni,
                    starttls=listener.scenario.starttls, profiles=site.profiles,
                    status=site.status, codes=site.codes,
                ))
        return rows

    def _sites(self, name: str, ip: str | None) -> list[tuple[_Listener, Site]]:
        found = [(listener, site) for listener in self._listeners for site in listener.sites
                 if site.name == name and ip in (None, listener.ip)]
        if not found:
            self.endpoint(name, ip=ip)  # raises KeyError naming the endpoints
        return found

    def _install(self, name: str, served: Served, ip: str | None) -> None:
        if not served.chain:
            raise ValueError("a chain needs at least the leaf")
        ctx = _context(served)
        with self._lock:
            for listener, site in self._sites(name, ip):
                listener.served[site.sni] = replace(served)
                listener.router.set(ctx, site.sni)
                if site is listener.sites[0]:
                    listener.router.set(ctx)


def _context(served: Served) -> ssl.SSLContext:
    # Security level 0: the badssl cases serve SHA-1 signatures and RSA-1024 keys.
    return server_context(served.chain, served.key, security_level=0)


def _loopback(address: str, what: str) -> str:
    try:
        ip = ipaddress.ip_address(address.strip().strip("[]"))
    except ValueError:
        raise LabError(f"{what} {address!r}: expected a loopback IP address such as "
                       "127.0.0.1 or ::1") from None
    if not ip.is_loopback:
        raise LabError(f"{what} {address}: the lab serves broken certificates on purpose "
                       "and listens only on loopback (127.0.0.0/8 or ::1)")
    return str(ip)


def _expectation(e: LabEndpoint) -> str:
    codes = ",".join(sorted(e.codes))
    return f"{e.status.value}" + (f" [{codes}]" if codes else "")


def run_foreground(
    directory: str | Path = DEFAULT_DIR,
    listen: str = DEFAULT_LISTEN,
    port_base: int = DEFAULT_PORT_BASE,
    *,
    duration: float | None = None,
    echo: Callable[[str], None] = print,
) -> int:
    """Run the lab until SIGINT/SIGTERM (or ``duration`` seconds): start, print the
    instructions, wait, stop. Must run in the main thread (it installs signal handlers).
    Returns the exit status (0)."""
    stop = threading.Event()

    def on_signal(_signum: int, _frame: FrameType | None) -> None:
        stop.set()

    previous = {s: signal.signal(s, on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        with Lab(directory, listen, port_base) as lab:
            echo(lab.instructions())
            echo("Serving until Ctrl-C or SIGTERM.")
            stop.wait(duration)
            echo("chainwatch lab: stopping")
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)
    return 0


def serve_foreground(
    directory: str | Path = DEFAULT_DIR,
    listen: str = DEFAULT_LISTEN,
    port_base: int = DEFAULT_PORT_BASE,
    *,
    db_url: str | None = None,
    max_batches: int | None = None,
    echo: Callable[[str], None] = print,
    show: Callable[[ScanResult], None] | None = None,
    log_format: str = "text",
    web_listen: str | None = "127.0.0.1:8080",
    web_token: str | None = None,
) -> int:
    """``chainwatch lab --serve`` (``make run``): the lab plus the monitor watching it.

    Starts the lab, then runs ``serve``'s own scheduler and alert cycle on the lab's
    inventory until SIGINT/SIGTERM or ``max_batches``: the first sweep delivers the lab's
    tickets, notifications and pages to ``deliveries.jsonl`` in ``directory``. The
    database defaults to ``lab.sqlite`` there, never the user's real default database.
    ``show`` is called with the first full sweep so people see what the monitor found."""
    from chainwatch.config.inventory import load_inventory
    from chainwatch.service import logs
    from chainwatch.service.cycle import Cycle
    from chainwatch.service.scheduler import Scheduler
    from chainwatch.storage.db import redacted
    from chainwatch.storage.repo import Database

    shown = threading.Event()

    def after(_inventory: object, result: ScanResult) -> None:
        if show is not None and not shown.is_set():
            shown.set()
            show(result)

    from chainwatch.service.web import FEED_TOKEN_ENV, WebServer, WebSettings, bind

    url = db_url if db_url is not None else str(Path(directory) / "lab.sqlite")
    sock = None if web_listen is None else bind(web_listen, token=web_token)
    with Lab(directory, listen, port_base) as lab, Database(url) as db, \
            Cycle(db, background=True) as cycle:
        redactor = logs.configure(
            secrets=logs.secrets_of(load_inventory(lab.inventory_path), url), fmt=log_format)
        echo(lab.instructions())
        echo(f"Monitoring the lab with chainwatch serve (database: {redacted(db.url)}; alerts: "
             f"{lab.directory / DELIVERIES}); Ctrl-C stops both.")
        scheduler = Scheduler(lab.inventory_path, db, cycle=cycle, after_batch=after,
                              on_reload=lambda inv: redactor.add(*logs.secrets_of(inv)))
        scheduler.install_signal_handlers()
        web = None
        if sock is not None:
            web = WebServer(WebSettings(db=db, inventory=lambda: scheduler.inventory,
                                        token=web_token,
                                        feed_token=os.environ.get(FEED_TOKEN_ENV) or None),
                            sock).start()
            echo(f"Dashboard and API: {web.url}")
        scheduler.run(max_batches=max_batches)
        echo("chainwatch lab: stopping")
        if web is not None:
            web.stop()
    return 0


__all__ = [
    "DEFAULT_DIR",
    "DEFAULT_LISTEN",
    "DEFAULT_PORT_BASE",
    "Lab",
    "LabEndpoint",
    "LabError",
    "run_foreground",
    "second_address_of",
    "serve_foreground",
]
