"""The monitor's throughput, memory and database growth: ``chainwatch scan`` of a large
inventory with no database, into SQLite and into PostgreSQL.

Set-up (not timed): the loopback farm of ``bench/probe.py``: a throwaway hierarchy (EC
P-256 root, 4 intermediates, one leaf per endpoint), nginx serving every endpoint's
chain selected by its SNI name ``eN.bench.test``, spread over ``--addresses`` loopback
addresses on one port (so each address:port serves thousands of names; ``--farm``: how nginx
selects the chain, see ``bench/probe.py``). The inventory
lists every endpoint with its address pinned (``ip:``; the names do not resolve) and one
profile, ``file:`` of the bench root.

Measured, each database in a subprocess of its own (so ``ru_maxrss`` is that run's peak
resident set), with the monitor's code path (:func:`chainwatch.service.collect.collect` then
:func:`~chainwatch.service.record.record`: probe,
analyse, track changes, store):

``none``        ``collect(inventory, None)``: probing and analysis, nothing stored. The
                baseline the others are compared with.
``sqlite``      into a new SQLite file (WAL), the default.
``postgresql``  into a new PostgreSQL database created for the run (and dropped after),
                on the server of ``--pg-url`` (default: the local one).

Each worker (with the ``chainwatch`` command's collector settings) loads the inventory,
then scans it twice: ``first`` (an empty database: every certificate and target row is
new) and ``again`` (steady state, as ``serve`` runs: every certificate is known, the
previous leaf of each target is read back for change tracking). The workloads run in
turns, ``--repeat`` times (best kept: this measures a shared machine).

Reported: endpoints/s per scan and against ``none``; the cost of storage, as the share of
the scan's own time spent reading back the previous leaves and writing the batch
(:attr:`ScanResult.timings`; storage runs after the analysis, so that share is exactly
the throughput it costs, without the run-to-run noise of comparing separate runs; target:
at most 20%); peak RSS (target: under 1 GiB for 10,000 endpoints, probe processes
included: they are far smaller than the parent); and the database's growth per 1,000
observations, for the first scan (certificates, chains and report documents included) and
for a repeat scan (an observation row and its index entries: its chain and document are
the ones its target stored before).

Usage: ``python bench/scan.py [--endpoints N] [--skip postgresql] [--json]``
(``make bench-scan``). Without an ``nginx`` binary it says how to install one and exits 0.
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import sys
import tempfile
import time
from pathlib import Path
from types import ModuleType
from typing import Any

from _sibling import sibling

HERE = Path(__file__).resolve()
TARGET_STORAGE_COST = 0.20
TARGET_RSS_MIB = 1024.0
DEFAULT_PG_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
WORKLOADS = ("none", "sqlite", "postgresql")


@functools.cache
def _farm() -> ModuleType:
    """``bench/probe.py``'s nginx farm and certificate helpers (one source of truth)."""
    return sibling("probe")


def write_inventory(path: Path, root: Path, targets: list[tuple[str, int, str]]) -> None:
    """One endpoint per target, address pinned, judged by the bench root only."""
    lines = [
        "defaults: {profiles: [bench], interval: 1h, timeout: 10s}",
        "profiles:",
        f"  bench: {{trust: [{json.dumps('file:' + str(root))}], building: modern}}",
        "endpoints:",
    ]
    lines += [f"  - {{host: {name}, port: {port}, ip: {ip}}}" for ip, port, name in targets]
    path.write_text("\n".join(lines) + "\n")


# -- PostgreSQL: a database of the run's own ------------------------------------------------------


def _admin_dsn(url: str) -> str:
    return url.replace("postgresql+psycopg://", "postgresql://", 1)


def _with_database(url: str, name: str) -> str:
    base, _, _ = url.rpartition("/")
    return f"{base}/{name}"


def create_pg_database(admin_url: str) -> tuple[str | None, str]:
    """A fresh database for this run: (its URL, "") or (None, why not)."""
    try:
        import psycopg
    except ImportError:
        return None, "psycopg is not installed"
    name = f"chainwatch_bench_{os.getpid()}"
    try:
        with psycopg.connect(_admin_dsn(admin_url), autocommit=True, connect_timeout=5) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}"')
            conn.execute(f'CREATE DATABASE "{name}"')
    except psycopg.Error as exc:
        return None, f"PostgreSQL unavailable ({type(exc).__name__}: {str(exc).strip()[:120]})"
    return _with_database(admin_url, name), ""


def drop_pg_database(admin_url: str, url: str) -> None:
    import psycopg

    name = url.rpartition("/")[2]
    with psycopg.connect(_admin_dsn(admin_url), autocommit=True, connect_timeout=5) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


