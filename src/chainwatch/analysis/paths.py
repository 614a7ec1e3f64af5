"""Path building: from the presented leaf to the anchors of a store.

Two builders, modelling the two ways client populations search (DESIGN.md, Client
profiles), chosen by :attr:`~chainwatch.model.Behaviour.backtracking`:

* :func:`modern_paths` enumerates *every* candidate path, trusted-first with
  backtracking, using presented certificates and anchors in any order (OpenSSL
  >= 1.1.0, Go, browsers without AIA, Android, Java). Bounded in work, so a hostile
  bundle (cycles, many cross-signs) cannot make it explode.
* :func:`legacy_path` is OpenSSL 1.0.x: follow the *presented* certificates first,
  consult the anchors only when they run out or reach a self-issued certificate,
  take the first path built and never backtrack.

Neither stops at a client's depth limit: a path is found however long it is (it cannot
hold a certificate twice, so it is at most one longer than the pool), and the rules
refuse it as "path longer than N" for the behaviours whose limit it exceeds
(:mod:`chainwatch.analysis.policy`), which says why instead of "no issuer".

A candidate issuer must match the child's issuer name (and key identifier when both
sides carry one). Signatures are checked per edge by the caller's ``verify`` (the
:class:`~chainwatch.analysis.Analyzer` memoises them: the same (child, issuer key)
pair recurs across profiles and endpoints).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from chainwatch.model import Cert, Store

MAX_PATHS = 64
"""Most paths enumerated for one (chain, store); more means a pathological bundle."""

MAX_STEPS = 4096
"""Most issuer candidates examined for one (chain, store)."""

Verify = Callable[[Cert, Cert], bool]
"""``verify(child, issuer)``: the child's signature verifies under the issuer's key."""


def could_issue(issuer: Cert, child: Cert) -> bool:
    """Name (and key-identifier) match: ``issuer`` is a candidate issuer of ``child``."""
    if issuer.subject_key != child.issuer_key:
        return False
    return not (child.aki is not None and issuer.ski is not None and child.aki != issuer.ski)


@dataclass(frozen=True)
class Candidate:
    """One path leaf → anchor. ``certs[-1]`` is always an anchor of the store.

    ``trusted_from``: the index of the first certificate taken from the store (the
    anchor the path reached); the certificates from it on are the trusted part. The
    modern builder stops at the first anchor (``len(certs) - 1``); the legacy one may
    continue through the store to a self-signed root, as OpenSSL 1.0.x does. ``None``
    means ``len(certs) - 1``.
    """

    certs: tuple[Cert, ...]
    trusted_from: int | None = field(default=None, compare=False)

    @property
    def anchor_index(self) -> int:
        return len(self.certs) - 1 if self.trusted_from is None else self.trusted_from

    @property
    def fingerprints(self) -> tuple[str, ...]:
        return tuple(c.sha256 for c in self.certs)

    def bad_signature(self, verify: Verify) -> Cert | None:
        """The first certificate whose signature does not verify under the next one."""
        for child, issuer in zip(self.certs, self.certs[1:], strict=False):
            if not verify(child, issuer):
                return child
        return None


@dataclass(frozen=True)
class BuildResult:
    """What a builder found.

    ``paths``: candidate paths in preference order. ``dead_end``: when no path reaches
    an anchor, the last certificate the presented chain leads to (its issuer is missing).
    ``exhausted``: the work bounds were hit (the bundle is pathological).
    """

    paths: tuple[Candidate, ...]
    dead_end: Cert | None
    exhausted: bool = False


def _presented_issuers(cert: Cert, presented: Sequence[Cert], store: Store) -> list[Cert]:
    return [
        p
        for p in presented
        if p is not cert and p.sha256 != cert.sha256 and could_issue(p, cert)
        and not store.contains(p)
    ]


def _anchor_issuers(cert: Cert, store: Store) -> list[Cert]:
    return [a for a in store.by_subject.get(cert.issuer_key, ()) if could_issue(a, cert)]


def modern_paths(chain: Sequence[Cert], store: Store) -> BuildResult:
    """Every path from ``chain[0]`` to an anchor of ``store``, anchors tried first."""
    leaf = chain[0]
    if store.contains(leaf):
        return BuildResult((Candidate((leaf,)),), None)
    presented = list(chain[1:])
    found: list[Candidate] = []
    steps = 0
    exhausted = False
    # A path never holds a CA (subject and key) twice, so it is at most this long.
    longest = len(chain) + 1

    def walk(path: list[Cert], identities: set[tuple[object, bytes]]) -> None:
        nonlocal steps, exhausted
        cert = path[-1]
        if len(path) >= longest:
            return
        for issuer in _anchor_issuers(cert, store) + _presented_issuers(cert, presented, store):
            steps += 1
            if steps > MAX_STEPS or len(found) >= MAX_PATHS:
                exhausted = True
                return
            ident = (issuer.subject_key, issuer.spki)
            if ident in identities and not store.contains(issuer):
                continue  # a loop through the same CA (subject and key)
            if store.contains(issuer):
                found.append(Candidate((*path, issuer)))
                continue
            if issuer.self_issued and issuer.spki == cert.spki:
                continue
            path.append(issuer)
            identities.add(ident)
            walk(path, identities)
            identities.discard(ident)
            path.pop()

    walk([leaf], {(leaf.subject_key, leaf.spki)})
    dead_end = None if found else _greedy_end(chain)
    # Shorter paths first, then those whose signatures hold (stable otherwise).
    found.sort(key=lambda c: len(c.certs))
    return BuildResult(tuple(found), dead_end, exhausted)


def _greedy_end(chain: Sequence[Cert]) -> Cert:
    """Follow presented issuers from the leaf as far as they go; return the last one."""
    cert = chain[0]
    seen = {cert.sha256}
    for _ in range(len(chain)):
        nxt = next(
            (p for p in chain[1:] if p.sha256 not in seen and could_issue(p, cert)), None
        )
        if nxt is None or cert.self_issued:
            break
        seen.add(nxt.sha256)
        cert = nxt
    return cert


def legacy_path(chain: Sequence[Cert], store: Store) -> BuildResult:
    """OpenSSL 1.0.x ``X509_verify_cert`` chain building (untrusted-first, no backtracking).

    1. From the leaf, repeatedly take the first *presented* certificate that could have
       issued the current one, until none does or a self-issued certificate is reached.
    2. A self-signed certificate at the top of the presented part is set aside.
    3. Continue from the top through the store: the first anchor that could have issued
       the current certificate, until a self-signed one.
    4. If that reaches no anchor, OpenSSL 1.0.2's "alternative chains" retry: drop
       presented certificates from the top until the store can issue the one below.
    5. The result is trusted only if it ends in an anchor; validity and signatures are
       judged afterwards on this one path, which is never rebuilt (an expired anchor
       on it is fatal even when another path would have been valid).
    """
    leaf = chain[0]
    if leaf.self_issued:
        if store.contains(leaf):
            return BuildResult((Candidate((leaf,)),), None)
        return BuildResult((), leaf)
    path: list[Cert] = [leaf]
    used = {leaf.sha256}
    for _ in range(len(chain)):
        cert = path[-1]
        if cert.self_issued:
            break
        nxt = next(
            (p for p in chain[1:] if p.sha256 not in used and could_issue(p, cert)), None
        )
        if nxt is None:
            break
        path.append(nxt)
        used.add(nxt.sha256)
    untrusted = list(path)
    set_aside: Cert | None = None
    if len(path) > 1 and path[-1].self_signed:
        set_aside = path.pop()
    top = len(path)
    path = _extend_from_store(path, store)
    if store.contains(path[-1]) and len(path) > 1:
        return BuildResult((_trusted(path, top),), None)
    # OpenSSL 1.0.2b+ "alternative chains": when no anchor was reached (never when one was
    # reached but expired), drop presented certificates from the top until the store
    # has an issuer for the one below, and build from there.
    for j in range(len(untrusted) - 1, 0, -1):
        if _anchor_issuers(untrusted[j - 1], store):
            alt = _extend_from_store(untrusted[:j], store)
            if store.contains(alt[-1]):
                return BuildResult((_trusted(alt, j),), None)
    if set_aside is not None:
        path.append(set_aside)
    return BuildResult((), path[-1])


def _trusted(path: Sequence[Cert], untrusted: int) -> Candidate:
    """The candidate whose first ``untrusted`` certificates came from the chain."""
    return Candidate(tuple(path), trusted_from=min(untrusted, len(path) - 1))


def _extend_from_store(path: list[Cert], store: Store) -> list[Cert]:
    """Continue ``path`` through the store's anchors until a self-signed one (1.0.x style:
    the first anchor whose name matches, whatever its validity)."""
    path = list(path)
    for _ in range(len(store.anchors)):
        cert = path[-1]
        if cert.self_signed:
            break
        anchor = next(iter(_anchor_issuers(cert, store)), None)
        if anchor is None or anchor in path:
            break
        path.append(anchor)
    return path
