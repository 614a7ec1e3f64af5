"""Soak: ``chainwatch serve`` (a real process) on thousands of loopback endpoints with
certificate churn, for many sweeps: its memory stays flat, no sweep is missed, and every
renewal is tracked.

Set-up: a throwaway hierarchy from the suite's PKI factory (root, intermediate, one
wildcard leaf per *group* of endpoints), and the incident lab's servers
(:mod:`chainwatch.testing.lab.servers`: one event loop, a stdlib TLS handler per port)
listening on ``--endpoints`` ports spread over ``--addresses`` loopback addresses
(``127.77.0.1`` ...; serve probes at most a few connections per address at once). The
endpoints of a group share one :class:`~chainwatch.testing.lab.servers.SniRouter`, so a
*renewal* writes the group's new chain and key files, loads them and swaps the router:
every connection from then on gets the new leaf, as a reloaded web server does.

The inventory lists every endpoint (``eNNNN.soak.lab.test``, address pinned), one
profile trusting the soak root, ``interval`` = ``--interval`` seconds. ``serve`` runs
with a fresh SQLite database for ``--minutes``; the bench watches the ``scan``
heartbeat in the database (read-only) and, at every sweep, samples serve's resident set
(``/proc``; serve and any child processes) and renews the next group every
``--churn-every`` sweeps. At the end serve is stopped with SIGTERM and the database is
read:

- **RSS**: the median of the last three sweep samples against the median of the first
  three after warm-up (``--warmup`` sweeps, default a third of the run, at least two):
  growth above ``--max-growth`` (5%) fails;
- **missed sweeps**: a gap between ``scan`` heartbeats, or between two observations of
  one endpoint, longer than twice the interval (serve's jitter is ±10%) fails, and so
  does an endpoint with no observation at all;
- **renewals**: every renewal made at least two intervals before the end must show in
  the observations of every endpoint of its group (the new leaf's SHA-256); one that
  does not fails.

A summary table of the sweeps and the verdicts is printed (``--json``: one JSON object);
the exit status is 1 when a check fails. Not part of ``make test``: ``make bench-soak``
runs the 30-minute default; ``--minutes 3`` is a quick validation.

Usage: ``python bench/soak.py [--minutes 30] [--endpoints 2000] [--interval 30]``
"""

from __future__ import annotations

import argparse
import datetime as dt
import itertools
import json
import os
import signal
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from chainwatch.testing.lab.servers import ServerLoop, SniRouter, server_context, tls_handler
from chainwatch.testing.pki import CA, PKI, Leaf, pem_of

EXE = Path(sys.executable).with_name("chainwatch")
DOMAIN = "soak.lab.test"
PAGE = os.sysconf("SC_PAGE_SIZE")


@dataclass
class Group:
    """Endpoints that serve one leaf, behind one router."""

    index: int
    router: SniRouter
    leaf: Leaf
    endpoints: list[tuple[str, int]] = field(default_factory=list)


@dataclass
class Renewal:
    at: dt.datetime
    group: int
    sha256: str
    sweep: int


@dataclass
class Sweep:
    n: int
    at: dt.datetime
    targets: int
    rss_mib: float


# -- set-up ---------------------------------------------------------------------------------


def issue(ca: CA) -> Leaf:
    return ca.leaf(f"*.{DOMAIN}")


def context(leaf: Leaf, ca: CA, directory: Path) -> Any:
    directory.mkdir(parents=True, exist_ok=True)
    return server_context(leaf.chain(ca), leaf.key, directory)


def start_servers(loop: ServerLoop, ca: CA, work: Path, *, endpoints: int, addresses: int,
                  groups: int) -> list[Group]:
    made: list[Group] = []
    for g in range(groups):
        leaf = issue(ca)
        made.append(Group(g, SniRouter(context(leaf, ca, work / "certs" / f"g{g}")), leaf))
    for i in range(endpoints):
        group = made[i % groups]
        address = f"127.77.{i % addresses // 250}.{i % addresses % 250 + 1}"
        endpoint = loop.serve(tls_handler(group.router), host=address)
        group.endpoints.append((endpoint.host, endpoint.port))
    return made


