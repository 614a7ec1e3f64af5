"""The I/O around ``chainwatch advise``: what is served, and the pool of candidates.

The search itself is pure (:func:`chainwatch.analysis.advise.advise`); this module gathers
its inputs:

* the served chain, from a bundle file or by probing a live endpoint (the probe layer's
  handshake, as ``chainwatch check`` does);
* the anchors of every required profile's store (``store:SPEC``);
* with ``--aia``, the certificates behind the caIssuers URLs of every served certificate
  (and of what they give, a few hops up), fetched by :mod:`chainwatch.probe.http`, which
  goes only to public destinations unless the operator allows a network (``aia``);
* the PEM/DER files of a ``--candidates`` directory (``file:PATH``).
"""

from __future__ import annotations

import asyncio
import stat
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from chainwatch.errors import BundleError, InputError, ProbeError
from chainwatch.model import Cert, Profile, Target
from chainwatch.model.advice import PoolCert
from chainwatch.model.bundle import load_bundle_file
from chainwatch.probe.http import DEFAULT_TIMEOUT, Fetcher, FetchKind, FetchLimits, IPNetwork
from chainwatch.service.netinputs import MAX_URLS, ca_issuers_urls, parse_certificates

CANDIDATE_SUFFIXES = frozenset({".pem", ".crt", ".cer", ".der"})
"""Files of a ``--candidates`` directory that are read (others are skipped)."""

MAX_CANDIDATE_FILES = 4096
"""Most files read from a ``--candidates`` directory."""

MAX_AIA_FETCHES = 16
"""Most caIssuers URLs fetched for one advice."""

MAX_AIA_HOPS = 3
"""How far up from the served chain caIssuers URLs are followed."""


@dataclass(frozen=True)
class Pool:
    """The candidates, with one note per caIssuers URL tried (what it gave, or why not)."""

    certs: tuple[PoolCert, ...]
    notes: tuple[str, ...] = ()


def store_candidates(profiles: Sequence[Profile]) -> list[PoolCert]:
    """Every anchor of every profile's store, once."""
    out: dict[str, PoolCert] = {}
    for profile in profiles:
        for anchor in profile.store.anchors:
            out.setdefault(anchor.sha256, PoolCert(anchor, f"store:{profile.store.name}"))
    return list(out.values())


def directory_candidates(path: Path) -> list[PoolCert]:
    """The certificates of the regular ``.pem``/``.crt``/``.cer``/``.der`` files directly in
    ``path`` (sorted by name). A file that is not a certificate is an error naming it."""
    try:
        mode = path.stat().st_mode
    except OSError:
        raise InputError(f"--candidates {path}: no such directory") from None
    if not stat.S_ISDIR(mode):
        raise InputError(f"--candidates {path}: not a directory")
    try:
        entries = sorted(path.iterdir())
    except OSError as exc:
        raise InputError(f"--candidates {path}: {exc.strerror or exc}") from None
    files = [e for e in entries if e.suffix.lower() in CANDIDATE_SUFFIXES]
    if len(files) > MAX_CANDIDATE_FILES:
        raise InputError(f"--candidates {path}: {len(files)} certificate files, more than "
                         f"the {MAX_CANDIDATE_FILES} read")
    out: list[PoolCert] = []
    for entry in files:
        try:
            if not entry.is_file():
                continue
        except OSError:
            continue
        try:
            certs = load_bundle_file(entry)
        except BundleError as exc:
            raise InputError(f"--candidates: {exc}") from None
        out.extend(PoolCert(c, f"file:{entry}") for c in certs)
    return out