# -- the worker (one per database, in its own process) -------------------------------------------


def database_bytes(url: str | None) -> int:
    """The database's size on disk now (SQLite: file + WAL; PostgreSQL: the database)."""
    if url is None:
        return 0
    if url.startswith("sqlite"):
        path = Path(url.split("///", 1)[1])
        return sum(p.stat().st_size for p in (path, Path(f"{path}-wal")) if p.exists())
    from sqlalchemy import create_engine, text

    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            conn.execute(text("CHECKPOINT"))
            return int(conn.execute(text("SELECT pg_database_size(current_database())"))
                       .scalar_one())
    finally:
        engine.dispose()


def worker(opts: dict[str, Any]) -> dict[str, Any]:
    from chainwatch.cli import tune_gc
    from chainwatch.config.inventory import load_inventory
    from chainwatch.service.collect import collect
    from chainwatch.service.record import record
    from chainwatch.storage.repo import Database

    tune_gc()  # as `chainwatch scan` and `serve` run
    url: str | None = opts["db"]
    start = time.perf_counter()
    inventory = load_inventory(opts["inventory"])
    loaded = time.perf_counter()
    result: dict[str, Any] = {"load_seconds": loaded - start,
                              "endpoints": len(inventory.endpoints)}
    database = Database(url) if url is not None else None
    try:
        sizes = [database_bytes(url)]
        for run in ("first", "again"):
            begin = time.perf_counter()
            outcome = collect(inventory, database)
            if database is not None:
                outcome = record(database, outcome)
            seconds = time.perf_counter() - begin
            if database is not None and url is not None and url.startswith("sqlite"):
                database.close()  # checkpoints the WAL into the file
                database = Database(url)
            sizes.append(database_bytes(url))
            count = len(outcome.observations)
            result[run] = {
                "seconds": seconds, "rate": count / seconds if seconds else 0.0,
                "observations": count, "ok": sum(1 for o in outcome.observations if o.ok),
                "timings": dict(outcome.timings),
            }
        if database is not None:
            result["stored"] = database.count_observations()
            first, again = result["first"]["observations"], result["again"]["observations"]
            result["kib_per_1000_first"] = (sizes[1] - sizes[0]) / 1024 / first * 1000
            result["kib_per_1000_again"] = (sizes[2] - sizes[1]) / 1024 / again * 1000
            result["bytes_total"] = sizes[2]
    finally:
        if database is not None:
            database.close()
    import resource

    result["rss_mib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0
    return result


def measure(kind: str, opts: dict[str, Any], tmp: Path) -> dict[str, Any]:
    spec = tmp / f"scan-{kind}.json"
    spec.write_text(json.dumps(opts))
    result: dict[str, Any] = _farm().run_worker(
        [sys.executable, str(HERE), "--worker", str(spec)], kind)
    return result


# -- report --------------------------------------------------------------------------------------


def render(results: dict[str, dict[str, Any]], meta: dict[str, Any]) -> str:
    out = [
        f"bench/scan.py: chainwatch scan of {meta['endpoints']} endpoints (leaf + intermediate, "
        f"EC P-256) served by nginx {meta['nginx_version']} "
        f"({meta.get('farm', 'per-name')} farm) on {meta['addresses']} loopback addresses, "
        f"{meta['cpus']} CPUs, Python {meta['python']}; best of {meta['repeat']} "
        "runs taken in turns",
        "",
        f"{'database':<11} {'scan':<6} {'seconds':>8} {'endpoints/s':>12} {'vs none':>8} "
        f"{'storage':>8} {'peak RSS':>9} {'KiB/1000 obs':>13}",
    ]
    base = results.get("none", {})
    verdicts: list[str] = []
    for kind in WORKLOADS:
        r = results.get(kind)
        if r is None:
            continue
        if "unavailable" in r:
            out.append(f"{kind:<11} {r['unavailable']}")
            continue
        for run in ("first", "again"):
            s = r[run]
            ratio = f"{s['rate'] / base[run]['rate']:.2f}x" if kind != "none" and run in base \
                else ""
            t = s["timings"]
            share = f"{t['store'] / t['total']:.0%}" if kind != "none" and t["total"] else ""
            size = r.get(f"kib_per_1000_{run}")
            out.append(
                f"{kind:<11} {run:<6} {s['seconds']:>8.2f} {s['rate']:>12.0f} {ratio:>8} "
                f"{share:>8} {r['rss_mib']:>5.0f} MiB "
                f"{'' if size is None else f'{size:>9.0f} KiB':>13}"
            )
        if kind != "none":
            t = r["again"]["timings"]
            cost = t["store"] / t["total"] if t["total"] else 0.0
            met = "met" if cost <= TARGET_STORAGE_COST else "NOT met"
            verdicts.append(f"storage cost ({kind}, steady state)  {cost:>4.0%} of the scan   "
                            f"target <= {TARGET_STORAGE_COST:.0%}: {met}")
    out.append("")
    out.append("storage: the share of the scan's own time spent reading back the previous "
               "leaves and writing the batch (ScanResult.timings)")
    load = base.get("load_seconds")
    if load is not None:
        out.append(f"inventory load: {load:.2f} s for {base['endpoints']} endpoints")
    out.extend(verdicts)
    for kind in WORKLOADS:
        r = results.get(kind, {})
        if "rss_mib" in r:
            met = "met" if r["rss_mib"] < TARGET_RSS_MIB else "NOT met"
            out.append(f"peak RSS ({kind})  {r['rss_mib']:.0f} MiB   "
                       f"target < {TARGET_RSS_MIB:.0f} MiB: {met}")
    return "\n".join(out)


def best(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """The run whose steady-state scan was fastest (the least disturbed)."""
    done = [r for r in runs if "unavailable" not in r]
    if not done:
        return runs[-1]
    return min(done, key=lambda r: float(r["again"]["seconds"]))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--endpoints", type=int, default=10_000)
    parser.add_argument("--addresses", type=int, default=4,
                        help="loopback addresses the endpoints are spread over")
    parser.add_argument("--repeat", type=int, default=2,
                        help="runs of each workload, taken in turns; the fastest is kept")
    parser.add_argument("--nginx", help="nginx binary (default: found on PATH or in sbin)")
    parser.add_argument("--nginx-workers", default="auto")
    _farm().add_farm_argument(parser)
    parser.add_argument("--pg-url", default=os.environ.get("CHAINWATCH_BENCH_PG", DEFAULT_PG_URL),
                        help="a PostgreSQL server (any database on it) where the run may "
                        "create and drop a database of its own")
    parser.add_argument("--skip", default="", help="comma-separated workloads to skip "
                        f"({', '.join(WORKLOADS)})")
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)

    if args.worker:
        print(json.dumps(worker(json.loads(Path(args.worker).read_text()))))
        return 0
    farm = _farm()
    prepared = farm.prepare(parser, args)
    if prepared is None:
        return 0
    nginx, addresses, skip, meta = prepared
    meta["repeat"] = max(1, args.repeat)
    runs: dict[str, list[dict[str, Any]]] = {k: [] for k in WORKLOADS if k not in skip}
    with tempfile.TemporaryDirectory(prefix="chainwatch-bench-") as tmp_name:
        tmp = Path(tmp_name)
        tmp.chmod(0o755)  # nginx workers may run as another user
        port = farm.free_port(addresses)
        print(f"building {args.endpoints} certificate chains...", file=sys.stderr)
        targets = farm.build_certificates(tmp, args.endpoints, addresses, port)
        inventory = tmp / "inventory.yaml"
        write_inventory(inventory, tmp / "root.pem", targets)
        print(f"starting nginx ({nginx}) with {args.endpoints} server names on "
              f"{len(addresses)} addresses, port {port}...", file=sys.stderr)
        with farm.running_nginx(nginx, tmp, targets, args.nginx_workers, args.farm):
            for attempt in range(meta["repeat"]):
                for kind in runs:
                    runs[kind].append(run_one(kind, attempt, inventory, tmp, args.pg_url))
    results = {kind: best(found) for kind, found in runs.items()}
    if args.json:
        print(json.dumps({"meta": meta, "results": results}, indent=2))
    else:
        print(render(results, meta))
    return 0


def run_one(kind: str, attempt: int, inventory: Path, tmp: Path, pg_url: str
            ) -> dict[str, Any]:
    """One worker run of ``kind`` on a database of its own."""
    url: str | None = None
    if kind == "sqlite":
        url = f"sqlite:///{tmp / f'bench-{attempt}.db'}"
    elif kind == "postgresql":
        url, why = create_pg_database(pg_url)
        if url is None:
            return {"unavailable": why}
    print(f"scanning into {kind} (run {attempt + 1})...", file=sys.stderr)
    try:
        return measure(kind, {"inventory": str(inventory), "db": url}, tmp)
    finally:
        if kind == "postgresql" and url is not None:
            drop_pg_database(pg_url, url)


if __name__ == "__main__":
    sys.exit(main())
