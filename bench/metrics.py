"""Prometheus: ``/metrics`` for a large stored fleet, and the exporter's ``/probe`` rate.

``render``   A SQLite database is filled (not timed) with ``--targets`` (100,000) targets,
             one observation each: 1,000 distinct leaves from a throwaway hierarchy (EC
             P-256 root, 2 intermediates), each chain judged by two profiles
             (``file:`` of the root, and ``legacy:`` of it). Then, in fresh processes,
             :func:`chainwatch.service.metrics.exposition` renders every series of it, as
             ``GET /metrics`` of a process that only reads the database does. Reported:
             seconds (best of ``--repeat``) of the first render and of a second scrape
             with nothing written in between (answered from the render cache after one
             version query), extra peak RSS over the process after opening the database,
             body size and sample count, and the CPU seconds of each first render beside
             its wall-clock seconds (on a shared machine the two differ). Targets: under
             1 s and 200 MiB.

``probe``    The loopback nginx farm of ``bench/probe.py`` (``--endpoints`` endpoints,
             leaf + intermediate each), probed once per pass after a warm-up pass, in
             ``--repeat`` turns (the order of the sides rotated every turn); ratios are
             taken turn by turn, and the target (the exporter at 0.7x or more of check's
             rate) is judged on the median of the ``exporter`` ratios.

             ``check``   ``chainwatch check``'s probe-and-judge path in this process
                         (``probe_all`` of one target, then ``report_for``) from
                         ``--clients`` threads. No HTTP anywhere.
             ``exporter`` a real ``chainwatch exporter`` process answering ``GET /probe``
                         to ``--clients`` concurrent HTTP/1.1 clients in this process,
                         each a thread with one keep-alive connection (the standard
                         library's ``http.client``: a request line out, the answer read
                         and checked for ``probe_success 1``). It includes the server's
                         HTTP stack and the rendering of the answer; what it does not
                         include is a heavyweight client: Prometheus scrapes from a
                         process of its own, at a cost far below the exporter's.
             ``httpx``   the same exporter and requests through one ``httpx.Client``
                         shared by the threads (the way this bench measured before): its
                         connection pool and models cost this process a third to a half of
                         the CPU the exporter spends answering the request (2-core VM,
                         2026-12-03), all of it taken from the exporter and nginx on a
                         small machine. Reported beside, not judged.

             CPU per answered probe is reported too: ``check``'s is this process's CPU
             time during its pass (probe, analysis, the threads); the exporter's is the
             exporter process's (from ``/proc``), with the clients' (this process's CPU
             during the pass) beside it. nginx's share is in neither.

Usage: ``python bench/metrics.py [--targets N] [--endpoints N] [--skip probe] [--json]``.
Without nginx the ``probe`` part says how to install it and is skipped.
"""

from __future__ import annotations

import argparse
import datetime as dt
import functools
import http.client
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from types import ModuleType
from typing import Any

from _sibling import sibling

HERE = Path(__file__).resolve()
TARGET_RENDER_SECONDS = 1.0
TARGET_RENDER_MIB = 200.0
TARGET_PROBE_RATIO = 0.7
DISTINCT_LEAVES = 1000


@functools.cache
def _farm() -> ModuleType:
    """``bench/probe.py``'s nginx farm and certificate helpers (one source of truth)."""
    return sibling("probe")


def _rss_mib() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024.0
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


# -- render ---------------------------------------------------------------------------------


