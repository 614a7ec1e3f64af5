"""Property tests: the engine never raises, whatever bundle and instant it is given."""

from __future__ import annotations

import datetime as dt

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from chainwatch.analysis.engine import analyze
from chainwatch.analysis.forecast import breaks_at, trusted_at
from chainwatch.model import ONE_SECOND, Building, Cert, Profile, Status, Store

from .pki import PKI, at

_pki = PKI(now=at("2022-01-01"))
_roots = [_pki.root(f"Prop Root {i}", expires=f"20{25 + i}-01-01") for i in range(3)]
_old = _pki.root("Prop Old Root", not_before="2010-01-01", expires="2021-06-01")
_inters = [r.intermediate(f"Prop CA {i}") for i, r in enumerate(_roots)]
_cross = _roots[0].cross_signed_by(_old, expires="2021-06-01")
_leaves = [
    ca.leaf(f"host{i}.example.com", "*.example.net", not_before="2021-01-01",
            expires=f"2022-0{i + 2}-01")
    for i, ca in enumerate(_inters)
]
_self = _pki.self_signed_leaf("self.example.com")
POOL: list[Cert] = [
    *(r.cert for r in _roots), _old.cert, *(c.cert for c in _inters), _cross.cert,
    *(leaf.cert for leaf in _leaves), _self.cert,
]
STORES = [
    Store("all", (*(r.cert for r in _roots), _old.cert)),
    Store("old-only", (_old.cert,)),
    Store("empty-ish", (_inters[1].cert,)),
]

instants = st.datetimes(
    min_value=dt.datetime(1990, 1, 1), max_value=dt.datetime(2060, 1, 1),
    timezones=st.just(dt.UTC),
)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    chain=st.lists(st.sampled_from(POOL), min_size=1, max_size=6),
    when=instants,
    store_idx=st.lists(st.integers(0, len(STORES) - 1), min_size=1, max_size=3),
    legacy=st.booleans(),
    host=st.one_of(st.none(), st.sampled_from(["host0.example.com", "a.example.net",
                                              "192.0.2.1", "", "..", "xn--zz.example.net"])),
)
def test_analyze_never_raises_and_is_consistent(
    chain: list[Cert], when: dt.datetime, store_idx: list[int], legacy: bool, host: str | None
) -> None:
    profiles = [
        Profile(f"p{n}-{i}", STORES[i], Building.LEGACY if legacy and n == 0 else Building.MODERN)
        for n, i in enumerate(store_idx)
    ]
    report = analyze(chain, profiles, at=when, host=host)
    assert report.evaluated_at == when.replace(microsecond=0)  # whole seconds, like X.509
    when = report.evaluated_at
    assert report.status in set(Status)
    for result in report.profiles:
        if result.trusted:
            assert result.breaks_at is not None and result.breaks_at > when
            assert result.path and result.path[0] == chain[0].sha256
        else:
            assert result.breaks_at is None and result.error is not None
    if report.breaks_at is not None:
        assert report.breaks_at >= when
        assert report.days_left == int((report.breaks_at - when).total_seconds() // 86400)
    # Trusted at `at` means trusted one second before breaks_at and not at breaks_at.
    for result in report.profiles:
        if result.trusted and result.breaks_at is not None:
            before = analyze(chain, profiles, at=result.breaks_at - ONE_SECOND)
            after = analyze(chain, profiles, at=result.breaks_at)
            name = result.profile
            assert next(p for p in before.profiles if p.profile == name).trusted
            assert not next(p for p in after.profiles if p.profile == name).trusted


@given(
    windows=st.lists(
        st.tuples(st.integers(0, 1000), st.integers(0, 1000)).map(sorted), max_size=6
    ),
    start=st.integers(0, 1000),
)
def test_breaks_at_is_the_first_uncovered_second(windows: list[list[int]], start: int) -> None:
    base = at("2020-01-01")
    intervals = [(base + s * ONE_SECOND, base + e * ONE_SECOND) for s, e in windows]
    t0 = base + start * ONE_SECOND
    result = breaks_at(intervals, t0)
    if not trusted_at(intervals, t0):
        assert result is None
        return
    assert result is not None
    assert not trusted_at(intervals, result)
    t = t0
    while t < result:  # bounded: at most 1001 steps
        assert trusted_at(intervals, t)
        t += ONE_SECOND
