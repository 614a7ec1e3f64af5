"""Throughput and memory of the analysis engine, against a bare-``cryptography`` floor.

Workload (built before anything is timed; generation is not measured):

* a small Web-PKI-like hierarchy: RSA-2048 roots and intermediates (keys reused through
  :class:`~chainwatch.testing.pki.KeyPool`), a few EC P-256 roots and intermediates, roots
  cross-signed by older roots, and ~100 filler anchors per store;
* ``--chains`` distinct served chains of three certificates each, as DER bytes: an EC P-256
  leaf, its intermediate, then either the root (sent needlessly) or the root's cross-sign;
* three profiles: a modern store, ``legacy`` building over an older store that trusts
  the cross-signing roots, and a third store that overlaps the first.

Measured, each pass single-threaded in this process:

``floor``      per chain: ``x509.load_der_x509_certificate`` on the 3 DERs and
               ``verify_directly_issued_by`` on the 2 presented edges. The least work any
               chain checker must do; every ratio is against this rate.
``distinct``   per chain: ``Cert.from_der`` on the 3 DERs, then ``analyze`` with the 3
               profiles, a host name and a fixed instant (forecast included). Caches are
               cleared once before the pass, so every report is computed; what the engine
               remembers about the shared CA certificates carries over from chain to chain,
               as it does in a monitor.
``distinct-cli`` the same under the ``chainwatch`` command's collector settings
               (:func:`chainwatch.cli.tune_gc`): what the CLI, ``scan`` and ``serve`` run
               with, and what the target is checked against. ``distinct`` keeps the
               interpreter's defaults, as a program embedding the library would.
``cold``       the same, with every cache cleared before each chain: nothing shared, the
               worst case (a subset of the chains, to keep the run short).
``hits``       ``analyze`` on one already-parsed chain, ``--hits`` times (the report cache).
``hits-der``   the same from DER: ``Cert.from_der`` on the 3 DERs, then ``analyze``, as a
               monitor does when many endpoints serve one chain.

Rates are also given as ratios to the floor rate of the same run, and each timed pass
reports the share of its time spent in the cyclic garbage collector.

Peak memory is measured in separate passes under ``tracemalloc`` (which slows code down,
so it never overlaps a timed pass); it counts Python allocations, not OpenSSL's.
``ru_maxrss`` is the process's peak resident set up to the end of the timed passes,
fixtures included.

Usage: ``python bench/analysis.py [--chains N] [--hits N] [--cold N] [--json]``.
"""

from __future__ import annotations

import argparse
import datetime as dt
import gc
import json
import platform
import resource
import sys
import time
import tracemalloc
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import cryptography
from cryptography import x509

from chainwatch.analysis.engine import analyze, clear_caches
from chainwatch.model import Building, Cert, Profile, Store
from chainwatch.testing.pki import CA, PKI, KeyPool

NOW = dt.datetime(2026, 3, 1, 12, 0, tzinfo=dt.UTC)

TARGET_DISTINCT = 2_000.0
TARGET_HITS = 200_000.0


@dataclass(frozen=True)
class Fixtures:
    chains: tuple[tuple[bytes, bytes, bytes], ...]
    hosts: tuple[str, ...]
    profiles: tuple[Profile, ...]
    der_bytes: int