def write_inventory(path: Path, root_pem: Path, groups: list[Group], interval: int) -> None:
    lines = [
        f"defaults: {{profiles: [soak], interval: {interval}s, timeout: 10s}}",
        "profiles:",
        f"  soak: {{trust: [{json.dumps('file:' + str(root_pem))}]}}",
        "endpoints:",
    ]
    n = 0
    for group in groups:
        for host, port in group.endpoints:
            lines.append(f"  - {{host: e{n:04d}.{DOMAIN}, port: {port}, ip: {host}}}")
            n += 1
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


# -- watching serve -------------------------------------------------------------------------


def rss_bytes(pid: int) -> int:
    """Resident set of ``pid`` and its descendants (0 for a process gone)."""
    total = 0
    todo = [pid]
    for _ in range(10_000):
        if not todo:
            break
        p = todo.pop()
        try:
            fields = Path(f"/proc/{p}/statm").read_text().split()
            total += int(fields[1]) * PAGE
            for task in Path(f"/proc/{p}/task").iterdir():
                children = (task / "children").read_text().split()
                todo.extend(int(c) for c in children)
        except (OSError, ValueError, IndexError):
            continue
    return total


def parse_time(text: str) -> dt.datetime:
    value = dt.datetime.fromisoformat(text.replace(" ", "T"))
    return value if value.tzinfo else value.replace(tzinfo=dt.UTC)


def connect(db: Path) -> sqlite3.Connection:
    return sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=10)


def heartbeat(db: Path) -> tuple[dt.datetime, dict[str, Any]] | None:
    if not db.exists():
        return None
    try:
        with connect(db) as conn:
            row = conn.execute("SELECT last_beat, info FROM heartbeats "
                               "WHERE component = 'scan'").fetchone()
    except sqlite3.Error:
        return None  # not created yet, or busy: the next poll sees it
    if row is None:
        return None
    info = row[1] if isinstance(row[1], dict) else json.loads(row[1] or "{}")
    return parse_time(row[0]), info


# -- the checks -----------------------------------------------------------------------------


def observations(db: Path) -> dict[tuple[str, int], list[tuple[dt.datetime, str | None,
                                                                 str | None]]]:
    out: dict[tuple[str, int], list[tuple[dt.datetime, str | None, str | None]]] = {}
    with connect(db) as conn:
        rows = conn.execute(
            "SELECT t.ip, t.port, o.observed_at, o.leaf_sha256, o.failure "
            "FROM observations o JOIN targets t ON t.id = o.target_id "
            "ORDER BY o.observed_at, o.id").fetchall()
    for ip, port, at, leaf, failure in rows:
        out.setdefault((ip, int(port)), []).append((parse_time(at), leaf, failure))
    return out


def median(values: list[float]) -> float:
    return statistics.median(values) if values else 0.0


