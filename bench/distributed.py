"""Distributed mode's throughput and the cost of the queue: 1 and 2 ``chainwatch worker``
processes against the in-process monitor, on the same machine and endpoints.

Set-up (not timed): the loopback nginx farm of ``bench/probe.py`` (one leaf per endpoint,
selected by SNI, spread over ``--addresses`` loopback addresses), its inventory with every
endpoint in one zone, a ``redis-server`` of the run's own on a free loopback port (or
``--broker``), and a PostgreSQL database created for the run on ``--pg-url`` (dropped after).

Measured, in turns, ``--repeat`` times (the fastest kept: this is a shared machine):

``inprocess``  what ``serve`` does with one batch of every endpoint:
               :func:`~chainwatch.service.collect.collect` then
               :func:`~chainwatch.service.record.record` into PostgreSQL, in a process of its
               own (probing in child processes, as ``serve`` does). The baseline.
``workers-1``  one ``chainwatch worker --processes 1``; the scheduler's
               :class:`~chainwatch.service.distributed.DistributedCycle` dispatches every
               endpoint (batches of at most 500) and the clock stops when the last batch is
               marked done in the database.
``workers-2``  the same with two workers (one process each: the two cores).

Reported: endpoints/s of each, their ratio to ``inprocess`` (target: 2 workers
>= 0.9x in-process on 2 cores, i.e. the queue costs at most 10%), the scheduler's own
costs (dispatching, seconds per 1,000 endpoints; the evaluation across zones of every
target and of one finished batch, seconds per 1,000 targets) and the message size per
endpoint, which feed the README's model for 1,000,000 endpoints an hour.

Usage: ``python bench/distributed.py [--endpoints N] [--repeat N] [--json]``. Without
nginx or redis-server it says so and exits 0; without PostgreSQL it exits 0 saying why.
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from types import ModuleType
from typing import Any

from _sibling import sibling

HERE = Path(__file__).resolve()
ZONE = "bench"
DEADLINE = 120.0
WAIT = 900.0  # the longest a run may take before the bench gives up on it


@functools.cache
def _farm() -> ModuleType:
    return sibling("probe")


@functools.cache
def _scan() -> ModuleType:
    return sibling("scan")


def write_inventory(path: Path, root: Path, targets: list[tuple[str, int, str]],
                    concurrency: int) -> None:
    _scan().write_inventory(path, root, targets)
    text = path.read_text().replace("endpoints:\n", f"zones: {{{ZONE}: {{concurrency: "
                                    f"{concurrency}}}}}\nendpoints:\n", 1)
    text = text.replace("  - {host:", f"  - {{zone: {ZONE}, host:")
    path.write_text(text)


# -- a broker of the run's own ---------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@contextmanager
def private_redis(tmp: Path) -> Iterator[str]:
    binary = shutil.which("redis-server")
    if binary is None:
        raise SystemExit("redis-server not found: install redis-server, or give --broker")
    port = _free_port()
    proc = subprocess.Popen([binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "",
                             "--appendonly", "no", "--dir", str(tmp)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        for _ in range(200):  # bounded: 10 s
            with socket.socket() as s:
                s.settimeout(0.2)
                if s.connect_ex(("127.0.0.1", port)) == 0:
                    break
            time.sleep(0.05)
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        proc.terminate()
        proc.wait(timeout=15)


# -- the workloads ---------------------------------------------------------------------------


def inprocess(opts: dict[str, Any]) -> dict[str, Any]:
    from chainwatch.cli import tune_gc
    from chainwatch.config.inventory import load_inventory
    from chainwatch.service.collect import collect
    from chainwatch.service.record import record
    from chainwatch.storage.repo import Database

    tune_gc()
    inventory = load_inventory(opts["inventory"])
    with Database(opts["db"]) as db:
        begin = time.perf_counter()
        result = record(db, collect(inventory, db), slot=None)
        seconds = time.perf_counter() - begin
    return {"seconds": seconds, "observations": len(result.observations),
            "ok": sum(1 for o in result.observations if o.ok)}


def distributed(opts: dict[str, Any], tmp: Path) -> dict[str, Any]:
    """Start the workers, wait until they are live, dispatch, wait for the last batch."""
    from chainwatch.config.inventory import load_inventory
    from chainwatch.service.distributed import DistributedCycle, make_app
    from chainwatch.storage.batches import BatchesRepo, zone_health
    from chainwatch.storage.repo import Database

    chainwatch = str(Path(sys.executable).with_name("chainwatch"))
    inventory = load_inventory(opts["inventory"])
    procs = []
    try:
        for n in range(opts["workers"]):
            with (tmp / f"worker-{n}.log").open("wb") as log:
                procs.append(subprocess.Popen(
                    [chainwatch, "worker", "--zone", ZONE, "--db", opts["db"], "--broker",
                     opts["broker"], "--processes", "1", "--name", f"bench-{n}"],
                    stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                    start_new_session=True))
        with Database(opts["db"]) as db:
            deadline = time.monotonic() + 120
            while time.monotonic() < deadline:
                (h,) = zone_health(db, zones=[ZONE]) or [None]
                if h is not None and len(h.workers) >= opts["workers"]:
                    break
                time.sleep(0.2)
            else:
                raise SystemExit("the workers did not come up within 120 s")
            cycle = DistributedCycle(db, make_app(opts["broker"], deadline=DEADLINE),
                                     deadline=DEADLINE)
            repo = BatchesRepo(db)
            begin = time.perf_counter()
            cycle.batch(inventory)
            dispatched = time.perf_counter()
            give_up = time.monotonic() + WAIT
            while repo.pending():
                if time.monotonic() > give_up:
                    raise SystemExit(f"batches not done within {WAIT:.0f} s")
                time.sleep(0.05)
            seconds = time.perf_counter() - begin
            done = repo.to_evaluate()
            e0 = time.perf_counter()
            evaluated = cycle.evaluate(inventory)
            e1 = time.perf_counter()
            one = next(iter(cycle.sent.values()))
            b0 = time.perf_counter()
            cycle.evaluate(inventory, one.endpoints)  # what the tick does per finished batch
            b1 = time.perf_counter()
            sizes = [len(json.dumps(s.message)) for s in cycle.sent.values()]
            cycle.close()
            return {
                "seconds": seconds, "dispatch_seconds": dispatched - begin,
                "batches": len(done), "observations": sum(b.observations or 0 for b in done),
                "evaluate_seconds": e1 - e0, "evaluated": len(evaluated.reports),
                "evaluate_batch_seconds": b1 - b0, "batch_endpoints": len(one.endpoints),
                "message_bytes_per_endpoint": sum(sizes) / max(1, len(inventory.endpoints)),
            }
    finally:
        for p in procs:
            if p.poll() is None:
                os.killpg(p.pid, signal.SIGTERM)
        for p in procs:
            try:
                p.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(p.pid, signal.SIGKILL)
                p.wait(timeout=10)


def run_one(kind: str, inventory: Path, tmp: Path, pg_url: str, broker: str
            ) -> dict[str, Any]:
    scan = _scan()
    url, why = scan.create_pg_database(pg_url)
    if url is None:
        return {"unavailable": why}
    print(f"running {kind}...", file=sys.stderr)
    try:
        opts = {"inventory": str(inventory), "db": url, "broker": broker}
        if kind == "inprocess":
            spec = tmp / "inprocess.json"
            spec.write_text(json.dumps(opts))
            found: dict[str, Any] = _farm().run_worker(
                [sys.executable, str(HERE), "--worker", str(spec)], kind)
            return found
        return distributed({**opts, "workers": int(kind.rsplit("-", 1)[1])}, tmp)
    finally:
        scan.drop_pg_database(pg_url, url)


def render(results: dict[str, dict[str, Any]], meta: dict[str, Any]) -> str:
    lines = [f"distributed mode, {meta['endpoints']} loopback endpoints, "
             f"{meta.get('cpus')} CPUs, best of {meta['repeat']}"]
    base = results.get("inprocess", {})
    base_rate = base.get("observations", 0) / base["seconds"] if base.get("seconds") else 0.0
    for kind, r in results.items():
        if "unavailable" in r:
            lines.append(f"  {kind:10} unavailable: {r['unavailable']}")
            continue
        rate = r["observations"] / r["seconds"] if r["seconds"] else 0.0
        ratio = f"{rate / base_rate:.2f}x in-process" if base_rate else ""
        lines.append(f"  {kind:10} {rate:8.0f} endpoints/s  {r['seconds']:6.1f} s  {ratio}")
        if "dispatch_seconds" in r:
            n = meta["endpoints"] / 1000
            lines.append(f"  {'':10} {r['batches']} batches; dispatch "
                         f"{r['dispatch_seconds'] / n:.3f} s/1000 endpoints; evaluation "
                         f"{r['evaluate_seconds'] / max(1, r['evaluated']) * 1000:.3f} "
                         f"s/1000 targets (all), "
                         f"{r['evaluate_batch_seconds'] / r['batch_endpoints'] * 1000:.3f} "
                         f"s/1000 targets (one finished batch); "
                         f"{r['message_bytes_per_endpoint']:.0f} bytes of message per endpoint")
    two = results.get("workers-2", {})
    if base_rate and two.get("seconds"):
        ratio = two["observations"] / two["seconds"] / base_rate
        lines.append(f"target: 2 workers >= 0.90x in-process: {ratio:.2f}x "
                     f"({'met' if ratio >= 0.9 else 'NOT met'})")
    return "\n".join(lines)


def best(runs: list[dict[str, Any]]) -> dict[str, Any]:
    ok = [r for r in runs if "seconds" in r]
    return min(ok, key=lambda r: r["seconds"]) if ok else runs[0]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--endpoints", type=int, default=2000)
    parser.add_argument("--addresses", type=int, default=4)
    parser.add_argument("--repeat", type=int, default=1)
    parser.add_argument("--concurrency", type=int, default=256,
                        help="the zone's concurrency (probes in flight per batch)")
    parser.add_argument("--nginx")
    parser.add_argument("--nginx-workers", default="auto")
    _farm().add_farm_argument(parser)
    parser.add_argument("--pg-url", default=os.environ.get("CHAINWATCH_BENCH_PG",
                                                           _scan().DEFAULT_PG_URL))
    parser.add_argument("--broker", help="a broker URL (default: a redis-server of the run's own)")
    parser.add_argument("--skip", default="")
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        print(json.dumps(inprocess(json.loads(Path(args.worker).read_text()))))
        return 0
    farm = _farm()
    prepared = farm.prepare(parser, args)
    if prepared is None:
        return 0
    nginx, addresses, _, meta = prepared
    meta["repeat"] = max(1, args.repeat)
    meta["endpoints"] = args.endpoints
    meta["cpus"] = os.cpu_count()
    kinds = [k for k in ("inprocess", "workers-1", "workers-2") if k not in args.skip.split(",")]
    runs: dict[str, list[dict[str, Any]]] = {k: [] for k in kinds}
    with tempfile.TemporaryDirectory(prefix="chainwatch-bench-") as tmp_name:
        tmp = Path(tmp_name)
        tmp.chmod(0o755)
        port = farm.free_port(addresses)
        print(f"building {args.endpoints} certificate chains...", file=sys.stderr)
        targets = farm.build_certificates(tmp, args.endpoints, addresses, port)
        inventory = tmp / "inventory.yaml"
        write_inventory(inventory, tmp / "root.pem", targets, args.concurrency)
        with farm.running_nginx(nginx, tmp, targets, args.nginx_workers, args.farm), (
            private_redis(tmp) if args.broker is None else _given(args.broker)
        ) as broker:
            for _ in range(meta["repeat"]):
                for kind in kinds:
                    runs[kind].append(run_one(kind, inventory, tmp, args.pg_url, broker))
    results = {k: best(v) for k, v in runs.items()}
    if args.json:
        print(json.dumps({"meta": meta, "results": results}, indent=2))
    else:
        print(render(results, meta))
    return 0


@contextmanager
def _given(url: str) -> Iterator[str]:
    yield url


if __name__ == "__main__":
    sys.exit(main())
