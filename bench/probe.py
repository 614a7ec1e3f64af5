"""Live probing throughput and memory: chainwatch against a handshake floor, sslyze and
``openssl s_client``, all on the same loopback endpoints served by nginx.

Set-up (not timed): a throwaway hierarchy built with :mod:`chainwatch.testing.pki` (EC P-256 root,
4 intermediates, one EC P-256 leaf per endpoint; each endpoint serves leaf + intermediate),
then nginx (Debian's ``nginx-light`` is enough) configured in a temporary directory, each
endpoint selected by its SNI name ``eN.bench.test`` and serving its own chain, spread over
``--addresses`` loopback addresses (127.0.0.1, 127.0.0.2, ...) on one port. ``--farm``
says how nginx finds the chain: ``per-name``, one ``server`` block per endpoint (every chain
loaded at start: ~40 KiB per name and per nginx process, minutes to start at 10,000 names);
``variable``, one ``server`` block per address whose ``ssl_certificate`` names the files by
``$ssl_server_name`` (nginx >= 1.15.9: it starts at once and stays ~11 MiB per process at
any count, but reads and parses the chain and key at every handshake: ~2,100 us of nginx
CPU per handshake with OpenSSL 3.0 against ~520 us per name, paid alike by every client of
the run, the floor included); ``auto`` (default), per-name up to 10,000 endpoints and
variable above. The leaves (a fresh key each) are made in one forked process per CPU.
nginx runs in the foreground (``daemon off``) under this script and is stopped at the end,
also on error or Ctrl-C.

Measured, each in a subprocess of its own (so ``ru_maxrss`` is that tool's peak resident
set), after a warm-up pass. ``floor`` and ``chainwatch`` are set up side by side and run
in ``--repeat`` turns (one run of each per turn, the order reversed every other turn), so
that a shared machine speeding up or slowing down moves both alike: their ratio is taken
turn by turn, and the target is judged on the median of those ratios.

``floor``       pyOpenSSL handshakes (blocking sockets, ``VERIFY_NONE``, OpenSSL's
                default groups) from a ``ThreadPoolExecutor`` returning
                ``get_peer_cert_chain()`` and nothing else: the least work any chain
                monitor must do. The pool size is the best of a sweep
                (``--floor-threads``) made before the turns.
``floor-x25519`` the same floor sending chainwatch's ClientHello (one X25519 key share
                instead of OpenSSL's two): not a target, it shows what the rest of
                chainwatch costs once the handshake work is the same.
``chainwatch``  ``probe_all`` (the monitor's defaults: 256 in flight, 8 per address, one
                event loop per core) then ``observe.report_for`` for every observation with
                a ``file:`` profile of the bench root and the endpoint's name as host. The
                analysis caches are cleared before each run, so every chain is parsed and
                analysed.
``sslyze``      sslyze's ``CERTIFICATE_INFO`` scan of the same endpoints (connectivity
                test + certificate info, as ``sslyze --certinfo`` runs it). sslyze pins
                ``cryptography<47``, so it is not installed into the project's venv: the
                script uses an interpreter that can import it (``--sslyze-python``, this
                one, or a cached venv that ``--install-sslyze`` creates); otherwise the row
                says "sslyze unavailable". Run at each ``--sslyze-limits`` setting of its
                ``concurrent_server_scans_limit``: the target is judged against its
                default (10, how ``sslyze`` runs unless told otherwise), and the ratio to
                every setting is printed beside it. Against these one-off runs, chainwatch's
                rate is that of its median run.
``openssl``     ``openssl s_client -showcerts`` per endpoint, 8 processes at a time, on a
                subset (``--openssl-subset``); its rate is per endpoint, so it compares
                directly. Peak RSS is that of one ``openssl`` process (8 run at once).
``big``         with ``--big``: chainwatch alone on ``--big-endpoints`` (10,000) endpoints,
                once, for its peak RSS (target: under 1 GiB).

Usage: ``python bench/probe.py [--endpoints N] [--big] [--json]`` (``make bench-probe``).
Without an ``nginx`` binary it says how to install one and exits 0.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import select
import shutil
import signal
import socket
import statistics
import struct
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import Any

HERE = Path(__file__).resolve()
NGINX_MISSING = "install nginx (apt-get install nginx-light) to run this benchmark"
DOMAIN = "bench.test"
TARGET_FLOOR_RATIO = 0.7
TARGET_SSLYZE_RATIO = 20.0
SSLYZE_DEFAULT_LIMIT = 10
"""sslyze's ``concurrent_server_scans_limit`` unless told otherwise: the target compares
with sslyze as users run it; the other limits measured are reported beside it."""
TARGET_BIG_RSS_MIB = 1024.0
WORKER_TIMEOUT = 1800.0
"""No measurement subprocess may run longer than this many seconds."""

Target = tuple[str, int, str]
"""(ip, port, sni name) of one endpoint."""


# -- nginx ---------------------------------------------------------------------------------


def find_nginx(explicit: str | None) -> str | None:
    if explicit:
        return explicit if os.access(explicit, os.X_OK) else None
    found = shutil.which("nginx")
    if found:
        return found
    for candidate in ("/usr/sbin/nginx", "/usr/local/sbin/nginx", "/usr/local/nginx/sbin/nginx"):
        if os.access(candidate, os.X_OK):
            return candidate
    return None


def free_port(addresses: Sequence[str]) -> int:
    """A port free on every address (bounded tries)."""
    for _ in range(50):
        with socket.socket() as probe:
            probe.bind((addresses[0], 0))
            port = int(probe.getsockname()[1])
        ok = True
        for address in addresses[1:]:
            with socket.socket() as other:
                try:
                    other.bind((address, port))
                except OSError:
                    ok = False
                    break
        if ok:
            return port
    raise SystemExit("no port free on every bench address")


FARMS = ("auto", "per-name", "variable")
PER_NAME_MAX = 10_000
"""``--farm auto`` writes one ``server`` block per name up to this many endpoints and one
per address above it (see :func:`nginx_conf`)."""


def farm_mode(requested: str, count: int) -> str:
    """The farm ``--farm REQUESTED`` means for ``count`` endpoints: ``per-name`` or
    ``variable``."""
    if requested not in FARMS:
        raise ValueError(f"unknown farm {requested!r}; expected one of {FARMS}")
    if requested != "auto":
        return requested
    return "per-name" if count <= PER_NAME_MAX else "variable"


def add_farm_argument(parser: argparse.ArgumentParser) -> None:
    """``--farm``, as every bench on the nginx farm takes it."""
    parser.add_argument(
        "--farm", choices=FARMS, default="auto",
        help="how nginx selects each endpoint's chain: per-name (one server block and "
        "certificate loaded at start per SNI name), variable (one server block per address, "
        "the chain files named by $ssl_server_name and read at every handshake), auto "
        f"(per-name up to {PER_NAME_MAX:,} endpoints, variable above)")


def nginx_conf(tmp: Path, targets: Sequence[Target], workers: str, farm: str = "per-name"
               ) -> str:
    """nginx's configuration for ``targets``. ``per-name``: one ``server`` block per SNI
    name with its own ``ssl_certificate`` (every chain loaded at start: ~40 KiB per name
    and per process, and minutes to start at 10,000 names). ``variable``: one ``server``
    block per listening address whose ``ssl_certificate`` names the chain file by
    ``$ssl_server_name`` (nginx >= 1.15.9): each handshake reads and parses its chain and
    key, so nginx starts at once and stays small at any count, at some server CPU per
    handshake (paid by every client of the run alike, the floor included)."""
    lines = [
        "daemon off;",
        "master_process on;",
        f"worker_processes {workers};",
        "worker_rlimit_nofile 65536;",
        f"pid {tmp}/nginx.pid;",
        f"error_log {tmp}/error.log warn;",
        "events { worker_connections 8192; multi_accept on; }",
        "http {",
        "  access_log off;",
        f"  client_body_temp_path {tmp}/body;",
        f"  proxy_temp_path {tmp}/proxy;",
        f"  fastcgi_temp_path {tmp}/fastcgi;",
        f"  uwsgi_temp_path {tmp}/uwsgi;",
        f"  scgi_temp_path {tmp}/scgi;",
        "  server_names_hash_max_size 262144;",
        "  server_names_hash_bucket_size 128;",
        "  ssl_protocols TLSv1.2 TLSv1.3;",
        "  ssl_session_cache off;",
        "  ssl_session_tickets off;",
    ]
    if farm == "variable":
        for ip, port in sorted({(ip, port) for ip, port, _ in targets}):
            lines.append(
                f"  server {{ listen {ip}:{port} ssl; "
                f"ssl_certificate {tmp}/certs/$ssl_server_name.pem; "
                f"ssl_certificate_key {tmp}/certs/$ssl_server_name.key; return 204; }}"
            )
    elif farm == "per-name":
        for ip, port, name in targets:
            lines.append(
                f"  server {{ listen {ip}:{port} ssl; server_name {name}; "
                f"ssl_certificate {tmp}/certs/{name}.pem; "
                f"ssl_certificate_key {tmp}/certs/{name}.key; return 204; }}"
            )
    else:
        raise ValueError(f"unknown farm {farm!r}")
    lines.append("}")
    return "\n".join(lines) + "\n"


@contextmanager
def running_nginx(binary: str, tmp: Path, targets: Sequence[Target], workers: str,
                  farm: str = "auto") -> Iterator[subprocess.Popen[bytes]]:
    """nginx serving ``targets`` until the block exits (killed if it will not stop);
    ``farm``: see :func:`farm_mode` and :func:`nginx_conf`."""
    mode = farm_mode(farm, len(targets))
    conf = tmp / "nginx.conf"
    conf.write_text(nginx_conf(tmp, targets, workers, mode))
    log = tmp / "error.log"
    args = [binary, "-p", f"{tmp}/", "-c", str(conf)]
    if _nginx_supports_e(binary):
        args += ["-e", str(log)]
    proc = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE)
    try:
        listening = sorted({(ip, port) for ip, port, _ in targets})
        # nginx parses every server block before it listens: 10,000 names per name took
        # more than 120 s on the shared 2-core machine under load. Bounded all the same.
        allowed = 120 + (0.05 * len(targets) if mode == "per-name" else 0)
        deadline = time.monotonic() + allowed
        for _ in range(int(allowed / 0.05) + 1):
            if proc.poll() is not None:
                err = proc.stderr.read().decode(errors="replace") if proc.stderr else ""
                tail = log.read_text(errors="replace")[-2000:] if log.exists() else ""
                raise SystemExit(f"nginx exited with status {proc.returncode}:\n{err}{tail}")
            if all(_accepts(ip, port) for ip, port in listening):
                break
            if time.monotonic() > deadline:
                raise SystemExit(f"nginx did not start listening within {allowed:.0f} s")
            time.sleep(0.05)
        yield proc
    finally:
        if proc.poll() is None:
            proc.terminate()  # SIGTERM: nginx's fast shutdown
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=15)
        if proc.stderr is not None:
            proc.stderr.close()


def _nginx_supports_e(binary: str) -> bool:
    out = subprocess.run([binary, "-h"], capture_output=True, text=True, timeout=30)
    return "-e filename" in (out.stdout + out.stderr)


def _accepts(ip: str, port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(1)
        return s.connect_ex((ip, port)) == 0


# -- certificates ----------------------------------------------------------------------------


CA_COUNT = 4
LEAVES_PER_TASK = 2_000
"""Leaves one generating process writes per task (``build_certificates``)."""


def build_certificates(tmp: Path, count: int, addresses: Sequence[str], port: int,
                       processes: int | None = None) -> list[Target]:
    """``count`` endpoints: a leaf + intermediate chain and key per SNI name, each leaf
    with a fresh EC P-256 key of its own. Past one task's worth the leaves are made by
    ``processes`` (default: one per CPU) forked processes, each writing its share of the
    files (a leaf costs ~1.2 ms of CPU here: 100,000 would take two minutes on one core)."""
    from chainwatch.testing.pki import PKI, key_pem, pem_of

    pki = PKI()
    root = pki.root("Chainwatch Bench Root")
    cas = [root.intermediate(f"Chainwatch Bench CA {i}") for i in range(CA_COUNT)]
    (tmp / "certs").mkdir()
    (tmp / "root.pem").write_bytes(pem_of(root.cert))
    targets = [(addresses[i % len(addresses)], port, f"e{i}.{DOMAIN}") for i in range(count)]
    issuers = [(ca.cert.der, key_pem(ca.key)) for ca in cas]
    tasks = [(str(tmp / "certs"), issuers, pki.now.isoformat(), lo,
              [name for _, _, name in targets[lo:lo + LEAVES_PER_TASK]])
             for lo in range(0, count, LEAVES_PER_TASK)]
    workers = min(processes or os.cpu_count() or 1, len(tasks))
    if workers <= 1:
        for task in tasks:
            _write_leaves(task)
        return targets
    import multiprocessing

    # fork: this module is loaded under a name of its own (bench/_sibling.py), which a
    # spawned or forkserver child could not import; no thread runs here yet.
    with multiprocessing.get_context("fork").Pool(workers) as pool:
        for _ in pool.imap_unordered(_write_leaves, tasks):
            pass
    return targets


def _write_leaves(task: tuple[str, list[tuple[bytes, bytes]], str, int, list[str]]) -> None:
    """One generating task: the leaves of ``names`` (endpoint numbers from ``first``),
    each signed by intermediate ``number % CA_COUNT`` (given as DER and PEM key), as
    ``NAME.pem`` (leaf + intermediate) and ``NAME.key`` in ``directory``."""
    import datetime as dt
    import itertools

    from cryptography.hazmat.primitives.serialization import load_pem_private_key

    from chainwatch.model import Cert
    from chainwatch.testing.pki import CA, PKI, key_pem, pem_of

    directory, issuers, now, first, names = task
    # Serials distinct across tasks: PKI numbers its certificates from its counter.
    pki = PKI(now=dt.datetime.fromisoformat(now), _serial=itertools.count(0x10000 + first))
    cas = []
    for der, key in issuers:
        private = load_pem_private_key(key, password=None)
        cas.append(CA(pki, private, Cert.from_der(der), issuer=None))  # type: ignore[arg-type]
    out = Path(directory)
    for n, name in enumerate(names, start=first):
        ca = cas[n % len(cas)]
        leaf = ca.leaf(name)
        (out / f"{name}.pem").write_bytes(pem_of(*leaf.chain(ca)))
        (out / f"{name}.key").write_bytes(key_pem(leaf.key))


# -- workers (each in its own process) ----------------------------------------------------------


def _peak_rss_mib(who: int = resource.RUSAGE_SELF) -> float:
    return resource.getrusage(who).ru_maxrss / 1024.0  # KiB on Linux


@dataclass
class Session:
    """A workload set up in its worker process, measured one run at a time (in turns
    with another workload: see :func:`measure_in_turns`)."""

    run: Callable[[], dict[str, Any]]
    """One measured pass over every target: at least ``seconds`` and ``ok``."""
    summary: Callable[[], dict[str, Any]] = dict
    """What the report adds once all runs are done (configuration, child processes)."""


def floor_session(targets: Sequence[Target], opts: dict[str, Any]) -> Session:
    from concurrent.futures import ThreadPoolExecutor

    from OpenSSL import SSL

    ctx = SSL.Context(SSL.TLS_CLIENT_METHOD)
    ctx.set_verify(SSL.VERIFY_NONE)
    if opts.get("one_key_share"):
        from chainwatch.probe.handshake import _offer_one_key_share

        _offer_one_key_share(ctx)  # the ClientHello chainwatch sends: X25519 only

    def handshake(target: Target) -> int:
        ip, port, name = target
        with socket.create_connection((ip, port), timeout=10) as sock:
            # pyOpenSSL needs a blocking socket; the kernel bounds each read and write.
            sock.settimeout(None)
            limit = struct.pack("ll", 10, 0)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVTIMEO, limit)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDTIMEO, limit)
            conn = SSL.Connection(ctx, sock)
            conn.set_tlsext_host_name(name.encode())
            conn.set_connect_state()
            conn.do_handshake()
            chain = conn.get_peer_cert_chain()
            return len(chain or [])

    def timed(threads: int, batch: Sequence[Target]) -> dict[str, Any]:
        start = time.perf_counter()
        with ThreadPoolExecutor(max_workers=threads) as pool:
            got = sum(1 for n in pool.map(handshake, batch) if n)
        return {"seconds": time.perf_counter() - start, "ok": got}

    timed(8, targets[: min(len(targets), 200)])  # warm-up
    if len(opts["threads"]) == 1 and not opts.get("sweep", True):
        # One pool size given (the best of a sweep made on another set): no sweep.
        best = int(opts["threads"][0])
        return Session(run=lambda: timed(best, targets),
                       summary=lambda: {"config": f"{best} threads", "threads": best})
    # The pool size is the floor's one tuning knob: the best of a sweep is kept for
    # every measured run.
    sweep = {t: min(timed(t, targets)["seconds"] for _ in range(2)) for t in opts["threads"]}
    best = min(sweep, key=lambda t: sweep[t])
    return Session(
        run=lambda: timed(best, targets),
        summary=lambda: {"config": f"{best} threads (best of a sweep: " + ", ".join(
            f"{t}: {len(targets) / x:.0f}/s" for t, x in sweep.items()) + ")",
                         "threads": best},
    )


def _children_count() -> int:
    import multiprocessing

    return len(multiprocessing.active_children())


def _children_peak_rss_mib() -> float:
    """The largest high-water mark among this process's live ``multiprocessing``
    children (Linux ``/proc``; 0 elsewhere). Forkserver children are not this process's
    to wait for, so ``RUSAGE_CHILDREN`` would not count them."""
    import multiprocessing

    peak = 0.0
    for child in multiprocessing.active_children():
        try:
            status = Path(f"/proc/{child.pid}/status").read_text()
        except OSError:
            continue
        for line in status.splitlines():
            if line.startswith("VmHWM:"):
                peak = max(peak, int(line.split()[1]) / 1024.0)
    return peak


def chainwatch_session(targets: Sequence[Target], opts: dict[str, Any]) -> Session:
    import datetime as dt

    from chainwatch.analysis.engine import clear_caches
    from chainwatch.cli import tune_gc
    from chainwatch.model import Report, Status
    from chainwatch.model import Target as CwTarget
    from chainwatch.probe import Observation
    from chainwatch.probe.parallel import probe_all
    from chainwatch.service.observe import report_for
    from chainwatch.stores import resolve_profile

    tune_gc()  # as the chainwatch command runs
    items = [CwTarget(host=name, port=port, ip=ip, sni=name) for ip, port, name in targets]
    processes = {"auto": None, "yes": True, "no": False}[opts.get("processes", "auto")]
    workers = opts.get("workers") or None
    children_rss = 0.0
    children_seen = 0

    def run(batch: Sequence[CwTarget]) -> dict[str, Any]:
        nonlocal children_rss, children_seen
        clear_caches()
        start = time.perf_counter()
        profiles = [resolve_profile(f"file:{opts['root']}")]
        at = dt.datetime.now(dt.UTC)
        reports: list[Report | None] = [None] * len(batch)
        spent = 0.0
        last = start

        def analyse(index: int, observation: Observation) -> None:
            nonlocal spent, last, children_rss, children_seen
            begin = time.perf_counter()
            reports[index] = report_for(observation, profiles, at=at,
                                        host=observation.target.host)
            last = time.perf_counter()
            spent += last - begin
            if index % 97 == 0:
                children_rss = max(children_rss, _children_peak_rss_mib())
                children_seen = max(children_seen, _children_count())

        if opts.get("pipelined", True):
            observations = probe_all(batch, processes=processes, workers=workers,
                                     on_result=analyse)
        else:
            observations = probe_all(batch, processes=processes, workers=workers)
            for n, observation in enumerate(observations):
                analyse(n, observation)
        end = time.perf_counter()
        return {
            "seconds": end - start, "probe_seconds": end - start - spent,
            "analysis_seconds": spent, "tail_seconds": end - last,
            "ok": sum(1 for r in reports if r is not None and r.status is Status.OK),
            "failed": sum(1 for o in observations if not o.ok),
        }

    # Warm-up: large enough that the probe processes' server starts now, as it does once
    # in a monitor, and not inside a measured run.
    run(items[: min(len(items), 400)])

    def summary() -> dict[str, Any]:
        where = {None: "auto", True: "processes", False: "threads"}[processes]
        how = "analysis in on_result" if opts.get("pipelined", True) else "analysis after"
        return {
            "children_rss_mib": children_rss, "children": children_seen,
            "pipelined": opts.get("pipelined", True),
            "config": (f"probe_all defaults (256 in flight, 8/address, "
                       f"{workers or 'a'} loop{'s' if workers else '/core'}, {where}), {how}"),
        }

    return Session(run=lambda: run(items), summary=summary)


def worker_sslyze(targets: Sequence[Target], opts: dict[str, Any]) -> dict[str, Any]:
    from sslyze import (
        ScanCommand,
        ScanCommandAttemptStatusEnum,
        Scanner,
        ServerNetworkLocation,
        ServerScanRequest,
        ServerScanStatusEnum,
    )

    def run(batch: Sequence[Target], limit: int) -> tuple[float, int]:
        requests = [
            ServerScanRequest(
                server_location=ServerNetworkLocation(hostname=name, port=port, ip_address=ip),
                scan_commands={ScanCommand.CERTIFICATE_INFO},
            )
            for ip, port, name in batch
        ]
        start = time.perf_counter()
        scanner = Scanner(concurrent_server_scans_limit=limit)
        scanner.queue_scans(requests)
        ok = 0
        for result in scanner.get_results():
            if result.scan_status is not ServerScanStatusEnum.COMPLETED:
                continue
            assert result.scan_result is not None
            attempt = result.scan_result.certificate_info
            if attempt.status is ScanCommandAttemptStatusEnum.COMPLETED:
                ok += 1
        return time.perf_counter() - start, ok

    run(targets[: min(len(targets), 20)], 10)  # warm-up
    best: dict[str, Any] = {}
    rates: dict[str, float] = {}
    for limit in opts["limits"]:
        seconds, ok = run(targets, limit)
        rates[str(limit)] = len(targets) / seconds if seconds > 0 else 0.0
        if not best or seconds < best["seconds"]:
            best = {"seconds": seconds, "ok": ok,
                    "config": f"Scanner(concurrent_server_scans_limit={limit})"}
    best["rates_by_limit"] = rates  # 10 is sslyze's default
    return best


def worker_openssl(targets: Sequence[Target], opts: dict[str, Any]) -> dict[str, Any]:
    from concurrent.futures import ThreadPoolExecutor

    binary = shutil.which("openssl")
    if binary is None:
        return {"unavailable": "openssl not found"}

    def one(target: Target) -> bool:
        ip, port, name = target
        out = subprocess.run(
            [binary, "s_client", "-connect", f"{ip}:{port}", "-servername", name,
             "-showcerts"],
            stdin=subprocess.DEVNULL, capture_output=True, timeout=30,
        )
        return out.stdout.count(b"-----BEGIN CERTIFICATE-----") >= 2

    parallel = opts["parallel"]
    with ThreadPoolExecutor(max_workers=parallel) as pool:
        list(pool.map(one, targets[: min(len(targets), 16)]))  # warm-up
        start = time.perf_counter()
        ok = sum(pool.map(one, targets))
        seconds = time.perf_counter() - start
    return {"seconds": seconds, "ok": ok, "config": f"{parallel} processes at a time",
            "child_rss_mib": _peak_rss_mib(resource.RUSAGE_CHILDREN)}


SESSIONS = {"floor": floor_session, "floor-x25519": floor_session,
            "chainwatch": chainwatch_session}
WORKERS = {"sslyze": worker_sslyze, "openssl": worker_openssl}


def worker_main(kind: str, spec_file: str) -> None:
    """A measurement subprocess. A one-shot workload prints its result; a session
    prints ``{"ready": true}`` once set up, then one result per ``run`` line read from
    standard input, then its summary when the input ends."""
    spec = json.loads(Path(spec_file).read_text())
    targets = [tuple(t) for t in spec["targets"]]
    if kind not in SESSIONS:
        result = WORKERS[kind](targets, spec["opts"])  # type: ignore[arg-type]
        result.setdefault("rss_mib", _peak_rss_mib())
        result["count"] = len(targets)
        print(json.dumps(result))
        return
    session = SESSIONS[kind](targets, spec["opts"])  # type: ignore[arg-type]
    print(json.dumps({"ready": True}), flush=True)
    for line in sys.stdin:  # bounded: the parent sends one line per run, then closes
        if line.strip() != "run":
            break
        print(json.dumps({**session.run(), "count": len(targets)}), flush=True)
    print(json.dumps({**session.summary(), "rss_mib": _peak_rss_mib()}), flush=True)


def _spec(kind: str, targets: Sequence[Target], opts: dict[str, Any], tmp: Path) -> Path:
    spec = tmp / f"{kind}-{len(targets)}.json"
    spec.write_text(json.dumps({"targets": list(targets), "opts": opts}))
    return spec


def measure(python: str, kind: str, targets: Sequence[Target], opts: dict[str, Any],
            tmp: Path) -> dict[str, Any]:
    """One workload, once, in a subprocess of its own (a session is run once)."""
    if kind in SESSIONS:
        return measure_in_turns({kind: (python, opts)}, targets, 1, tmp)[kind]
    spec = _spec(kind, targets, opts, tmp)
    result = run_worker([python, str(HERE), "--worker", kind, "--spec", str(spec)], kind)
    if "unavailable" not in result:
        result["rate"] = result["count"] / result["seconds"] if result["seconds"] > 0 else 0.0
    return result


class _Worker:
    """A session subprocess spoken to a line at a time (every answer within
    ``WORKER_TIMEOUT``; killed at the end whatever happened)."""

    def __init__(self, python: str, kind: str, spec: Path, tmp: Path) -> None:
        self.kind = kind
        self.errors = (tmp / f"{kind}.stderr").open("w+")
        self.proc = subprocess.Popen(
            [python, str(HERE), "--worker", kind, "--spec", str(spec)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self.errors, text=True)

    def answer(self) -> dict[str, Any]:
        assert self.proc.stdout is not None
        ready, _, _ = select.select([self.proc.stdout], [], [], WORKER_TIMEOUT)
        line = self.proc.stdout.readline() if ready else ""
        if not line:
            self.errors.seek(0)
            last = (self.errors.read().strip().splitlines() or ["no answer"])[-1]
            raise _WorkerFailed(f"{self.kind} failed: {last}")
        result: dict[str, Any] = json.loads(line)
        return result

    def ask(self, line: str) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(line + "\n")
        self.proc.stdin.flush()

    def finish(self) -> dict[str, Any]:
        assert self.proc.stdin is not None
        self.proc.stdin.close()
        return self.answer()

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(timeout=60)
        self.errors.close()


def _cpu_times() -> tuple[float, float, float] | None:
    """Machine-wide (busy, idle, stolen) CPU-seconds since boot, from ``/proc/stat``."""
    try:
        fields = Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]
        user, nice, system, idle, iowait, irq, softirq, steal = (int(x) for x in fields[:8])
    except (OSError, ValueError):
        return None
    tick = os.sysconf("SC_CLK_TCK")
    return ((user + nice + system + irq + softirq) / tick, (idle + iowait) / tick,
            steal / tick)


def tree_cpu_seconds(pid: int) -> float:
    """User + system CPU-seconds used so far by ``pid`` and its live descendants (Linux
    ``/proc``; nginx's master and workers, say); 0 for a process gone."""
    tick = os.sysconf("SC_CLK_TCK")
    total = 0
    todo = [pid]
    for _ in range(10_000):  # bounded walk
        if not todo:
            break
        p = todo.pop()
        try:
            fields = Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()
            total += int(fields[11]) + int(fields[12])  # utime, stime
            for task in Path(f"/proc/{p}/task").iterdir():
                todo.extend(int(c) for c in (task / "children").read_text().split())
        except (OSError, ValueError, IndexError):
            continue
    return total / tick


class _WorkerFailed(Exception):
    pass


def measure_in_turns(workloads: dict[str, tuple[str, dict[str, Any]]],
                     targets: Sequence[Target], turns: int, tmp: Path
                     ) -> dict[str, dict[str, Any]]:
    """Session workloads (each ``kind: (python, opts)``) set up side by side, then run in
    turns, the order reversed every other turn: a machine that speeds up or slows down
    during the benchmark moves every workload alike, so the ratio of the runs of one
    turn measures the code, not the moment. Each result keeps every run (``runs``,
    seconds) and the fastest one."""
    workers: dict[str, _Worker] = {}
    runs: dict[str, list[dict[str, Any]]] = {kind: [] for kind in workloads}
    try:
        for kind, (python, opts) in workloads.items():  # one at a time: set-up sweeps time
            workers[kind] = _Worker(python, kind, _spec(kind, targets, opts, tmp), tmp)
            workers[kind].answer()  # set up and warmed up
        order = list(workers)
        for turn in range(turns):
            for kind in order if turn % 2 == 0 else reversed(order):
                before = _cpu_times()
                workers[kind].ask("run")
                result = workers[kind].answer()
                after = _cpu_times()
                if before and after:
                    used = [b - a for a, b in zip(before, after, strict=True)]
                    # Every process on the machine (nginx included), in CPU-seconds.
                    result["cpu"] = {"busy": used[0], "idle": used[1], "steal": used[2]}
                runs[kind].append(result)
        summaries = {kind: worker.finish() for kind, worker in workers.items()}
    except _WorkerFailed as exc:
        return {kind: {"unavailable": str(exc)} for kind in workloads}
    finally:
        for worker in workers.values():
            worker.close()
    results: dict[str, dict[str, Any]] = {}
    for kind, done in runs.items():
        best = min(done, key=lambda r: float(r["seconds"]))
        results[kind] = {**best, **summaries[kind],
                         "runs": [float(r["seconds"]) for r in done],
                         "cpu_runs": [r.get("cpu") for r in done],
                         "rate": best["count"] / best["seconds"] if best["seconds"] > 0 else 0.0}
    return results


def run_worker(command: list[str], kind: str) -> dict[str, Any]:
    """Run one measurement subprocess (``bench/scan.py`` too); its last line of output is
    its JSON result. A worker that fails or overruns becomes an ``unavailable`` row."""
    try:
        out = subprocess.run(command, capture_output=True, text=True, timeout=WORKER_TIMEOUT)
    except subprocess.TimeoutExpired:
        return {"unavailable": f"{kind} did not finish within {WORKER_TIMEOUT:.0f} s"}
    if out.returncode != 0:
        last = (out.stderr.strip().splitlines() or ["no output"])[-1]
        return {"unavailable": f"{kind} failed: {last}"}
    result: dict[str, Any] = json.loads(out.stdout.strip().splitlines()[-1])
    return result


# -- sslyze's interpreter ------------------------------------------------------------------------


def sslyze_venv() -> Path:
    cache = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache"))
    return cache / "chainwatch" / "bench-sslyze"


def find_sslyze_python(explicit: str | None, install: bool) -> tuple[str | None, str]:
    """An interpreter that imports sslyze, and how it was found (or why there is none)."""
    candidates = [explicit] if explicit else [sys.executable,
                                              str(sslyze_venv() / "bin" / "python")]
    for python in candidates:
        if python and Path(python).exists() and _imports_sslyze(python):
            return python, python
    if explicit:
        return None, f"{explicit} cannot import sslyze"
    if not install:
        return None, "not installed (run with --install-sslyze)"
    venv = sslyze_venv()
    try:
        subprocess.run([sys.executable, "-m", "venv", "--clear", str(venv)], check=True,
                       capture_output=True, timeout=300)
        subprocess.run([str(venv / "bin" / "python"), "-m", "pip", "install", "--quiet",
                        "sslyze"], check=True, capture_output=True, timeout=900)
    except (subprocess.SubprocessError, OSError) as exc:
        return None, f"installing sslyze failed ({type(exc).__name__})"
    python = str(venv / "bin" / "python")
    if _imports_sslyze(python):
        return python, f"{python} (installed now)"
    return None, "sslyze installed but does not import"


def _imports_sslyze(python: str) -> bool:
    try:
        return subprocess.run([python, "-c", "import sslyze"], capture_output=True,
                              timeout=120).returncode == 0
    except (subprocess.SubprocessError, OSError):
        return False


# -- report --------------------------------------------------------------------------------------


def turn_ratios(results: dict[str, dict[str, Any]], floor_kind: str = "floor") -> list[float]:
    """chainwatch's rate over the floor's, turn by turn (the runs of one turn were taken
    back to back: see :func:`measure_in_turns`)."""
    cw, floor = results.get("chainwatch", {}), results.get(floor_kind, {})
    return [f / c for f, c in zip(floor.get("runs", []), cw.get("runs", []), strict=False)
            if c > 0]


def render(results: dict[str, dict[str, Any]], meta: dict[str, Any]) -> str:
    out = [
        f"bench/probe.py: {meta['endpoints']} endpoints (leaf + intermediate, EC P-256), "
        f"nginx {meta['nginx_version']} ({meta.get('farm', 'per-name')} farm) on "
        f"{meta['addresses']} loopback addresses, "
        f"{meta['cpus']} CPUs, Python {meta['python']}",
        "",
        f"{'workload':<12} {'endpoints':>9} {'seconds':>8} {'endpoints/s':>12} "
        f"{'peak RSS':>10}  config",
    ]
    for name in ("floor", "floor-x25519", "chainwatch", "sslyze", "openssl", "big"):
        r = results.get(name)
        if r is None:
            continue
        if "unavailable" in r:
            out.append(f"{name:<12} {r['unavailable']}")
            continue
        rss = f"{r['rss_mib']:.0f} MiB"
        config = r.get("config", "")
        if name == "openssl":
            rss = f"{r['child_rss_mib']:.0f} MiB"
            config += " (RSS: one openssl process)"
        out.append(f"{name:<12} {r['count']:>9} {r['seconds']:>8.2f} {r['rate']:>12.0f} "
                   f"{rss:>10}  {config}")
        if len(r.get("runs", [])) > 1:
            out.append(f"{'':<12} runs: " + ", ".join(f"{x:.2f} s" for x in r["runs"]))
        cpu = [c for c in r.get("cpu_runs", []) if c]
        if cpu:
            per = statistics.median(1e6 * c["busy"] / r["count"] for c in cpu)
            idle = statistics.median(c["idle"] / (c["busy"] + c["idle"] + c["steal"] or 1)
                                     for c in cpu)
            steal = max(c["steal"] for c in cpu)
            out.append(f"{'':<12} machine CPU per endpoint {per:.0f} us (nginx included), "
                       f"idle {idle:.0%}, stolen up to {steal:.2f} s (medians of the runs)")
        if name in ("chainwatch", "big"):
            when = "in on_result, while probing" if r.get("pipelined") else "after probing"
            out.append(f"{'':<12} analysis {r['analysis_seconds']:.2f} s ({when}), "
                       f"the rest {r['probe_seconds']:.2f} s; "
                       f"{r['ok']} ok, {r['failed']} failed")
            if r.get("children_rss_mib"):
                out.append(f"{'':<12} probe processes: peak RSS {r['children_rss_mib']:.0f} "
                           "MiB each at most (not in the peak RSS column)")
    out.append("")
    cw = results.get("chainwatch", {})
    turns = turn_ratios(results)
    if turns:
        median = statistics.median(turns)
        verdict = "met" if median >= TARGET_FLOOR_RATIO else "NOT met"
        out.append(f"{'chainwatch / floor':<22} {median:8.2f}x   target >= "
                   f"{TARGET_FLOOR_RATIO:g}x: {verdict} (median of {len(turns)} turns: "
                   + ", ".join(f"{r:.2f}" for r in turns) + ")")
    floor = results.get("floor", {})
    if "rate" in cw and floor.get("rate"):
        out.append(f"{'  (best runs)':<22} {cw['rate'] / floor['rate']:8.2f}x")
    same_hello = turn_ratios(results, "floor-x25519")
    if same_hello:
        out.append(f"{'  (floor-x25519)':<22} {statistics.median(same_hello):8.2f}x   the floor "
                   "sending chainwatch's ClientHello (one key share): the cost of the rest")
    # Against the tools measured once per setting, chainwatch's median run, not its best.
    cw_rate = (cw["count"] / statistics.median(cw["runs"])) if cw.get("runs") else None
    by_limit = results.get("sslyze", {}).get("rates_by_limit", {})
    default = by_limit.get(str(SSLYZE_DEFAULT_LIMIT))
    if cw_rate and default:
        ratio = cw_rate / default
        verdict = "met" if ratio >= TARGET_SSLYZE_RATIO else "NOT met"
        out.append(f"{'chainwatch / sslyze':<22} {ratio:8.2f}x   target >= "
                   f"{TARGET_SSLYZE_RATIO:g}x: {verdict} (sslyze as it ships: "
                   f"{SSLYZE_DEFAULT_LIMIT} concurrent scans)")
    else:
        out.append(f"{'chainwatch / sslyze':<22} n/a (its default setting was not measured)")
    if cw_rate and by_limit:
        out.append("chainwatch / sslyze by its concurrent_server_scans_limit: " + ", ".join(
            f"{limit}: {cw_rate / rate:.1f}x" for limit, rate in by_limit.items() if rate))
    openssl = results.get("openssl", {})
    if cw_rate and openssl.get("rate"):
        out.append(f"{'chainwatch / openssl':<22} {cw_rate / openssl['rate']:8.2f}x")
    else:
        out.append(f"{'chainwatch / openssl':<22} n/a")
    big = results.get("big")
    if big is not None and "rss_mib" in big:
        # The probe processes count: the target is for the whole scan, not its parent.
        total = big["rss_mib"] + big.get("children", 0) * big.get("children_rss_mib", 0.0)
        met = "met" if total < TARGET_BIG_RSS_MIB else "NOT met"
        out.append(f"{'10k-endpoint peak RSS':<22} {total:8.0f} MiB   "
                   f"target < {TARGET_BIG_RSS_MIB:.0f} MiB: {met} (parent "
                   f"{big['rss_mib']:.0f} MiB + {big.get('children', 0)} probe processes)")
    return "\n".join(out)


def prepare(parser: argparse.ArgumentParser, args: argparse.Namespace
            ) -> tuple[str, list[str], set[str], dict[str, Any]] | None:
    """What every farm benchmark starts with (``bench/scan.py`` too): the nginx binary,
    the loopback addresses, the workloads to skip and the run's description; ``None``
    (after saying why) when there is no nginx. SIGTERM unwinds through the caller's
    clean-up, so nginx never outlives the benchmark."""
    nginx = find_nginx(args.nginx)
    if nginx is None:
        print(NGINX_MISSING)
        return None
    if not 1 <= args.addresses <= 250 or args.endpoints < 1:
        parser.error("--addresses must be 1-250 and --endpoints at least 1")

    def on_term(_signum: int, _frame: FrameType | None) -> None:
        raise SystemExit(143)

    signal.signal(signal.SIGTERM, on_term)
    skip = {s.strip() for s in args.skip.split(",") if s.strip()}
    addresses = [f"127.0.0.{i + 1}" for i in range(args.addresses)]
    version = subprocess.run([nginx, "-v"], capture_output=True, text=True, timeout=30)
    meta: dict[str, Any] = {
        "endpoints": args.endpoints, "addresses": len(addresses), "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "nginx_version": version.stderr.strip().rpartition("/")[2],
    }
    if hasattr(args, "farm"):
        biggest = max(args.endpoints, args.big_endpoints if getattr(args, "big", False) else 0)
        meta["farm"] = farm_mode(args.farm, biggest)
    return nginx, addresses, skip, meta


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--endpoints", type=int, default=1000)
    parser.add_argument("--addresses", type=int, default=4,
                        help="loopback addresses the endpoints are spread over")
    parser.add_argument("--repeat", type=int, default=5,
                        help="turns: floor and chainwatch run once each per turn")
    parser.add_argument("--floor-threads", default="8,16,32,64",
                        help="thread pool sizes the floor is measured with (best kept)")
    parser.add_argument("--nginx", help="nginx binary (default: found on PATH or in sbin)")
    parser.add_argument("--nginx-workers", default="auto")
    add_farm_argument(parser)
    parser.add_argument("--openssl-subset", type=int, default=200)
    parser.add_argument("--openssl-parallel", type=int, default=8)
    parser.add_argument("--sslyze-python", help="an interpreter that can import sslyze")
    parser.add_argument("--install-sslyze", action="store_true",
                        help=f"create {sslyze_venv()} with sslyze if none is found")
    parser.add_argument("--sslyze-limits", default="10,32,128",
                        help="sslyze concurrent_server_scans_limit values tried (best kept; "
                        "10 is sslyze's default)")
    parser.add_argument("--skip", default="", help="comma-separated workloads to skip")
    parser.add_argument("--big", action="store_true",
                        help="also run chainwatch alone on --big-endpoints for its peak RSS")
    parser.add_argument("--big-endpoints", type=int, default=10_000)
    parser.add_argument("--processes", choices=("auto", "yes", "no"), default="auto",
                        help="where chainwatch's probe shards run (probe_all(processes=))")
    parser.add_argument("--workers", type=int, default=0,
                        help="chainwatch's probe shards (default: one per CPU)")
    parser.add_argument("--analysis-after", action="store_true",
                        help="analyse once probing is done, not in on_result")
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--worker", choices=sorted({*WORKERS, *SESSIONS}), help=argparse.SUPPRESS)
    parser.add_argument("--spec", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)

    if args.worker:
        worker_main(args.worker, args.spec)
        return 0
    farm = prepare(parser, args)
    if farm is None:
        return 0
    nginx, addresses, skip, meta = farm
    results: dict[str, dict[str, Any]] = {}
    cw_opts = {"processes": args.processes, "workers": args.workers,
               "pipelined": not args.analysis_after}
    total = max(args.endpoints, args.big_endpoints if args.big else 0)
    with tempfile.TemporaryDirectory(prefix="chainwatch-bench-") as tmp_name:
        tmp = Path(tmp_name)
        tmp.chmod(0o755)  # nginx workers may run as another user
        port = free_port(addresses)
        print(f"building {total} certificate chains...", file=sys.stderr)
        targets = build_certificates(tmp, total, addresses, port)
        print(f"starting nginx ({nginx}) with {total} server names on "
              f"{len(addresses)} addresses, port {port}...", file=sys.stderr)
        with running_nginx(nginx, tmp, targets, args.nginx_workers, args.farm):
            main_set = targets[: args.endpoints]
            python = sys.executable
            paired: dict[str, tuple[str, dict[str, Any]]] = {}
            if "floor" not in skip:
                threads = [int(t) for t in args.floor_threads.split(",") if t.strip()]
                paired["floor"] = (python, {"threads": threads})
                if "floor-x25519" not in skip:
                    paired["floor-x25519"] = (python, {"threads": threads,
                                                       "one_key_share": True})
            if "chainwatch" not in skip:
                paired["chainwatch"] = (python, {"root": str(tmp / "root.pem"), **cw_opts})
            if paired:
                print(f"measuring {' and '.join(paired)} in {args.repeat} turns...",
                      file=sys.stderr)
                results.update(measure_in_turns(paired, main_set, args.repeat, tmp))
            if "sslyze" not in skip:
                sslyze_python, how = find_sslyze_python(args.sslyze_python, args.install_sslyze)
                if sslyze_python is None:
                    results["sslyze"] = {"unavailable": f"sslyze unavailable: {how}"}
                else:
                    print(f"measuring sslyze ({how})...", file=sys.stderr)
                    limits = [int(x) for x in args.sslyze_limits.split(",") if x.strip()]
                    results["sslyze"] = measure(sslyze_python, "sslyze", main_set,
                                                {"limits": limits}, tmp)
            if "openssl" not in skip:
                print("measuring openssl s_client...", file=sys.stderr)
                results["openssl"] = measure(
                    python, "openssl", main_set[: args.openssl_subset],
                    {"parallel": args.openssl_parallel}, tmp)
            if args.big:
                print(f"measuring chainwatch on {args.big_endpoints} endpoints...",
                      file=sys.stderr)
                results["big"] = measure(
                    python, "chainwatch", targets[: args.big_endpoints],
                    {"root": str(tmp / "root.pem"), **cw_opts}, tmp)
    if args.json:
        print(json.dumps({"meta": meta, "results": results,
                          "floor_turn_ratios": turn_ratios(results),
                          "floor_x25519_turn_ratios": turn_ratios(results, "floor-x25519")},
                         indent=2))
    else:
        print(render(results, meta))
    return 0


if __name__ == "__main__":
    sys.exit(main())
