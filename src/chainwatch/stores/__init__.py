"""Trust-store sources and the profile-spec grammar (DESIGN.md, Client profiles).

============================  ==============================================  ==========
spec                          anchors                                         building
============================  ==============================================  ==========
``mozilla``                   the installed ``certifi`` bundle                modern
``mozilla@YYYY-MM-DD``        Mozilla's store as it stood that day            modern
``android@VERSION``           Android's system store in that release          modern
``system``                    the OS store of this machine                    modern
``file:PATH``                 the certificates in a PEM/DER/PKCS#12 file      modern
``jks:PATH``                  a Java keystore's trusted entries (pyjks)       modern
``pkcs12:PATH``               a PKCS#12 truststore's certificates             modern
``dir:PATH``                  an OpenSSL CApath-style directory               modern
``BEHAVIOUR:STORE``           STORE as above                                  BEHAVIOUR
``PRESET``                    a named population (see :mod:`.presets`)        (preset)
============================  ==============================================  ==========

BEHAVIOUR is a name from :data:`chainwatch.model.behaviours.BEHAVIOURS` (``modern``,
``legacy``, ``android``, ``java``): ``legacy:mozilla@2016-06-01``, ``android:mozilla``.

Stores are loaded once and memoised (``file:`` stores are re-read when the file
changes), so resolving the same spec for many endpoints is free.
"""

from __future__ import annotations

import datetime as dt
import os
import re
import ssl
from functools import lru_cache
from pathlib import Path

from chainwatch.errors import BundleError, ProfileError, StoreError
from chainwatch.model import MODERN, Behaviour, Cert, Profile, Store
from chainwatch.model.behaviours import BEHAVIOURS
from chainwatch.model.bundle import load_bundle_file, parse_bundle, read_source

_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")
_BARE_STORES = ("mozilla", "system")
"""The store specs without a ``:``; no preset is named like one, nor has a ``:``."""


def resolve_profile(
    spec: str, *, base_dir: Path | None = None, password: str | None = None
) -> Profile:
    """Turn a profile spec into a :class:`Profile`. Raises ``ProfileError``/``StoreError``.
    ``password`` opens a ``jks:``/``pkcs12:`` store (see :func:`resolve_store`)."""
    text = spec.strip()
    if not text:
        raise ProfileError("empty profile spec")
    if ":" not in text and text not in _BARE_STORES:  # a preset name is neither
        from chainwatch.stores.presets import PRESETS

        if text in PRESETS:
            target = resolve_profile(PRESETS[text].spec, base_dir=base_dir, password=password)
            return Profile(spec=text, store=target.store, building=target.building,
                           aia=target.aia)
    building, store_spec = split_spec(text)
    return Profile(
        spec=text,
        store=resolve_store(store_spec, base_dir=base_dir, password=password),
        building=building,
        aia=building.aia_fetching,
    )


def split_spec(spec: str) -> tuple[Behaviour, str]:
    """``BEHAVIOUR:STORE`` into the behaviour (``modern`` when there is no known
    ``NAME:`` prefix) and the store spec. Raises ``ProfileError`` for two behaviours."""
    head, sep, rest = spec.partition(":")
    if not sep or head not in BEHAVIOURS:
        return MODERN, spec
    again, sep, _ = rest.partition(":")
    if sep and again in BEHAVIOURS:
        what = f"{head!r} given twice" if again == head else f"{head!r} and {again!r} given"
        raise ProfileError(f"profile {spec!r}: one behaviour per profile, {what}")
    if not rest:
        raise ProfileError(f"profile {spec!r}: {head}: needs a store, e.g. {head}:mozilla")
    return BEHAVIOURS[head], rest


def resolve_store(
    spec: str, *, base_dir: Path | None = None, password: str | None = None
) -> Store:
    """The store a store spec names. ``password`` opens ``jks:``/``pkcs12:`` stores (the
    defaults are in :mod:`chainwatch.stores.keystores`); other stores ignore it."""
    if spec == "mozilla":
        return mozilla_store()
    if spec.startswith("mozilla@"):
        day = spec[len("mozilla@") :]
        if not _DATE.match(day):
            raise ProfileError(f"profile store {spec!r}: expected mozilla@YYYY-MM-DD")
        try:
            date = dt.date.fromisoformat(day)
        except ValueError:
            raise ProfileError(f"profile store {spec!r}: {day} is not a calendar date") from None
        return historic_mozilla_store(date)
    if spec.startswith("android@"):
        return android_store(spec[len("android@") :])
    if spec == "system":
        return system_store()
    for prefix in _PATH_STORES:
        if spec.startswith(prefix + ":"):
            raw = spec[len(prefix) + 1 :]
            path = _store_path(spec, prefix, raw, base_dir)
            if prefix == "file":
                return file_store(path, display=raw)
            from chainwatch.stores import keystores

            if prefix == "dir":
                return keystores.dir_store(path, display=raw)
            if prefix == "jks":
                return keystores.jks_store(path, display=raw, password=password)
            return keystores.pkcs12_store(path, display=raw, password=password)
    raise ProfileError(
        f"unknown profile {spec!r}: expected mozilla, mozilla@YYYY-MM-DD, android@VERSION, "
        f"system, file:PATH, jks:PATH, pkcs12:PATH, dir:PATH, BEHAVIOUR:STORE "
        f"({', '.join(BEHAVIOURS)}) or a preset (chainwatch stores)"
    )


