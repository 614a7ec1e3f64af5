"""How the web read side scales: 100,000 stored targets, against serving nothing.

Workload (built before anything is timed; generation is not measured): a SQLite
database of ``--targets`` targets (default 100,000), each with one observation whose
report comes from the real analysis of one of a few chains (leaves expiring over the
next year, a sprinkle of critical ones), and a second database of ``--calendar``
targets (default 10,000) for the feed.

Measured against the app served by uvicorn on loopback in this process (median of
``--runs`` requests, after one warm-up):

``overview``  ``GET /``: the first page of the dashboard (50 rows, counts, header).
``api``       ``GET /api/v1/targets?limit=100``.
``health``    ``GET /api/v1/health``: the baseline, one small query.
``ics``       ``GET /calendar.ics`` over the ``--calendar`` database, polled again (each
              event's iCalendar text is kept once generated); ``ics_cold`` the first one.
``rss``       this process's resident set before the web server starts (database
              open: what ``serve --no-web`` holds) and after the requests above.

Targets (issue #15): overview and api < 300 ms, ics < 2 s, RSS growth < 150 MiB.
Usage: ``python bench/web.py [--targets N] [--calendar N] [--runs N] [--json]``.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import resource
import statistics
import sys
import tempfile
import time
from pathlib import Path

import httpx

from chainwatch import analyze
from chainwatch.model import Target
from chainwatch.probe import Observation
from chainwatch.service.web import WebServer, WebSettings, bind
from chainwatch.storage.repo import Database
from chainwatch.stores import resolve_profile
from chainwatch.testing.pki import PKI

UTC = dt.UTC


def rss_mib() -> float:
    with open("/proc/self/status", encoding="ascii") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def fill(path: Path, n: int, now: dt.datetime) -> None:
    pki = PKI(now=now)
    root = pki.root("Bench Root")
    ca = root.intermediate("Bench CA")
    pem = path.with_suffix(".pem")
    pem.write_bytes(root.pem)
    profiles = [resolve_profile(f"file:{pem}")]
    variants = []
    for days in (3, 10, 25, 45, 90, 180, 365):
        leaf = ca.leaf("bench.example", expires=now + dt.timedelta(days=days))
        chain = leaf.chain(ca)
        variants.append((chain, analyze(list(chain), profiles, at=now, host="bench.example")))
    with Database(str(path)) as db:
        def items():  # type: ignore[no-untyped-def]
            for i in range(n):
                chain, report = variants[i % len(variants)]
                target = Target(host=f"h{i:06d}.bench.example", port=443, ip="127.0.0.1")
                yield (Observation(target=target, observed_at=now,
                                   chain=tuple(c.der for c in chain)),
                       report.with_target(target))
        db.record_many(items(), batch_size=2000)


def timed(client: httpx.Client, url: str, runs: int) -> float:
    client.get(url).raise_for_status()
    samples = []
    for _ in range(runs):
        start = time.perf_counter()
        client.get(url).raise_for_status()
        samples.append(time.perf_counter() - start)
    return statistics.median(samples)


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--targets", type=int, default=100_000)
    parser.add_argument("--calendar", type=int, default=10_000)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    now = dt.datetime.now(UTC).replace(microsecond=0)
    out: dict[str, float] = {}
    with tempfile.TemporaryDirectory() as tmp:
        big, small = Path(tmp) / "big.sqlite", Path(tmp) / "cal.sqlite"
        fill(big, args.targets, now)
        fill(small, args.calendar, now)
        with Database(str(big)) as db, Database(str(small)) as cal:
            out["rss_no_web_mib"] = rss_mib()
            with WebServer(WebSettings(db=db), bind("127.0.0.1:0", token=None)) as web, \
                    WebServer(WebSettings(db=cal), bind("127.0.0.1:0", token=None)) as web2, \
                    httpx.Client(base_url=web.url.rstrip("/"), timeout=120) as client, \
                    httpx.Client(base_url=web2.url.rstrip("/"), timeout=120) as client2:
                for _ in range(100):
                    try:
                        client.get("/static/style.css")
                        client2.get("/static/style.css")
                        break
                    except httpx.TransportError:
                        time.sleep(0.05)
                out["health_s"] = timed(client, "/api/v1/health", args.runs)
                out["overview_s"] = timed(client, "/", args.runs)
                out["api_s"] = timed(client, "/api/v1/targets?limit=100", args.runs)
                start = time.perf_counter()
                client2.get("/calendar.ics").raise_for_status()
                out["ics_cold_s"] = time.perf_counter() - start
                out["ics_s"] = timed(client2, "/calendar.ics", max(1, args.runs // 2))
                out["rss_web_mib"] = rss_mib()
    out["rss_growth_mib"] = out["rss_web_mib"] - out["rss_no_web_mib"]
    if args.json:
        print(json.dumps(out, indent=2))
    else:
        print(f"{args.targets} targets: overview {out['overview_s'] * 1000:.0f} ms, "
              f"/api/v1/targets?limit=100 {out['api_s'] * 1000:.0f} ms "
              f"(health {out['health_s'] * 1000:.0f} ms); target < 300 ms")
        print(f"{args.calendar} targets: /calendar.ics {out['ics_s']:.2f} s polled again "
              f"({out['ics_cold_s']:.2f} s the first time); target < 2 s")
        print(f"RSS {out['rss_no_web_mib']:.0f} MiB without web, {out['rss_web_mib']:.0f} MiB "
              f"with it (+{out['rss_growth_mib']:.0f} MiB); target < +150 MiB")
    ok = (out["overview_s"] < 0.3 and out["api_s"] < 0.3 and out["ics_s"] < 2
          and out["rss_growth_mib"] < 150)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