def analyse(*, db: Path, groups: list[Group], sweeps: list[Sweep], renewals: list[Renewal],
            beats: list[dt.datetime], started: dt.datetime, ended: dt.datetime,
            interval: int, warmup: int, max_growth: float) -> dict[str, Any]:
    limit = dt.timedelta(seconds=2 * interval)
    problems: list[str] = []
    # RSS
    after = [s.rss_mib for s in sweeps[warmup:]]
    base, final = median(after[:3]), median(after[-3:])
    growth = (final / base - 1) if base else 0.0
    if len(after) < 2:
        problems.append(f"only {len(after)} sweep(s) after warm-up: run longer")
    elif growth > max_growth:
        problems.append(f"RSS grew {growth:+.1%} after warm-up "
                        f"({base:.1f} -> {final:.1f} MiB; limit {max_growth:.0%})")
    # missed sweeps: heartbeats, then every endpoint's observations
    gaps = [b - a for a, b in itertools.pairwise(beats)]
    beat_misses = [g for g in gaps if g > limit]
    if beats and ended - beats[-1] > limit:
        beat_misses.append(ended - beats[-1])
    if beat_misses:
        problems.append(f"{len(beat_misses)} sweep heartbeat gap(s) longer than {limit}")
    seen = observations(db)
    endpoints = [e for g in groups for e in g.endpoints]
    never = [e for e in endpoints if e not in seen]
    late = 0
    worst_gap = dt.timedelta(0)
    failures = 0
    for e in endpoints:
        times = [t for t, _, _ in seen.get(e, [])]
        failures += sum(1 for _, _, f in seen.get(e, []) if f)
        for a, b in zip(times, [*times[1:], ended], strict=False):
            worst_gap = max(worst_gap, b - a)
            late += (b - a) > limit
    if never:
        problems.append(f"{len(never)} endpoint(s) never observed")
    if late:
        problems.append(f"{late} observation gap(s) longer than {limit}")
    # renewals
    due = [r for r in renewals if ended - r.at >= limit]
    untracked = 0
    for r in due:
        group = groups[r.group]
        for e in group.endpoints:
            if not any(leaf == r.sha256 and t >= r.at for t, leaf, _ in seen.get(e, [])):
                untracked += 1
    if untracked:
        problems.append(f"{untracked} endpoint renewal(s) not tracked")
    total_obs = sum(len(v) for v in seen.values())
    return {
        "endpoints": len(endpoints),
        "minutes": round((ended - started).total_seconds() / 60, 1),
        "interval_s": interval,
        "sweeps": len(sweeps),
        "warmup_sweeps": warmup,
        "rss_mib": {"first": sweeps[0].rss_mib if sweeps else 0.0,
                    "baseline": round(base, 1), "final": round(final, 1),
                    "max": max((s.rss_mib for s in sweeps), default=0.0),
                    "growth": round(growth, 4)},
        "heartbeat_gap_max_s": round(max(gaps, default=dt.timedelta(0)).total_seconds(), 1),
        "observation_gap_max_s": round(worst_gap.total_seconds(), 1),
        "observations": total_obs,
        "failed_probes": failures,
        "renewals": {"made": len(renewals), "checked": len(due),
                     "endpoint_renewals_checked": sum(len(groups[r.group].endpoints)
                                                      for r in due),
                     "untracked": untracked},
        "problems": problems,
        "ok": not problems,
    }


# -- main -----------------------------------------------------------------------------------


def run(args: argparse.Namespace) -> int:
    with tempfile.TemporaryDirectory(prefix="chainwatch-soak-") as tmp:
        work = Path(tmp)
        pki = PKI(now=dt.datetime.now(dt.UTC))
        root = pki.root("Soak Root")
        ca = root.intermediate("Soak CA")
        root_pem = work / "root.pem"
        root_pem.write_bytes(pem_of(root.cert))
        db = work / "soak.sqlite"
        inventory = work / "inventory.yaml"
        log_path = work / "serve.log"
        with ServerLoop("soak-servers") as loop:
            say(args, f"starting {args.endpoints} TLS endpoints on {args.addresses} "
                      "loopback addresses ...")
            groups = start_servers(loop, ca, work, endpoints=args.endpoints,
                                   addresses=args.addresses, groups=args.groups)
            write_inventory(inventory, root_pem, groups, args.interval)
            with log_path.open("w") as log:
                serve = subprocess.Popen(
                    [str(EXE), "serve", str(inventory), "--db", str(db)],
                    stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT)
            try:
                result = watch(args, serve, db, ca, work, groups)
            finally:
                if serve.poll() is None:
                    serve.send_signal(signal.SIGTERM)
                    try:
                        serve.wait(timeout=120)
                    except subprocess.TimeoutExpired:
                        serve.kill()
                        serve.wait(timeout=30)
            if serve.returncode not in (0, None):
                result["problems"].append(f"serve exited with status {serve.returncode}")
                result["ok"] = False
            tail = log_path.read_text(errors="replace").splitlines()[-5:]
        report(args, result, tail)
        return 0 if result["ok"] else 1


