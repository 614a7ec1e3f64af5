"""What ``chainwatch advise`` answers: the chain to serve instead, as frozen values.

The search that fills these in is :func:`chainwatch.analysis.advise.advise` (pure); the
JSON and text forms are :mod:`chainwatch.render.advice`'s.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from enum import StrEnum

from chainwatch.model.times import iso_or_none
from chainwatch.model.values import Cert, ProfileResult, Report


@dataclass(frozen=True)
class PoolCert:
    """A certificate the advice may put in the chain, and where it came from.

    ``source``: ``served`` (the chain as served now), ``store:SPEC`` (an anchor of a
    required profile's store), ``aia`` (fetched from a caIssuers URL of the served
    chain) or ``file:PATH`` (a file of ``--candidates``).
    """

    cert: Cert
    source: str


class Change(StrEnum):
    """What the advice does with one certificate, compared with what is served now."""

    KEPT = "kept"
    """Served now, and in the advised chain in the same relative order."""
    MOVED = "moved"
    """Served now, and in the advised chain at another place among the kept ones."""
    ADDED = "added"
    """Not served now; the advice adds it."""
    REMOVED = "removed"
    """Served now; the advice drops it."""


@dataclass(frozen=True)
class ChainChange:
    """One line of the diff between the served and the advised chain.

    ``served_index`` / ``advised_index``: its position in each chain (``None`` where it
    is absent); ``source``: where the certificate came from (see :class:`PoolCert`).
    """

    cert: Cert
    change: Change
    served_index: int | None
    advised_index: int | None
    source: str


@dataclass(frozen=True)
class ProfileAdvice:
    """One required population before and after the advice.

    Attributes:
        profile: the profile spec.
        before: its verdict on the served chain.
        after: its verdict on the advised chain.
        best: its best verdict on any chain the search evaluated (judged alone, as if
            it were the only population): untrusted means no chain the candidates make
            satisfies it, and ``best.reason`` says why, told from the chain that came
            closest (a path that reached an anchor and failed, else the chain that went
            furthest up).
        best_chain: the chain that gave ``best`` (fingerprints, leaf first).
    """

    profile: str
    before: ProfileResult
    after: ProfileResult
    best: ProfileResult
    best_chain: tuple[str, ...]

    @property
    def satisfiable(self) -> bool:
        """Some chain of the candidates makes this population trust the leaf now."""
        return self.best.trusted

    @property
    def conflict(self) -> bool:
        """Another chain satisfies this population, but not together with the others:
        the advice chose one that leaves it untrusted (or breaking sooner) for the sake
        of the rest."""
        if not self.best.trusted:
            return False
        if not self.after.trusted:
            return True
        best, after = self.best.breaks_at, self.after.breaks_at
        return best is not None and after is not None and best > after

    @property
    def why(self) -> str | None:
        """For a population the advice cannot satisfy: why, in one line."""
        if self.after.trusted:
            return None
        if not self.best.trusted:
            reason = self.best.reason or self.after.reason or "no path"
            return f"no chain of the candidates satisfies it: {reason}"
        when = iso_or_none(self.best.breaks_at) or "?"
        return (
            f"another chain would satisfy it (until {when}), but not together with the "
            f"other required profiles; on the advised chain: {self.after.reason}"
        )


@dataclass(frozen=True)
class Search:
    """How much the search looked at.

    ``pool``: distinct certificates offered (served, store anchors, fetched, files);
    ``candidates``: those that can issue a certificate on some path from the leaf (name
    and key-identifier match, signature verified); ``chains``: candidate chains
    evaluated; ``limit``: the cap on that; ``exhausted``: the cap was reached, so a
    better chain may exist among those not evaluated.
    """

    pool: int
    candidates: int
    chains: int
    limit: int
    max_depth: int
    exhausted: bool


@dataclass(frozen=True)
class Advice:
    """The chain to serve, against the chain served now.

    Attributes:
        at: the instant of evaluation.
        served / advised: the two chains, leaf first (the leaf is the same).
        served_report / advised_report: what ``check-bundle`` says of each.
        changes: the diff, advised certificates in advised order, then those removed.
        profiles: each required population before and after.
        search: how much was looked at.
    """

    at: dt.datetime
    served: tuple[Cert, ...]
    advised: tuple[Cert, ...]
    served_report: Report
    advised_report: Report
    changes: tuple[ChainChange, ...]
    profiles: tuple[ProfileAdvice, ...]
    search: Search

    @property
    def changed(self) -> bool:
        return self.served != self.advised

    @property
    def order_changed(self) -> bool:
        return any(c.change is Change.MOVED for c in self.changes)

    @property
    def unsatisfied(self) -> tuple[ProfileAdvice, ...]:
        """Required populations the advised chain leaves untrusted now."""
        return tuple(p for p in self.profiles if not p.after.trusted)

    @property
    def served_bytes(self) -> int:
        return chain_bytes(self.served)

    @property
    def advised_bytes(self) -> int:
        return chain_bytes(self.advised)


def chain_bytes(chain: tuple[Cert, ...]) -> int:
    """DER bytes of a chain: what it adds to every handshake."""
    return sum(len(c.der) for c in chain)


__all__ = [
    "Advice",
    "ChainChange",
    "Change",
    "PoolCert",
    "ProfileAdvice",
    "Search",
    "chain_bytes",
]
