"""A profile's verdict on a chain at an instant, and its forecast.

The time-independent part (which paths exist, which are acceptable) is computed once
per (chain, store, building) and memoised, and each candidate path is judged once per
building whichever store led to it; evaluating it at ``at`` is then cheap, which is what
lets thousands of endpoints serving one chain cost one analysis.
"""

from __future__ import annotations

import datetime as dt
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass

from chainwatch.analysis.forecast import Interval, breaks_at, interval
from chainwatch.analysis.paths import BuildResult, Candidate, legacy_path, modern_paths
from chainwatch.analysis.policy import PolicyOptions, path_violation
from chainwatch.model import Building, Cert, PathError, Profile, ProfileResult, Store


@dataclass(frozen=True)
class PathInfo:
    """A candidate path with its time-independent judgement."""

    candidate: Candidate
    bad_signature: Cert | None
    violation: str | None
    window: Interval

    @property
    def acceptable(self) -> bool:
        return self.bad_signature is None and self.violation is None


@dataclass(frozen=True)
class Structure:
    """Every candidate path of one (chain, store, building), judged without time."""

    paths: tuple[PathInfo, ...]
    dead_end: Cert | None
    exhausted: bool

    @property
    def windows(self) -> tuple[Interval, ...]:
        return tuple(p.window for p in self.paths if p.acceptable)


_STRUCT_CACHE_SIZE = 20000
_StructKey = tuple[tuple[str, ...], str, Building, tuple[str, ...]]
_struct_cache: OrderedDict[_StructKey, Structure] = OrderedDict()


def structure(
    chain: Sequence[Cert], store: Store, building: Building, fetched: Sequence[Cert] = ()
) -> Structure:
    """Every candidate path from ``chain[0]`` to ``store``'s anchors, judged without time.

    ``fetched``: certificates an AIA-fetching client would download (the caIssuers of a
    chain whose intermediate is not served); path building may use them as if served.
    Pass them only for profiles with ``aia`` set: the memo key holds their fingerprints,
    so a profile that fetches nothing shares its entry with one that cannot fetch.
    """
    extra = tuple(c for c in dict.fromkeys(fetched) if c not in chain) if fetched else ()
    key = (tuple(c.sha256 for c in chain), store.digest, building, tuple(c.sha256 for c in extra))
    hit = _struct_cache.get(key)
    if hit is not None:
        _struct_cache.move_to_end(key)
        return hit
    pool = (*chain, *extra)
    built: BuildResult = (
        legacy_path(pool, store) if building is Building.LEGACY else modern_paths(pool, store)
    )
    result = Structure(
        paths=tuple(judge(c, building) for c in built.paths),
        dead_end=built.dead_end,
        exhausted=built.exhausted,
    )
    _struct_cache[key] = result
    if len(_struct_cache) > _STRUCT_CACHE_SIZE:
        _struct_cache.popitem(last=False)
    return result


_JUDGED_CACHE_SIZE = 1024
"""Every path starts at the leaf, so a judgement is shared by the profiles of one chain
(and by that chain's next analysis, which the structure cache serves anyway): a short
memory suffices, and keeps the parsed leaves alive no longer than the other caches do."""
_judged: OrderedDict[tuple[tuple[str, ...], Building], PathInfo] = OrderedDict()


def judge(candidate: Candidate, building: Building) -> PathInfo:
    """The time-independent judgement of one candidate path by clients of ``building``.

    It depends on the path's certificates only, not on the store that made it a
    candidate, so it is memoised: the same path found through several stores (two
    profiles whose stores share a root) is judged once.
    """
    key = (candidate.fingerprints, building)
    hit = _judged.get(key)
    if hit is not None:
        _judged.move_to_end(key)
        return hit
    info = PathInfo(
        candidate=candidate,
        bad_signature=candidate.bad_signature(),
        violation=path_violation(
            candidate.certs, PolicyOptions(reject_weak=building is Building.MODERN)
        ),
        window=interval(candidate.certs),
    )
    _judged[key] = info
    if len(_judged) > _JUDGED_CACHE_SIZE:
        _judged.popitem(last=False)
    return info


def _time_failure(path: PathInfo, at: dt.datetime) -> tuple[PathError, str] | None:
    for cert in path.candidate.certs:
        if at > cert.not_after:
            when = cert.not_after.strftime("%Y-%m-%dT%H:%M:%SZ")
            return PathError.EXPIRED, f"{cert.subject} expired at {when}"
    for cert in path.candidate.certs:
        if at < cert.not_before:
            when = cert.not_before.strftime("%Y-%m-%dT%H:%M:%SZ")
            return PathError.NOT_YET_VALID, f"{cert.subject} is not valid before {when}"
    return None


def evaluate(chain: Sequence[Cert], profile: Profile, at: dt.datetime) -> ProfileResult:
    """The verdict of ``profile`` on ``chain`` at ``at`` (pure; memoises the path search)."""
    return verdict(structure(chain, profile.store, profile.building), profile, at)


def verdict(st: Structure, profile: Profile, at: dt.datetime) -> ProfileResult:
    """The verdict of ``profile`` at ``at``, given its :func:`structure` for the chain."""
    all_paths = tuple(p.candidate.fingerprints for p in st.paths)
    valid_now = [
        p for p in st.paths if p.acceptable and p.window[0] <= at <= p.window[1]
    ]
    if valid_now:
        best = max(valid_now, key=lambda p: (p.window[1], -len(p.candidate.certs)))
        return ProfileResult(
            profile=profile.spec,
            trusted=True,
            error=None,
            reason=None,
            path=best.candidate.fingerprints,
            breaks_at=breaks_at(st.windows, at),
            all_paths=all_paths,
        )
    if not st.paths:
        end = st.dead_end
        if st.exhausted:
            reason = "path building gave up: the bundle has too many candidate paths"
        elif end is None:
            reason = f"no path to an anchor of {profile.store.name}"
        elif end.self_issued:
            reason = f"{end.subject} is not an anchor of {profile.store.name}"
        else:
            reason = f"issuer {end.issuer} of {end.subject} is neither presented nor an anchor"
        return ProfileResult(
            profile=profile.spec,
            trusted=False,
            error=PathError.NO_PATH,
            reason=reason,
            path=(),
            breaks_at=None,
            all_paths=(),
            dead_end=None if end is None else end.sha256,
        )
    error, reason, path = _explain(st.paths, at)
    return ProfileResult(
        profile=profile.spec,
        trusted=False,
        error=error,
        reason=reason,
        path=path.candidate.fingerprints,
        breaks_at=None,
        all_paths=all_paths,
    )


def _explain(paths: Sequence[PathInfo], at: dt.datetime) -> tuple[PathError, str, PathInfo]:
    """Why no path is valid now, told from the most promising path."""
    acceptable = [p for p in paths if p.acceptable]
    if acceptable:
        # Prefer a path that is only expired (the common outage) over not-yet-valid.
        judged = [(p, _time_failure(p, at)) for p in acceptable]
        judged.sort(key=lambda pj: (pj[1] is None or pj[1][0] is not PathError.EXPIRED,))
        path, failure = judged[0]
        if failure is not None:
            return failure[0], failure[1], path
    first = paths[0]
    if first.bad_signature is not None:
        return (
            PathError.BAD_SIGNATURE,
            f"the signature on {first.bad_signature.subject} does not verify",
            first,
        )
    return PathError.OTHER, first.violation or "path rejected", first