def build_fixtures(n_chains: int) -> Fixtures:
    pki = PKI(now=NOW, keys=KeyPool(rsa_size=6))
    ten_years = NOW + dt.timedelta(days=3650)

    # Old roots that cross-sign the current ones (the AddTrust / DST Root CA X3 pattern).
    old = [pki.root(f"Bench Old Root {i}", key="rsa2048", expires=ten_years) for i in range(3)]
    rsa_roots = [pki.root(f"Bench Root R{i}", key="rsa2048") for i in range(6)]
    ec_roots = [pki.root(f"Bench Root E{i}", key="ec256") for i in range(2)]
    roots = rsa_roots + ec_roots
    cross = {
        r.cert.sha256: r.cross_signed_by(old[i % len(old)]) for i, r in enumerate(roots)
    }
    intermediates: list[tuple[CA, CA]] = []  # (intermediate, its root)
    for i, r in enumerate(roots):
        for j in range(3):
            key = "ec256" if (r in ec_roots or j == 2) else "rsa2048"
            intermediates.append((r.intermediate(f"Bench CA {i}.{j}", key=key), r))

    def fillers(prefix: str, n: int) -> tuple[Cert, ...]:
        return tuple(pki.root(f"{prefix} Filler {k}").cert for k in range(n))

    shared = fillers("Shared", 80)
    modern = Store("bench-modern", (*(r.cert for r in roots), *shared, *fillers("Modern", 20)))
    older = Store(
        "bench-2016",
        (*(o.cert for o in old), *(r.cert for r in rsa_roots), *shared),
    )
    distro = Store(
        "bench-distro",
        (*(r.cert for r in roots[1:]), *(o.cert for o in old[:1]), *shared[:60],
         *fillers("Distro", 40)),
    )
    profiles = (
        Profile("bench-modern", modern),
        Profile("legacy:bench-2016", older, Building.LEGACY),
        Profile("bench-distro", distro),
    )

    chains: list[tuple[bytes, bytes, bytes]] = []
    hosts: list[str] = []
    for n in range(n_chains):
        inter, root = intermediates[n % len(intermediates)]
        host = f"host{n}.site{n % 97}.example"
        leaf = inter.leaf(host, f"www.{host}", key="ec256")
        top = root.cert if n % 2 == 0 else cross[root.cert.sha256].cert
        chains.append((leaf.cert.der, inter.cert.der, top.der))
        hosts.append(host)
    return Fixtures(
        chains=tuple(chains),
        hosts=tuple(hosts),
        profiles=profiles,
        der_bytes=sum(len(d) for c in chains for d in c),
    )


# -- the passes --------------------------------------------------------------------------


def floor_pass(fx: Fixtures, n: int) -> None:
    load = x509.load_der_x509_certificate
    for leaf_der, inter_der, top_der in fx.chains[:n]:
        leaf, inter, top = load(leaf_der), load(inter_der), load(top_der)
        leaf.verify_directly_issued_by(inter)
        inter.verify_directly_issued_by(top)


def engine_pass(fx: Fixtures, n: int, *, cold: bool = False) -> Counter[str]:
    """Analyse the first ``n`` chains; returns how many reports had each status and how
    many profile verdicts were untrusted (reports are not kept, as in a monitor that
    stores and drops them)."""
    tally: Counter[str] = Counter()
    profiles = fx.profiles
    for ders, host in zip(fx.chains[:n], fx.hosts[:n], strict=True):
        if cold:
            clear_caches()
        chain = tuple(Cert.from_der(d) for d in ders)
        report = analyze(chain, profiles, at=NOW, host=host)
        tally[report.status.value] += 1
        tally["untrusted verdicts"] += sum(1 for p in report.profiles if not p.trusted)
    return tally


def hits_pass(chain: Sequence[Cert], profiles: Sequence[Profile], host: str, n: int) -> None:
    for _ in range(n):
        analyze(chain, profiles, at=NOW, host=host)


def hits_der_pass(ders: Sequence[bytes], profiles: Sequence[Profile], host: str, n: int) -> None:
    for _ in range(n):
        analyze(tuple(Cert.from_der(d) for d in ders), profiles, at=NOW, host=host)


@dataclass
class Pass:
    name: str
    what: str
    count: int
    body: Callable[[], object]
    setup: Callable[[], object] = lambda: None
    """Brings the caches to the state the pass starts from (not measured)."""
    teardown: Callable[[], object] = lambda: None
    """Undoes what ``setup`` changed beyond the caches (not measured)."""
    seconds: float = 0.0
    gc_seconds: float = 0.0
    peak_bytes: int = 0

    @property
    def rate(self) -> float:
        return self.count / self.seconds


