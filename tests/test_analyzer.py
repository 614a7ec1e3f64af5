"""The Analyzer: one object owning every memo table of the engine, one ``clear()``,
shared safely between threads; ``analyze`` and ``clear_caches`` over a default one."""

from __future__ import annotations

import gc
import threading
import weakref
from collections.abc import Callable

import pytest

import chainwatch
import chainwatch.analysis
from chainwatch.analysis.engine import Analyzer, analyze, clear_caches, default_analyzer
from chainwatch.analysis.memo import Memo
from chainwatch.model import LEGACY, Cert, Profile, Report, Store

from .pki import PKI, at

NOW = at("2026-03-01T12:00:00Z")


def test_exported_from_the_package_and_the_analysis_room() -> None:
    assert chainwatch.Analyzer is Analyzer is chainwatch.analysis.Analyzer
    assert chainwatch.analysis.analyze is analyze


def _world(n: int = 1) -> tuple[list[tuple[Cert, ...]], list[Profile]]:
    pki = PKI(now=NOW)
    root = pki.root("Analyzer Root")
    old = pki.root("Analyzer Old Root")
    inter = root.intermediate("Analyzer CA")
    cross = root.cross_signed_by(old)
    chains = [inter.leaf(f"h{i}.example.com").chain(inter, cross) for i in range(n)]
    profiles = [
        Profile("modern", Store("both", (root.cert, old.cert))),
        Profile("legacy", Store("old", (old.cert,)), LEGACY),
    ]
    return chains, profiles


def test_clear_caches_releases_every_parsed_certificate() -> None:
    """No table outside the analyzer keeps certificates alive (the rules' per-certificate
    facts were module-level caches that ``clear_caches`` did not clear)."""
    chains, profiles = _world()
    chain = tuple(Cert.from_der(c.der) for c in chains[0])  # parsed into the default table
    analyze(chain, profiles, at=NOW, host="h0.example.com")
    refs = [weakref.ref(c) for c in chain[:2]]  # the leaf and the intermediate
    del chain, chains
    clear_caches()
    gc.collect()
    assert [r() for r in refs] == [None, None]


def test_clear_empties_every_table_and_only_its_own() -> None:
    chains, profiles = _world(3)
    mine = Analyzer()
    for chain in chains:
        mine.analyze(chain, profiles, at=NOW)
    assert all(len(t) for t in mine.tables if t.name not in {"certs"})
    before = [len(t) for t in default_analyzer().tables]
    mine.clear()
    assert [len(t) for t in mine.tables] == [0] * len(mine.tables)
    assert [len(t) for t in default_analyzer().tables] == before


def test_analyzers_are_independent_and_agree() -> None:
    chains, profiles = _world(2)
    a, b = Analyzer(), Analyzer(reports=1, structures=1, judgements=1, signatures=1)
    for chain in chains:
        assert a.analyze(chain, profiles, at=NOW) == b.analyze(chain, profiles, at=NOW)
    assert len(b.reports) == 1 and len(b.structures) == 1
    # The report table serves a repeated analysis.
    first = a.analyze(chains[0], profiles, at=NOW)
    assert a.analyze(chains[0], profiles, at=NOW) is first


def test_documented_sizes_bound_the_tables() -> None:
    sizes = {t.name: t.size for t in Analyzer().tables}
    assert sizes == {"reports": 8192, "structures": 20000, "judgements": 1024,
                     "signatures": 65536, "certs": 4096, "cert_facts": 4096,
                     "anchor_sets": 64}
    assert Analyzer(reports=3).reports.size == 3


def test_cert_parses_through_the_analyzers_own_table() -> None:
    der = PKI(now=NOW).root("Table Root").cert.der
    mine = Analyzer()
    first = mine.cert(der)
    assert mine.cert(der) is first and len(mine.certs) == 1
    assert Cert.from_der(der) is Cert.from_der(der)  # the default analyzer's table
    assert Cert.memo is default_analyzer().certs


def test_memo_eviction_orders() -> None:
    lru: Memo[str, int] = Memo("lru", 2)
    lru.put("a", 1)
    lru.put("b", 2)
    assert lru.get("a") == 1  # a is now the most recent
    lru.put("c", 3)
    assert (lru.get("a"), lru.get("b"), lru.get("c")) == (1, None, 3)
    fifo: Memo[str, int] = Memo("fifo", 2, lru=False)
    fifo.put("a", 1)
    fifo.put("b", 2)
    assert fifo.get("a") == 1  # a hit does not save it
    fifo.put("c", 3)
    assert (fifo.get("a"), fifo.get("b"), fifo.get("c")) == (None, 2, 3)
    with pytest.raises(ValueError, match="at least 1"):
        Memo("none", 0)


def test_threads_share_one_analyzer() -> None:
    """Eight threads analyse 40 chains each through one analyzer whose tables are far
    smaller than the work, so entries are evicted while other threads read them; every
    report equals the single-threaded one and no thread fails."""
    chains, profiles = _world(12)
    expected = [Analyzer().analyze(c, profiles, at=NOW) for c in chains]
    shared = Analyzer(reports=3, structures=2, judgements=2, signatures=3, cert_facts=2,
                      anchor_sets=1)
    errors: list[BaseException] = []
    results: dict[int, list[Report]] = {}

    def work(index: int) -> Callable[[], None]:
        def run() -> None:
            try:
                got = []
                for k in range(40):
                    i = (index + k) % len(chains)
                    got.append((i, shared.analyze(chains[i], profiles, at=NOW)))
                results[index] = [r for _, r in sorted(got, key=lambda ir: ir[0])]
                for i, report in got:
                    assert report == expected[i]
            except BaseException as exc:  # any failure in a thread is this test's failure
                errors.append(exc)
        return run

    threads = [threading.Thread(target=work(i)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert not any(t.is_alive() for t in threads)
    assert errors == []
    assert len(results) == 8
