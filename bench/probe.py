"""Live probing throughput and memory: chainwatch against a handshake floor, sslyze and
``openssl s_client``, all on the same loopback endpoints served by nginx.

Set-up (not timed): a throwaway hierarchy built with :mod:`chainwatch.pki` (EC P-256 root,
4 intermediates, one EC P-256 leaf per endpoint; each endpoint serves leaf + intermediate),
then nginx (Debian's ``nginx-light`` is enough) configured in a temporary directory: one
``server`` block per endpoint, each selected by its SNI name ``eN.bench.test`` and serving
its own chain, spread over ``--addresses`` loopback addresses (127.0.0.1, 127.0.0.2, ...)
on one port. nginx runs in the foreground (``daemon off``) under this script and is
stopped at the end, also on error or Ctrl-C.

Measured, each in a subprocess of its own (so ``ru_maxrss`` is that tool's peak resident
set), after a warm-up pass:

``floor``       pyOpenSSL handshakes (blocking sockets, ``VERIFY_NONE``) from a
                ``ThreadPoolExecutor`` returning ``get_peer_cert_chain()`` and nothing else:
                the least work any chain monitor must do. Best of a sweep of pool sizes
                (``--floor-threads``), best of ``--repeat`` runs.
``chainwatch``  ``probe_all`` (the monitor's defaults: 256 in flight, 8 per address, one
                event loop per core) then ``observe.report_for`` for every observation with
                a ``file:`` profile of the bench root and the endpoint's name as host. The
                analysis caches are cleared before each run, so every chain is parsed and
                analysed. Best of ``--repeat`` runs.
``sslyze``      sslyze's ``CERTIFICATE_INFO`` scan of the same endpoints (connectivity
                test + certificate info, as ``sslyze --certinfo`` runs it). sslyze pins
                ``cryptography<47``, so it is not installed into the project's venv: the
                script uses an interpreter that can import it (``--sslyze-python``, this
                one, or a cached venv that ``--install-sslyze`` creates); otherwise the row
                says "sslyze unavailable".
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
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from types import FrameType
from typing import Any

HERE = Path(__file__).resolve()
NGINX_MISSING = "install nginx (apt-get install nginx-light) to run this benchmark"
DOMAIN = "bench.test"
TARGET_FLOOR_RATIO = 0.7
TARGET_SSLYZE_RATIO = 20.0
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


def nginx_conf(tmp: Path, targets: Sequence[Target], workers: str) -> str:
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
    for ip, port, name in targets:
        lines.append(
            f"  server {{ listen {ip}:{port} ssl; server_name {name}; "
            f"ssl_certificate {tmp}/certs/{name}.pem; "
            f"ssl_certificate_key {tmp}/certs/{name}.key; return 204; }}"
        )
    lines.append("}")
    return "\n".join(lines) + "\n"


@contextmanager
def running_nginx(binary: str, tmp: Path, targets: Sequence[Target], workers: str
                  ) -> Iterator[subprocess.Popen[bytes]]:
    """nginx serving ``targets`` until the block exits (killed if it will not stop)."""
    conf = tmp / "nginx.conf"
    conf.write_text(nginx_conf(tmp, targets, workers))
    log = tmp / "error.log"
    args = [binary, "-p", f"{tmp}/", "-c", str(conf)]
    if _nginx_supports_e(binary):
        args += ["-e", str(log)]
    proc = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE)
    try:
        listening = sorted({(ip, port) for ip, port, _ in targets})
        deadline = time.monotonic() + 120
        for _ in range(2400):  # bounded: 120 s at most
            if proc.poll() is not None:
                err = proc.stderr.read().decode(errors="replace") if proc.stderr else ""
                tail = log.read_text(errors="replace")[-2000:] if log.exists() else ""
                raise SystemExit(f"nginx exited with status {proc.returncode}:\n{err}{tail}")
            if all(_accepts(ip, port) for ip, port in listening):
                break
            if time.monotonic() > deadline:
                raise SystemExit("nginx did not start listening within 120 s")
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


def build_certificates(tmp: Path, count: int, addresses: Sequence[str], port: int
                       ) -> list[Target]:
    """``count`` endpoints: a leaf + intermediate chain and key per SNI name."""
    from chainwatch.pki import PKI, key_pem, pem_of

    pki = PKI()
    root = pki.root("Chainwatch Bench Root")
    cas = [root.intermediate(f"Chainwatch Bench CA {i}") for i in range(4)]
    (tmp / "certs").mkdir()
    (tmp / "root.pem").write_bytes(pem_of(root.cert))
    targets: list[Target] = []
    for i in range(count):
        name = f"e{i}.{DOMAIN}"
        ca = cas[i % len(cas)]
        leaf = ca.leaf(name)
        (tmp / "certs" / f"{name}.pem").write_bytes(pem_of(*leaf.chain(ca)))
        (tmp / "certs" / f"{name}.key").write_bytes(key_pem(leaf.key))
        targets.append((addresses[i % len(addresses)], port, name))
    return targets


# -- workers (each in its own process) ----------------------------------------------------------


def _peak_rss_mib(who: int = resource.RUSAGE_SELF) -> float:
    return resource.getrusage(who).ru_maxrss / 1024.0  # KiB on Linux


def worker_floor(targets: Sequence[Target], opts: dict[str, Any]) -> dict[str, Any]:
    from concurrent.futures import ThreadPoolExecutor

    from OpenSSL import SSL

    ctx = SSL.Context(SSL.TLS_CLIENT_METHOD)
    ctx.set_verify(SSL.VERIFY_NONE)

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

    def run(threads: int, batch: Sequence[Target]) -> tuple[float, int]:
        start = time.perf_counter()
        with ThreadPoolExecutor(max_workers=threads) as pool:
            got = sum(1 for n in pool.map(handshake, batch) if n)
        return time.perf_counter() - start, got

    run(8, targets[: min(len(targets), 200)])  # warm-up
    best: dict[str, Any] = {}
    for threads in opts["threads"]:
        for _ in range(opts["repeat"]):
            seconds, ok = run(threads, targets)
            if not best or seconds < best["seconds"]:
                best = {"seconds": seconds, "ok": ok, "config": f"{threads} threads"}
    return best


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


def worker_chainwatch(targets: Sequence[Target], opts: dict[str, Any]) -> dict[str, Any]:
    import datetime as dt

    from chainwatch.analysis.engine import clear_caches
    from chainwatch.cli import tune_gc
    from chainwatch.model import Report, Status
    from chainwatch.model import Target as CwTarget
    from chainwatch.observe import report_for
    from chainwatch.probe import Observation
    from chainwatch.probe.tls import probe_all
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

    if opts["repeat"] > 1:
        run(items[: min(len(items), 200)])  # warm-up
    best: dict[str, Any] = {}
    runs: list[float] = []
    for _ in range(opts["repeat"]):
        result = run(items)
        runs.append(result["seconds"])
        if not best or result["seconds"] < best["seconds"]:
            best = result
    best["runs"] = runs
    best["children_rss_mib"] = children_rss
    best["children"] = children_seen
    best["pipelined"] = opts.get("pipelined", True)
    where = {None: "auto", True: "processes", False: "threads"}[processes]
    how = "analysis in on_result" if opts.get("pipelined", True) else "analysis after"
    best["config"] = (f"probe_all defaults (256 in flight, 8/address, "
                      f"{workers or 'a'} loop{'s' if workers else '/core'}, {where}), {how}")
    return best


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


WORKERS = {
    "floor": worker_floor,
    "chainwatch": worker_chainwatch,
    "sslyze": worker_sslyze,
    "openssl": worker_openssl,
}


def worker_main(kind: str, spec_file: str) -> None:
    spec = json.loads(Path(spec_file).read_text())
    targets = [tuple(t) for t in spec["targets"]]
    result = WORKERS[kind](targets, spec["opts"])  # type: ignore[arg-type]
    result.setdefault("rss_mib", _peak_rss_mib())
    result["count"] = len(targets)
    print(json.dumps(result))


def measure(python: str, kind: str, targets: Sequence[Target], opts: dict[str, Any],
            tmp: Path) -> dict[str, Any]:
    spec = tmp / f"{kind}-{len(targets)}.json"
    spec.write_text(json.dumps({"targets": list(targets), "opts": opts}))
    result = run_worker([python, str(HERE), "--worker", kind, "--spec", str(spec)], kind)
    if "unavailable" not in result:
        result["rate"] = result["count"] / result["seconds"] if result["seconds"] > 0 else 0.0
    return result


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


def render(results: dict[str, dict[str, Any]], meta: dict[str, Any]) -> str:
    out = [
        f"bench/probe.py: {meta['endpoints']} endpoints (leaf + intermediate, EC P-256), "
        f"nginx {meta['nginx_version']} on {meta['addresses']} loopback addresses, "
        f"{meta['cpus']} CPUs, Python {meta['python']}",
        "",
        f"{'workload':<12} {'endpoints':>9} {'seconds':>8} {'endpoints/s':>12} "
        f"{'peak RSS':>10}  config",
    ]
    for name in ("floor", "chainwatch", "sslyze", "openssl", "big"):
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
        if name in ("chainwatch", "big"):
            when = "in on_result, while probing" if r.get("pipelined") else "after probing"
            out.append(f"{'':<12} analysis {r['analysis_seconds']:.2f} s ({when}), "
                       f"the rest {r['probe_seconds']:.2f} s; "
                       f"{r['ok']} ok, {r['failed']} failed")
            if r.get("children_rss_mib"):
                out.append(f"{'':<12} probe processes: peak RSS {r['children_rss_mib']:.0f} "
                           "MiB each at most (not in the peak RSS column)")
            if len(r.get("runs", [])) > 1:
                out.append(f"{'':<12} runs: " + ", ".join(f"{x:.2f} s" for x in r["runs"]))
    out.append("")
    cw = results.get("chainwatch", {})
    for name, label, target in (("floor", "chainwatch / floor", TARGET_FLOOR_RATIO),
                                ("sslyze", "chainwatch / sslyze", TARGET_SSLYZE_RATIO),
                                ("openssl", "chainwatch / openssl", None)):
        other = results.get(name, {})
        if "rate" in cw and other.get("rate"):
            ratio = cw["rate"] / other["rate"]
            verdict = "" if target is None else (
                f"   target >= {target:g}x: {'met' if ratio >= target else 'NOT met'}")
            out.append(f"{label:<22} {ratio:8.2f}x{verdict}")
        else:
            out.append(f"{label:<22} n/a")
    by_limit = results.get("sslyze", {}).get("rates_by_limit", {})
    if "rate" in cw and by_limit:
        out.append("chainwatch / sslyze by its concurrent_server_scans_limit: " + ", ".join(
            f"{limit}: {cw['rate'] / rate:.1f}x" for limit, rate in by_limit.items() if rate))
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
    return nginx, addresses, skip, meta


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--endpoints", type=int, default=1000)
    parser.add_argument("--addresses", type=int, default=4,
                        help="loopback addresses the endpoints are spread over")
    parser.add_argument("--repeat", type=int, default=3, help="runs per workload; best kept")
    parser.add_argument("--floor-threads", default="8,16,32,64",
                        help="thread pool sizes the floor is measured with (best kept)")
    parser.add_argument("--nginx", help="nginx binary (default: found on PATH or in sbin)")
    parser.add_argument("--nginx-workers", default="auto")
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
    parser.add_argument("--worker", choices=sorted(WORKERS), help=argparse.SUPPRESS)
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
        with running_nginx(nginx, tmp, targets, args.nginx_workers):
            main_set = targets[: args.endpoints]
            python = sys.executable
            if "floor" not in skip:
                print("measuring the pyOpenSSL floor...", file=sys.stderr)
                threads = [int(t) for t in args.floor_threads.split(",") if t.strip()]
                results["floor"] = measure(python, "floor", main_set,
                                           {"threads": threads, "repeat": args.repeat}, tmp)
            if "chainwatch" not in skip:
                print("measuring chainwatch...", file=sys.stderr)
                results["chainwatch"] = measure(
                    python, "chainwatch", main_set,
                    {"root": str(tmp / "root.pem"), "repeat": args.repeat, **cw_opts}, tmp)
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
                    {"root": str(tmp / "root.pem"), "repeat": 1, **cw_opts}, tmp)
    if args.json:
        print(json.dumps({"meta": meta, "results": results}, indent=2))
    else:
        print(render(results, meta))
    return 0


if __name__ == "__main__":
    sys.exit(main())