class GCTimer:
    """Time spent in the cyclic garbage collector, through ``gc.callbacks``."""

    def __init__(self) -> None:
        self.total = 0.0
        self._start = 0.0

    def __call__(self, phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            self._start = time.perf_counter()
        else:
            self.total += time.perf_counter() - self._start


def timed(p: Pass) -> object:
    p.setup()
    gc.collect()
    timer = GCTimer()
    gc.callbacks.append(timer)
    try:
        start = time.perf_counter()
        out = p.body()
        p.seconds = time.perf_counter() - start
    finally:
        gc.callbacks.remove(timer)
        p.teardown()
    p.gc_seconds = timer.total
    return out


def traced(p: Pass) -> None:
    """Peak Python-heap growth (bytes) while the pass runs."""
    p.setup()
    gc.collect()
    tracemalloc.start()
    try:
        base, _ = tracemalloc.get_traced_memory()
        p.body()
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
        p.teardown()
    p.peak_bytes = peak - base


def cli_gc() -> None:
    """Clear the caches, then collect as ``chainwatch`` does (:func:`chainwatch.cli.tune_gc`)."""
    from chainwatch.cli import tune_gc

    clear_caches()
    gc.collect()
    tune_gc()


def default_gc() -> None:
    gc.unfreeze()
    gc.set_threshold(*DEFAULT_GC_THRESHOLDS)


DEFAULT_GC_THRESHOLDS = gc.get_threshold()


def run(n_chains: int, n_hits: int, n_cold: int) -> dict[str, Any]:
    t0 = time.perf_counter()
    fx = build_fixtures(n_chains)
    built_in = time.perf_counter() - t0
    n_cold = min(n_cold, n_chains)
    one = fx.chains[0]
    one_chain = tuple(Cert.from_der(d) for d in one)
    host = fx.hosts[0]

    def prime() -> None:
        clear_caches()
        analyze(one_chain, fx.profiles, at=NOW, host=host)

    # Warm-up: import-time work and the stores' derived indexes are not what is measured.
    prime()
    floor_pass(fx, 1)

    passes = [
        Pass("floor", "cryptography: load_der x3, verify_directly_issued_by x2", n_chains,
             lambda: floor_pass(fx, n_chains)),
        Pass("distinct", "Cert.from_der x3 + analyze, every chain new", n_chains,
             lambda: engine_pass(fx, n_chains), setup=clear_caches),
        Pass("distinct-cli", "same, with the chainwatch command's collector settings",
             n_chains, lambda: engine_pass(fx, n_chains), setup=cli_gc, teardown=default_gc),
        Pass("cold", "same, all caches cleared before each chain", n_cold,
             lambda: engine_pass(fx, n_cold, cold=True)),
        Pass("hits", "analyze, one parsed chain again (report cache)", n_hits,
             lambda: hits_pass(one_chain, fx.profiles, host, n_hits), setup=prime),
        Pass("hits-der", "Cert.from_der x3 + analyze, one chain again", n_hits,
             lambda: hits_der_pass(one, fx.profiles, host, n_hits), setup=prime),
    ]
    tally: Counter[str] = Counter()
    for p in passes:
        out = timed(p)
        if p.name == "distinct" and isinstance(out, Counter):
            tally = out
    maxrss_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # before tracemalloc
    for p in passes:
        traced(p)

    untrusted = tally.pop("untrusted verdicts", 0)
    floor_rate = passes[0].rate
    by_name = {p.name: p for p in passes}
    return {
        "environment": {
            "python": platform.python_version(),
            "cryptography": cryptography.__version__,
            "openssl": openssl_version(),
            "machine": platform.machine(),
        },
        "fixtures": {
            "chains": n_chains,
            "profiles": [p.spec for p in fx.profiles],
            "anchors": [len(p.store.anchors) for p in fx.profiles],
            "der_bytes": fx.der_bytes,
            "build_seconds": round(built_in, 2),
        },
        "passes": [
            {
                "name": p.name,
                "what": p.what,
                "count": p.count,
                "seconds": round(p.seconds, 4),
                "per_second": round(p.rate, 1),
                "us_per_item": round(1e6 / p.rate, 2),
                "ratio_to_floor": round(p.rate / floor_rate, 4),
                "gc_share": round(p.gc_seconds / p.seconds, 3),
                "tracemalloc_peak_bytes": p.peak_bytes,
            }
            for p in passes
        ],
        "ru_maxrss_kib": maxrss_kib,
        "reports": {"status": dict(sorted(tally.items())), "untrusted_verdicts": untrusted},
        "targets": {
            "distinct_per_second": TARGET_DISTINCT,
            "distinct_met": by_name["distinct-cli"].rate >= TARGET_DISTINCT,
            "distinct_default_gc_met": by_name["distinct"].rate >= TARGET_DISTINCT,
            "hits_per_second": TARGET_HITS,
            "hits_met": by_name["hits"].rate >= TARGET_HITS,
        },
    }


def openssl_version() -> str:
    from cryptography.hazmat.backends.openssl.backend import backend

    return backend.openssl_version_text()


def render(out: dict[str, Any]) -> str:
    env, fx = out["environment"], out["fixtures"]
    lines = [
        f"chainwatch analysis benchmark: Python {env['python']}, cryptography "
        f"{env['cryptography']}, {env['openssl']}, {env['machine']}, one thread",
        f"{fx['chains']} distinct 3-certificate chains ({fx['der_bytes'] / 1e6:.1f} MB of DER); "
        f"profiles {', '.join(fx['profiles'])} ({'/'.join(map(str, fx['anchors']))} anchors); "
        f"fixtures built in {fx['build_seconds']} s (not measured)",
        "",
        f"{'pass':<12} {'items':>7} {'items/s':>10} {'us/item':>8} {'x floor':>8} {'gc':>4} "
        f"{'py peak':>9}  what",
    ]
    for p in out["passes"]:
        lines.append(
            f"{p['name']:<12} {p['count']:>7} {p['per_second']:>10,.0f} {p['us_per_item']:>8.1f} "
            f"{p['ratio_to_floor']:>8.3f} {p['gc_share']:>4.0%} "
            f"{p['tracemalloc_peak_bytes'] / 2**20:>7.1f}MB  {p['what']}"
        )
    t = out["targets"]
    by_name = {p["name"]: p for p in out["passes"]}
    reports = out["reports"]
    lines += [
        "",
        "x floor: rate / floor rate (same run). gc: share of the pass spent in the cyclic GC.",
        "py peak: tracemalloc peak of a separate, untimed run of the pass (Python heap only).",
        f"peak RSS of the timed passes: {out['ru_maxrss_kib'] / 1024:.0f} MiB "
        "(whole process, fixtures included)",
        f"distinct reports: {reports['status']}; "
        f"{reports['untrusted_verdicts']} untrusted profile verdicts",
        f"targets: distinct >= {t['distinct_per_second']:,.0f}/s "
        f"{'met' if t['distinct_met'] else 'NOT MET'} "
        f"({by_name['distinct-cli']['per_second']:,.0f}/s as chainwatch runs; "
        f"{by_name['distinct']['per_second']:,.0f}/s with the default collector); "
        f"hits >= {t['hits_per_second']:,.0f}/s {'met' if t['hits_met'] else 'NOT MET'} "
        f"({by_name['hits']['per_second']:,.0f}/s)",
    ]
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--chains", type=int, default=10_000, help="distinct chains (10000)")
    parser.add_argument("--hits", type=int, default=100_000, help="cache-hit calls (100000)")
    parser.add_argument("--cold", type=int, default=2_000, help="chains in the cold pass (2000)")
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    args = parser.parse_args(argv)
    if args.chains < 1 or args.hits < 1 or args.cold < 1:
        parser.error("counts must be positive")
    out = run(args.chains, args.hits, args.cold)
    print(json.dumps(out, indent=2) if args.json else render(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
