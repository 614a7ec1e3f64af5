"""How long ``chainwatch advise`` takes over 200 candidates, against one ``check-bundle``.

Workload (built before anything is timed; generation is not measured): a leaf served
with its intermediate and an expired cross-sign, three required populations (modern
over a current store, ``legacy`` over an old store, ``android`` over an old store), and
a pool of ``--candidates`` certificates (default 200) shaped like a real CA's
repository, every kind the search must sort out:

* reissues of the intermediate with the same key and other dates (true issuers);
* certificates with the intermediate's name but another key (refused by the key
  identifier before any signature is checked);
* cross-signs of the root by older roots, live and expired (true issuers, each a new
  branch), and those older roots themselves;
* the rest: CA certificates of unrelated hierarchies (refused by name).

Measured in this process, caches of a fresh :class:`~chainwatch.analysis.Analyzer`:

``check``    ``Analyzer.analyze`` of the served chain with the three profiles, cold: what
             ``check-bundle`` does, the baseline.
``advise``   :func:`chainwatch.analysis.advise.advise` with the pool, cold (a new
             analyzer each run): every signature, path and verdict computed.

Printed: each rate, the ratio advise/check, the chains evaluated and the target (advise
under one second). Usage: ``python bench/advise.py [--candidates N] [--runs N] [--json]``.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import platform
import statistics
import sys
import time
from dataclasses import dataclass
from typing import Any

from chainwatch.analysis.advise import MAX_CHAINS, advise
from chainwatch.analysis.engine import Analyzer
from chainwatch.model import LEGACY, MODERN, Cert, Profile, Store
from chainwatch.model.advice import Advice, PoolCert
from chainwatch.model.behaviours import ANDROID
from chainwatch.testing.pki import CA, PKI

NOW = dt.datetime(2026, 3, 1, 12, 0, tzinfo=dt.UTC)
TARGET_SECONDS = 1.0


@dataclass(frozen=True)
class Workload:
    served: tuple[Cert, ...]
    profiles: tuple[Profile, ...]
    pool: tuple[PoolCert, ...]


def build(candidates: int) -> Workload:
    pki = PKI(now=NOW)
    days = dt.timedelta(days=1)
    root = pki.root("Bench Root X2", not_before=NOW - 900 * days, expires=NOW + 7000 * days)
    inter = root.intermediate("Bench Issuing CA", not_before=NOW - 300 * days,
                              expires=NOW + 700 * days)
    leaf = inter.leaf("www.bench.example", not_before=NOW - 10 * days,
                      expires=NOW + 80 * days)
    old_roots = [pki.root(f"Bench Old Root {n}", not_before=NOW - 6000 * days,
                          expires=NOW + (n * 40 - 200) * days) for n in range(12)]
    expired_cross = root.cross_signed_by(old_roots[0], not_before=NOW - 800 * days,
                                         expires=NOW - 5 * days)
    pool: list[Cert] = []
    n_reissues = candidates // 20
    n_decoys = candidates // 10
    n_cross = candidates // 8
    for n in range(n_reissues):  # same name and key, other dates: real issuers
        pool.append(_reissue(inter, root, n))
    for n in range(n_decoys):  # same name, another key: refused by key identifier
        other = pki.root(f"Decoy Root {n}")
        pool.append(other.intermediate("Bench Issuing CA").cert)
    for n in range(n_cross):  # cross-signs of the root by old roots, some expired
        signer = old_roots[n % len(old_roots)]
        pool.append(root.cross_signed_by(
            signer, not_before=NOW - 700 * days, expires=NOW + (n * 30 - 120) * days).cert)
    pool.extend(r.cert for r in old_roots)
    unrelated = pki.root("Unrelated Root")
    n = 0
    while len(pool) < candidates:
        pool.append(unrelated.intermediate(f"Unrelated CA {n}").cert)
        n += 1
    current = Store("current", (root.cert, *(r.cert for r in old_roots[:4])))
    old = Store("old", tuple(r.cert for r in old_roots))
    profiles = (
        Profile("current", current, MODERN),
        Profile("legacy:old", old, LEGACY),
        Profile("android:old", old, ANDROID),
    )
    return Workload(
        served=leaf.chain(inter, expired_cross),
        profiles=profiles,
        pool=tuple(PoolCert(c, "bench") for c in pool[:candidates]),
    )


def _reissue(inter: CA, root: CA, n: int) -> Cert:
    """A reissue of ``inter`` (its subject and key) signed by ``root`` with other dates."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes

    days = dt.timedelta(days=1)
    builder = (
        x509.CertificateBuilder()
        .subject_name(inter.cert.parsed.subject)
        .issuer_name(root.cert.parsed.subject)
        .public_key(inter.key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(NOW - (350 + n) * days)
        .not_valid_after(NOW + (200 + 45 * n) * days)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(inter.key.public_key()),
                       critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(
            root.key.public_key()), critical=False)
    )
    return Cert.from_x509(builder.sign(root.key, hashes.SHA256()))


def _time(fn: Any, runs: int) -> list[float]:
    out = []
    for _ in range(runs):
        start = time.perf_counter()
        fn()
        out.append(time.perf_counter() - start)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--candidates", type=int, default=200)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    work = build(args.candidates)

    def check() -> None:
        Analyzer().analyze(work.served, work.profiles, at=NOW, host="www.bench.example")

    result: list[Advice] = []

    def run_advice() -> None:
        result.append(advise(work.served, work.profiles, work.pool, at=NOW,
                             host="www.bench.example", analyzer=Analyzer()))

    check()  # imports and first-call costs out of the measurement
    check_times = _time(check, args.runs * 4)
    advise_times = _time(run_advice, args.runs)
    advice = result[-1]
    check_s = statistics.median(check_times)
    advise_s = statistics.median(advise_times)
    doc = {
        "python": platform.python_version(),
        "candidates": len(work.pool),
        "chains_evaluated": advice.search.chains,
        "candidate_issuers": advice.search.candidates,
        "exhausted": advice.search.exhausted,
        "limit": MAX_CHAINS,
        "check_seconds": round(check_s, 5),
        "advise_seconds": round(advise_s, 4),
        "advise_worst_seconds": round(max(advise_times), 4),
        "ratio_advise_to_check": round(advise_s / check_s, 1),
        "per_chain_ms": round(1000 * advise_s / max(advice.search.chains, 1), 3),
        "advised_length": len(advice.advised),
        "target_seconds": TARGET_SECONDS,
        "within_target": advise_s < TARGET_SECONDS,
    }
    if args.json:
        print(json.dumps(doc, indent=2))
    else:
        print(f"advise over {doc['candidates']} candidates ({doc['candidate_issuers']} "
              f"could issue on a path; {doc['chains_evaluated']} chains evaluated, cap "
              f"{MAX_CHAINS}{', reached' if advice.search.exhausted else ''})")
        print(f"  check (baseline, cold): {1000 * check_s:8.2f} ms")
        print(f"  advise (cold):          {1000 * advise_s:8.2f} ms  (worst of "
              f"{args.runs}: {1000 * max(advise_times):.2f} ms)")
        print(f"  ratio advise / check:   {doc['ratio_advise_to_check']:8.1f}x   "
              f"({doc['per_chain_ms']} ms per chain evaluated)")
        print(f"  target: under {TARGET_SECONDS:g} s: "
              f"{'met' if doc['within_target'] else 'MISSED'}")
    return 0 if doc["within_target"] else 1


if __name__ == "__main__":
    sys.exit(main())