def fill(db_path: Path, count: int) -> None:
    """``count`` targets with one observation each (not timed)."""
    from chainwatch import analyze
    from chainwatch.model import Target
    from chainwatch.probe import Observation
    from chainwatch.storage.repo import Database
    from chainwatch.stores import resolve_profile
    from chainwatch.testing.pki import PKI, pem_of

    pki = PKI()
    root = pki.root("Chainwatch Bench Root")
    cas = [root.intermediate(f"Chainwatch Bench CA {i}") for i in range(2)]
    root_pem = db_path.parent / "root.pem"
    root_pem.write_bytes(pem_of(root.cert))
    profiles = [resolve_profile(f"file:{root_pem}"), resolve_profile(f"legacy:file:{root_pem}")]
    now = dt.datetime.now(dt.UTC).replace(microsecond=0)
    chains = []
    for i in range(min(DISTINCT_LEAVES, count)):
        name = f"e{i}.bench.test"
        leaf = cas[i % 2].leaf(name)
        chain = leaf.chain(cas[i % 2])
        chains.append((chain, analyze(chain, profiles, at=now, host=name)))
    with Database(str(db_path)) as db:
        batch: list[tuple[Observation, Any]] = []
        for i in range(count):
            chain, report = chains[i % len(chains)]
            ip = f"127.0.{i // 250 % 250}.{i % 250 + 1}"
            target = Target(host=f"e{i}.bench.test", port=443, ip=ip)
            batch.append((Observation(target=target, observed_at=now,
                                      chain=tuple(c.der for c in chain), tls_version="TLSv1.3"),
                          report.with_target(target)))
            if len(batch) == 5000:
                db.record_many(batch, batch_size=5000)
                batch = []
        if batch:
            db.record_many(batch, batch_size=5000)
        db.beat("scan", {"targets": count})


def render_worker(db_path: str) -> dict[str, Any]:
    import gc

    from chainwatch.cli.app import tune_gc
    from chainwatch.service.metrics import exposition
    from chainwatch.storage.repo import Database

    tune_gc()
    with Database(db_path) as db:
        gc.collect()
        base = _rss_mib()
        started = time.perf_counter()
        cpu = time.process_time()
        body, _ = exposition(db)
        seconds = time.perf_counter() - started
        cpu = time.process_time() - cpu
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0
        started = time.perf_counter()
        again, _ = exposition(db)  # nothing written since: the version query only
        cached = time.perf_counter() - started
        assert again == body
    samples = sum(1 for line in body.splitlines() if line and not line.startswith(b"#"))
    return {"seconds": seconds, "cpu_seconds": cpu, "cached_seconds": cached,
            "extra_mib": peak - base,
            "bytes": len(body), "samples": samples}


def run_render(count: int, repeat: int) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="chainwatch-bench-metrics-") as tmp:
        db_path = Path(tmp) / "fleet.sqlite"
        t0 = time.perf_counter()
        fill(db_path, count)
        filled = time.perf_counter() - t0
        runs = []
        for _ in range(repeat):
            out = subprocess.run([sys.executable, str(HERE), "--worker-render", str(db_path)],
                                 capture_output=True, text=True, timeout=1800, check=True)
            runs.append(json.loads(out.stdout))
    best = min(runs, key=lambda r: r["seconds"])
    return {"targets": count, "fill_seconds": filled, "runs": runs, "best": best,
            "median_seconds": statistics.median(r["seconds"] for r in runs),
            "max_extra_mib": max(r["extra_mib"] for r in runs)}


# -- probe ----------------------------------------------------------------------------------


def _check_pass(targets: Sequence[tuple[str, int, str]], profile_spec: str, clients: int) -> float:
    from chainwatch.model import Target
    from chainwatch.probe.handshake import Limits
    from chainwatch.probe.parallel import probe_all
    from chainwatch.service.observe import report_for
    from chainwatch.stores import resolve_profile

    profiles = [resolve_profile(profile_spec)]
    now = dt.datetime.now(dt.UTC)

    def one(t: tuple[str, int, str]) -> None:
        ip, port, name = t
        [obs] = probe_all([Target(host=name, port=port, ip=ip, sni=name)],
                          limits=Limits(timeout=10))
        assert obs.ok, obs.message
        report_for(obs, profiles, at=now, host=name)

    started = time.perf_counter()
    with ThreadPoolExecutor(clients) as pool:
        list(pool.map(one, targets))
    return len(targets) / (time.perf_counter() - started)