_PATH_STORES = {
    "file": "file:ca/backend.pem",
    "jks": "jks:/etc/ssl/certs/java/cacerts",
    "pkcs12": "pkcs12:truststore.p12",
    "dir": "dir:/etc/ssl/certs",
}
"""Store prefixes that take a path, with an example for the error that a bare one gets."""


def _store_path(spec: str, prefix: str, raw: str, base_dir: Path | None) -> Path:
    if not raw:
        raise ProfileError(
            f"profile store '{prefix}:' needs a path, e.g. {_PATH_STORES[prefix]}"
        )
    try:
        path = Path(raw).expanduser()
    except RuntimeError:  # ~name of a user this machine does not have
        user = raw.split("/", 1)[0]
        raise StoreError(f"profile store {spec!r}: {raw}: {user} names no user here") from None
    if not path.is_absolute() and base_dir is not None:
        path = base_dir / path
    return path


@lru_cache(maxsize=1)
def mozilla_store() -> Store:
    import certifi

    path = certifi.where()
    version = getattr(certifi, "__version__", "unknown")
    certs = load_bundle_file(path)
    return Store(name="mozilla", anchors=certs, source=f"certifi {version}")


@lru_cache(maxsize=64)
def historic_mozilla_store(day: dt.date) -> Store:
    from chainwatch.stores import history

    snap = history.snapshot_for(day)
    anchors = tuple(Cert.from_der(der) for der in history.anchors_der(snap))
    return Store(
        name=f"mozilla@{day.isoformat()}",
        anchors=anchors,
        source=f"certifi {snap.version} ({snap.date.isoformat()})",
    )


def android_store(version: str) -> Store:
    """Android's system store as release ``version`` shipped it (``7.0``, ``7.1.1``, ``9``)."""
    from chainwatch.stores import android

    return _android_store(android.release_for(version).name)


@lru_cache(maxsize=64)
def _android_store(name: str) -> Store:
    from chainwatch.stores import android

    release = android.release_for(name)
    anchors = tuple(Cert.from_der(der) for der in android.anchors_der(release))
    return Store(name=f"android@{release.name}", anchors=anchors, source=release.source)


@lru_cache(maxsize=1)
def system_store() -> Store:
    paths = ssl.get_default_verify_paths()
    candidates = [
        os.environ.get(paths.openssl_cafile_env) or "",
        paths.cafile or "",
        paths.openssl_cafile or "",
    ]
    for candidate in candidates:
        if candidate and Path(candidate).is_file():
            return Store(name="system", anchors=_load_anchors(Path(candidate)), source=candidate)
    capath = os.environ.get(paths.openssl_capath_env) or paths.capath or paths.openssl_capath
    if capath and Path(capath).is_dir():
        anchors: list[Cert] = []
        for entry in sorted(Path(capath).iterdir()):
            if entry.is_file() and entry.suffix in {".pem", ".crt", ".0", ".1"}:
                try:
                    anchors.extend(load_bundle_file(entry))
                except BundleError:
                    continue
        if anchors:
            return Store(name="system", anchors=tuple(dict.fromkeys(anchors)), source=capath)
    raise StoreError("profile store 'system': this machine has no OpenSSL CA file or directory")


def file_store(path: Path, *, display: str | None = None) -> Store:
    """The certificates of the bundle at ``path``. Only a regular file of at most
    :data:`~chainwatch.model.bundle.MAX_BUNDLE_BYTES` is read: a FIFO, a device, a directory
    or a larger file is a ``StoreError`` naming the path and why."""
    try:
        stat = path.stat()
    except OSError:
        raise StoreError(f"profile store 'file:{display or path}': {path}: no such file") from None
    return _file_store(str(path.resolve()), stat.st_mtime_ns, stat.st_size, display or str(path),
                       str(path))


@lru_cache(maxsize=256)
def _file_store(path: str, mtime_ns: int, size: int, display: str, shown: str) -> Store:
    del mtime_ns, size  # part of the cache key only: a changed file is re-read
    try:
        data = read_source(path)
    except BundleError as exc:
        raise StoreError(f"profile store 'file:{display}': {shown}: {exc.reason}") from None
    anchors = tuple(dict.fromkeys(parse_bundle(data, path)))
    return Store(name=f"file:{display}", anchors=anchors, source=path)


def _load_anchors(path: Path) -> tuple[Cert, ...]:
    return tuple(dict.fromkeys(load_bundle_file(path)))
