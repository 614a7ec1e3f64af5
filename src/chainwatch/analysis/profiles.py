"""A profile's verdict on a chain at an instant, and its forecast.

The time-independent part (which paths exist, which are acceptable) is computed once
per (chain, store, behaviour) and memoised by the :class:`~chainwatch.analysis.Analyzer`,
and each candidate path is judged once per behaviour whichever store led to it;
evaluating it at ``at`` is then cheap, which is what lets thousands of endpoints serving
one chain cost one analysis.

The functions here are pure and take what they memoise through as arguments; the
module-level :func:`structure` and :func:`evaluate` are conveniences over the default
analyzer.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from chainwatch.analysis.forecast import Interval, breaks_at, interval
from chainwatch.analysis.paths import BuildResult, Candidate, Verify, legacy_path, modern_paths
from chainwatch.analysis.policy import CertFacts, Violation, path_violation
from chainwatch.model import Behaviour, Cert, PathError, Profile, ProfileResult, Store
from chainwatch.model.times import iso


@dataclass(frozen=True)
class PathInfo:
    """A candidate path with its time-independent judgement.

    ``dated``: the certificates whose validity periods count (all of them, or all but the
    trusted part for behaviours that ignore an anchor's dates; the leaf always counts).
    """

    candidate: Candidate
    bad_signature: Cert | None
    violation: Violation | None
    window: Interval
    dated: tuple[Cert, ...]

    @property
    def acceptable(self) -> bool:
        return self.bad_signature is None and self.violation is None


@dataclass(frozen=True)
class Structure:
    """Every candidate path of one (chain, store, behaviour), judged without time."""

    paths: tuple[PathInfo, ...]
    dead_end: Cert | None
    exhausted: bool

    @property
    def windows(self) -> tuple[Interval, ...]:
        return tuple(p.window for p in self.paths if p.acceptable)


def build(pool: Sequence[Cert], store: Store, behaviour: Behaviour) -> BuildResult:
    """The candidate paths clients of ``behaviour`` consider (``pool[0]`` is the leaf)."""
    return modern_paths(pool, store) if behaviour.backtracking else legacy_path(pool, store)


def judge(
    candidate: Candidate,
    behaviour: Behaviour,
    *,
    verify: Verify,
    facts: Callable[[Cert], CertFacts],
) -> PathInfo:
    """The time-independent judgement of one candidate path by clients of ``behaviour``.

    It depends on the path's certificates only, not on the store that made it a
    candidate, so the analyzer memoises it: the same path found through several stores
    (two profiles whose stores share a root) is judged once.
    """
    certs = candidate.certs
    anchor = candidate.anchor_index
    dated = certs if behaviour.anchor_expiry_checked else certs[: max(anchor, 1)]
    return PathInfo(
        candidate=candidate,
        bad_signature=candidate.bad_signature(verify),
        violation=path_violation(certs, behaviour, anchor_index=anchor, facts=facts),
        window=interval(dated),
        dated=dated,
    )


def _time_failure(path: PathInfo, at: dt.datetime) -> tuple[PathError, str] | None:
    for cert in path.dated:
        if at > cert.not_after:
            when = iso(cert.not_after)
            return PathError.EXPIRED, f"{cert.subject} expired at {when}"
    for cert in path.dated:
        if at < cert.not_before:
            when = iso(cert.not_before)
            return PathError.NOT_YET_VALID, f"{cert.subject} is not valid before {when}"
    return None


def structure(
    chain: Sequence[Cert], store: Store, building: Behaviour, fetched: Sequence[Cert] = ()
) -> Structure:
    """:meth:`Analyzer.structure <chainwatch.analysis.Analyzer.structure>` of the default
    analyzer."""
    from chainwatch.analysis.engine import default_analyzer

    return default_analyzer().structure(chain, store, building, fetched)


def evaluate(chain: Sequence[Cert], profile: Profile, at: dt.datetime) -> ProfileResult:
    """The verdict of ``profile`` on ``chain`` at ``at`` (the default analyzer's)."""
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
    if first.violation is not None:
        return first.violation.error, first.violation.reason, first
    return PathError.OTHER, "path rejected", first