def _proc_cpu(pid: int) -> float:
    """User + system CPU seconds of process ``pid`` so far (``/proc``; 0.0 elsewhere)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _own_cpu() -> float:
    t = os.times()
    return t.user + t.system


def _module_of(name: str) -> str:
    return name.split(".")[0]


def _lean_pass(address: str, targets: Sequence[tuple[str, int, str]], clients: int) -> float:
    """``clients`` threads, each with one keep-alive ``http.client`` connection."""
    host, port = address.rsplit(":", 1)
    local = threading.local()

    def one(t: tuple[str, int, str]) -> None:
        ip, target_port, name = t
        conn: http.client.HTTPConnection | None = getattr(local, "conn", None)
        if conn is None:
            conn = local.conn = http.client.HTTPConnection(host, int(port), timeout=30)
        conn.request("GET", f"/probe?target={ip}:{target_port}&module={_module_of(name)}")
        answer = conn.getresponse()
        body = answer.read()
        assert answer.status == 200 and b"probe_success 1.0" in body, body[:300]

    started = time.perf_counter()
    with ThreadPoolExecutor(clients) as pool:
        list(pool.map(one, targets))
    return len(targets) / (time.perf_counter() - started)


def _httpx_pass(address: str, targets: Sequence[tuple[str, int, str]], clients: int) -> float:
    import httpx

    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
    with httpx.Client(base_url=f"http://{address}", timeout=30, limits=limits) as client:
        def one(t: tuple[str, int, str]) -> None:
            ip, port, name = t
            answer = client.get("/probe", params={"target": f"{ip}:{port}",
                                                  "module": _module_of(name)})
            assert answer.status_code == 200 and b"probe_success 1.0" in answer.content, \
                answer.text[:300]

        started = time.perf_counter()
        with ThreadPoolExecutor(clients) as pool:
            list(pool.map(one, targets))
        return len(targets) / (time.perf_counter() - started)


SIDES = ("check", "exporter", "httpx")


def run_probe(count: int, clients: int, repeat: int) -> dict[str, Any]:
    import httpx

    farm = _farm()
    nginx = farm.find_nginx(None)
    if nginx is None:
        return {"skipped": farm.NGINX_MISSING}
    with tempfile.TemporaryDirectory(prefix="chainwatch-bench-exporter-") as tmp_name:
        tmp = Path(tmp_name)
        addresses = ["127.0.0.1"]
        port = farm.free_port(addresses)
        targets = farm.build_certificates(tmp, count, addresses, port)
        spec = f"file:{tmp / 'root.pem'}"
        # One module per endpoint name (its SNI), all judged by the bench root.
        config = tmp / "exporter.yaml"
        config.write_text("modules:\n" + "".join(
            f"  {name.split('.')[0]}: {{profiles: [{json.dumps(spec)}], sni: {name}}}\n"
            for _, _, name in targets) + f"concurrency: {clients}\n")
        with farm.running_nginx(nginx, tmp, targets, "1"):
            listen = f"127.0.0.1:{farm.free_port(addresses)}"
            proc = subprocess.Popen(
                [str(Path(sys.executable).with_name("chainwatch")), "exporter", "--config",
                 str(config), "--listen", listen],
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            try:
                deadline = time.monotonic() + 60
                while True:
                    try:
                        if httpx.get(f"http://{listen}/-/healthy", timeout=2).status_code == 200:
                            break
                    except httpx.HTTPError:
                        pass
                    if time.monotonic() > deadline or proc.poll() is not None:
                        raise SystemExit("chainwatch exporter did not start")
                    time.sleep(0.1)
                passes: dict[str, Callable[[], float]] = {
                    "check": lambda: _check_pass(targets, spec, clients),
                    "exporter": lambda: _lean_pass(listen, targets, clients),
                    "httpx": lambda: _httpx_pass(listen, targets, clients),
                }
                for side in SIDES:  # warm-up
                    passes[side]()
                turns = []
                for turn in range(repeat):
                    row: dict[str, Any] = {"load": os.getloadavg()[0]}
                    for side in SIDES[turn % 3:] + SIDES[:turn % 3]:
                        own, theirs = _own_cpu(), _proc_cpu(proc.pid)
                        row[side] = passes[side]()
                        own, theirs = _own_cpu() - own, _proc_cpu(proc.pid) - theirs
                        if side == "check":
                            row["check_cpu_ms"] = own / count * 1000
                        else:
                            row[f"{side}_cpu_ms"] = theirs / count * 1000
                            row[f"{side}_client_cpu_ms"] = own / count * 1000
                    row["ratio"] = row["exporter"] / row["check"]
                    row["httpx_ratio"] = row["httpx"] / row["check"]
                    turns.append(row)
            finally:
                proc.terminate()
                try:
                    proc.wait(timeout=15)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait(timeout=15)
    return {"endpoints": count, "clients": clients, "turns": turns,
            "median_ratio": statistics.median(t["ratio"] for t in turns),
            "median_httpx_ratio": statistics.median(t["httpx_ratio"] for t in turns)}


def render_text(out: dict[str, Any]) -> str:
    lines = []
    r = out.get("render")
    if r is not None:
        b = r["best"]
        ok = b["seconds"] < TARGET_RENDER_SECONDS and r["max_extra_mib"] < TARGET_RENDER_MIB
        cached = min(run["cached_seconds"] for run in r["runs"])
        cpus = ", ".join(f"{run['cpu_seconds']:.2f}" for run in r["runs"] if "cpu_seconds" in run)
        lines.append(f"/metrics for {r['targets']:,} stored targets: {b['seconds']:.2f} s best, "
                     f"{r['median_seconds']:.2f} s median of {len(r['runs'])} (CPU s of each: "
                     f"{cpus}); unchanged since "
                     f"(cached): {cached * 1000:.1f} ms; extra peak RSS "
                     f"{r['max_extra_mib']:.0f} MiB; {b['samples']:,} samples, "
                     f"{b['bytes'] / 2**20:.1f} MiB body "
                     f"(target < {TARGET_RENDER_SECONDS:g} s, < {TARGET_RENDER_MIB:g} MiB: "
                     f"{'met' if ok else 'NOT met'})")
    p = out.get("probe")
    if p is not None:
        if "skipped" in p:
            lines.append(f"exporter /probe: skipped ({p['skipped']})")
        else:
            ok = p["median_ratio"] >= TARGET_PROBE_RATIO
            lines.append(f"exporter /probe vs check on {p['endpoints']} loopback endpoints, "
                         f"{p['clients']} clients: median ratio {p['median_ratio']:.2f}x "
                         f"(target >= {TARGET_PROBE_RATIO}x: {'met' if ok else 'NOT met'}); "
                         f"through httpx clients (as before): {p['median_httpx_ratio']:.2f}x")
            for n, t in enumerate(p["turns"], start=1):
                lines.append(
                    f"  turn {n} (load {t['load']:.1f}): check {t['check']:.0f}/s "
                    f"({t['check_cpu_ms']:.1f} ms CPU each); exporter {t['exporter']:.0f}/s "
                    f"= {t['ratio']:.2f}x ({t['exporter_cpu_ms']:.1f} ms CPU each, clients "
                    f"{t['exporter_client_cpu_ms']:.1f}); httpx {t['httpx']:.0f}/s = "
                    f"{t['httpx_ratio']:.2f}x ({t['httpx_cpu_ms']:.1f} ms, clients "
                    f"{t['httpx_client_cpu_ms']:.1f})")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--targets", type=int, default=100_000)
    parser.add_argument("--endpoints", type=int, default=300)
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--skip", action="append", default=[], choices=["render", "probe"])
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--worker-render", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker_render:
        print(json.dumps(render_worker(args.worker_render)))
        return 0
    out: dict[str, Any] = {}
    if "render" not in args.skip:
        out["render"] = run_render(args.targets, args.repeat)
    if "probe" not in args.skip:
        out["probe"] = run_probe(args.endpoints, args.clients, args.repeat)
    print(json.dumps(out, indent=2) if args.json else render_text(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