def watch(args: argparse.Namespace, serve: subprocess.Popen[bytes], db: Path, ca: CA,
          work: Path, groups: list[Group]) -> dict[str, Any]:
    started = dt.datetime.now(dt.UTC)
    end = time.monotonic() + args.minutes * 60
    sweeps: list[Sweep] = []
    renewals: list[Renewal] = []
    beats: list[dt.datetime] = []
    last: dt.datetime | None = None
    next_group = 0
    while time.monotonic() < end:
        if serve.poll() is not None:
            break
        time.sleep(1.0)
        beat = heartbeat(db)
        if beat is None or beat[0] == last:
            continue
        last, info = beat
        if info.get("partial"):
            continue  # a batch between sweeps
        beats.append(last)
        rss = rss_bytes(serve.pid) / (1 << 20)
        sweeps.append(Sweep(len(sweeps) + 1, last, int(info.get("targets", 0)), round(rss, 1)))
        say(args, f"sweep {len(sweeps):3d} at {last:%H:%M:%S}: {info.get('targets')} "
                  f"targets, serve RSS {rss:.1f} MiB")
        if len(sweeps) % args.churn_every == 0:
            group = groups[next_group % len(groups)]
            next_group += 1
            group.leaf = issue(ca)
            n = sum(1 for r in renewals if r.group == group.index) + 1
            group.router.set(context(group.leaf, ca, work / "certs" / f"g{group.index}-{n}"))
            renewals.append(Renewal(dt.datetime.now(dt.UTC), group.index,
                                    group.leaf.cert.sha256, len(sweeps)))
            say(args, f"  renewed group {group.index} ({len(group.endpoints)} endpoints): "
                      f"{group.leaf.cert.sha256[:12]}")
    ended = dt.datetime.now(dt.UTC)
    warmup = args.warmup if args.warmup is not None else max(2, len(sweeps) // 3)
    return analyse(db=db, groups=groups, sweeps=sweeps, renewals=renewals, beats=beats,
                   started=started, ended=ended, interval=args.interval, warmup=warmup,
                   max_growth=args.max_growth) | {
        "sweep_rss_mib": [s.rss_mib for s in sweeps]}


def say(args: argparse.Namespace, text: str) -> None:
    if not args.json:
        print(text, flush=True)


def report(args: argparse.Namespace, result: dict[str, Any], tail: list[str]) -> None:
    if args.json:
        print(json.dumps(result, indent=2))
        return
    rss = result["rss_mib"]
    ren = result["renewals"]
    rows = [
        ("endpoints", str(result["endpoints"])),
        ("run", f"{result['minutes']} min, interval {result['interval_s']} s"),
        ("sweeps (warm-up)", f"{result['sweeps']} ({result['warmup_sweeps']})"),
        ("serve RSS MiB", f"first {rss['first']}, after warm-up {rss['baseline']} -> "
                          f"{rss['final']} ({rss['growth']:+.1%}), max {rss['max']}"),
        ("longest heartbeat gap", f"{result['heartbeat_gap_max_s']} s"),
        ("longest observation gap", f"{result['observation_gap_max_s']} s"),
        ("observations", f"{result['observations']} ({result['failed_probes']} failed)"),
        ("renewals", f"{ren['made']} made, {ren['checked']} checked on "
                     f"{ren['endpoint_renewals_checked']} endpoints, "
                     f"{ren['untracked']} untracked"),
        ("verdict", "OK" if result["ok"] else "FAIL: " + "; ".join(result["problems"])),
    ]
    width = max(len(k) for k, _ in rows)
    print()
    for key, value in rows:
        print(f"{key:<{width}}  {value}")
    if not result["ok"] and tail:
        print("\nlast lines of serve's log:")
        for line in tail:
            print("  " + line)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--minutes", type=float, default=30.0)
    parser.add_argument("--endpoints", type=int, default=2000)
    parser.add_argument("--addresses", type=int, default=50,
                        help="loopback addresses the endpoints are spread over")
    parser.add_argument("--groups", type=int, default=20,
                        help="certificate groups (one leaf each, renewed in turn)")
    parser.add_argument("--interval", type=int, default=30, help="seconds between sweeps")
    parser.add_argument("--churn-every", type=int, default=2,
                        help="renew the next group every N sweeps")
    parser.add_argument("--warmup", type=int, default=None,
                        help="sweeps before RSS is judged (default: a third, at least 2)")
    parser.add_argument("--max-growth", type=float, default=0.05)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    if not 1 <= args.addresses <= 250 * 256 or args.groups < 1 or args.churn_every < 1:
        parser.error("bad --addresses, --groups or --churn-every")
    return run(args)


if __name__ == "__main__":
    sys.exit(main())