async def aia_candidates(chain: Sequence[Cert], *, fetcher: Fetcher) -> Pool:
    """What the caIssuers URLs of the served certificates give, then those of the
    certificates fetched, up to :data:`MAX_AIA_HOPS` levels and :data:`MAX_AIA_FETCHES`
    URLs. Never raises: a URL that gives nothing is a note."""
    seen_urls: set[str] = set()
    known = {c.sha256 for c in chain}
    found: list[PoolCert] = []
    notes: list[str] = []
    level = [c for c in chain if not c.self_signed]
    for _ in range(MAX_AIA_HOPS):
        following: list[Cert] = []
        for cert in level:
            for url in ca_issuers_urls(cert)[:MAX_URLS]:
                if url in seen_urls:
                    continue
                if len(seen_urls) >= MAX_AIA_FETCHES:
                    notes.append(f"more than {MAX_AIA_FETCHES} caIssuers URLs: {url} and "
                                 "later ones not fetched")
                    return Pool(tuple(found), tuple(notes))
                seen_urls.add(url)
                got = await fetcher.get(url, FetchKind.CERT)
                if not got.ok or got.body is None:
                    notes.append(got.message)
                    continue
                certs = parse_certificates(got.body)
                if isinstance(certs, str):
                    notes.append(f"{url}: {certs}")
                    continue
                new = [c for c in certs if c.sha256 not in known]
                known.update(c.sha256 for c in new)
                found.extend(PoolCert(c, "aia") for c in new)
                following.extend(c for c in new if not c.self_signed)
                names = ", ".join(c.subject for c in certs)
                notes.append(f"{url}: fetched {names}")
        if not following:
            break
        level = following
    return Pool(tuple(found), tuple(notes))


def fetch_aia_candidates(
    chain: Sequence[Cert],
    *,
    timeout: float = DEFAULT_TIMEOUT,
    allow_private: Sequence[IPNetwork] = (),
) -> Pool:
    """:func:`aia_candidates` with a fetcher of its own (synchronous, for the CLI)."""

    async def run() -> Pool:
        limits = FetchLimits(timeout=timeout, allow_private=tuple(allow_private))
        async with Fetcher(limits) as fetcher:
            return await aia_candidates(chain, fetcher=fetcher)

    return asyncio.run(run())


def gather_pool(
    served: Sequence[Cert],
    profiles: Sequence[Profile],
    *,
    candidates: Path | None = None,
    aia: bool = False,
    timeout: float = DEFAULT_TIMEOUT,
    allow_private: Sequence[IPNetwork] = (),
) -> Pool:
    """Every candidate: store anchors, then fetched ones (``aia``), then files."""
    certs = store_candidates(profiles)
    notes: tuple[str, ...] = ()
    if aia:
        fetched = fetch_aia_candidates(served, timeout=timeout, allow_private=allow_private)
        certs.extend(fetched.certs)
        notes = fetched.notes
    if candidates is not None:
        certs.extend(directory_candidates(candidates))
    return Pool(tuple(certs), notes)


def served_chain(
    target: Target, *, timeout: float = DEFAULT_TIMEOUT
) -> tuple[Target, tuple[Cert, ...]]:
    """Probe ``target`` and return the address probed and the chain it served (the
    first address that answered, when the name has several). Raises ``ProbeError``
    naming the endpoint when none could be probed or the chain cannot be read."""
    from chainwatch.probe.handshake import Limits
    from chainwatch.probe.parallel import probe_all
    from chainwatch.service.observe import parse_chain

    observations = probe_all([target], limits=Limits(timeout=timeout))
    failure = "no address to probe"
    for observation in observations:
        if not observation.ok:
            failure = observation.message or f"{observation.failure}"
            continue
        chain = parse_chain(observation)
        if isinstance(chain, str):
            failure = chain
            continue
        return observation.target, chain
    raise ProbeError("probe_failed", failure)


__all__ = [
    "CANDIDATE_SUFFIXES",
    "MAX_AIA_FETCHES",
    "MAX_AIA_HOPS",
    "MAX_CANDIDATE_FILES",
    "Pool",
    "aia_candidates",
    "directory_candidates",
    "fetch_aia_candidates",
    "gather_pool",
    "served_chain",
    "store_candidates",
]
