"""Trust stores kept the way back-ends keep them: Java keystores and certificate directories.

- ``jks:PATH``: a Java KeyStore (JKS, or JCEKS) such as a JDK's ``cacerts`` (JDK 8-17) or an
  application's truststore, read with ``pyjks``.
- ``pkcs12:PATH``: a PKCS#12 truststore (``keytool -storetype pkcs12``, a JDK 18+
  ``cacerts``, ``openssl pkcs12 -export``), read with ``cryptography``.
- ``dir:PATH``: an OpenSSL CApath-style directory (``c_rehash``/``openssl rehash`` hash
  links ``HASH.N``) or a copy of a system's ``/etc/ssl/certs``.

The anchors of a keystore are what the JDK's default trust manager takes from it
(``sun.security.validator.TrustStoreUtil.getTrustedCerts``): every trusted-certificate
entry, and the first certificate of each private-key entry's chain. Key material is never
decrypted: a JKS's trusted entries are stored in the clear and its password only proves
integrity; a PKCS#12 file's password decrypts its certificate bags.

Passwords: the one given (an inventory profile's ``password_env``/``password_file``);
without one, ``changeit`` (the JDK's ``cacerts`` password) for JKS, and for PKCS#12 no
password (a JDK 18+ ``cacerts``) and then ``changeit``. A wrong password, a file that is
not a keystore, or a missing file is a one-line ``StoreError``.

Files are read as ``file:`` stores are (:func:`~chainwatch.model.bundle.read_source`):
regular files only, at most :data:`~chainwatch.model.bundle.MAX_BUNDLE_BYTES` each; a
directory is read to at most :data:`MAX_DIR_ENTRIES` entries.
"""

from __future__ import annotations

import os
import re
import stat
import struct
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from chainwatch.errors import BundleError, StoreError
from chainwatch.model import Cert, Store
from chainwatch.model.bundle import load_pkcs12_certs, parse_bundle, read_source

DEFAULT_PASSWORD = "changeit"
"""The JDK's ``cacerts`` password, tried when none is given."""

MAX_DIR_ENTRIES = 10_000
"""The most directory entries a ``dir:`` store looks at (a system's ``/etc/ssl/certs``
holds ~300 certificates, and a hash link and a ``.pem`` name for each)."""

_HASH_LINK = re.compile(r"^[0-9a-f]{8}\.\d+$")
"""``c_rehash``/``openssl rehash`` names of certificates (``HASH.rN`` are CRLs)."""
_CERT_SUFFIXES = (".pem", ".crt", ".cer", ".der")


@dataclass(frozen=True)
class _Key:
    """The identity of a store file (a changed file is read again)."""

    path: str
    mtime_ns: int
    size: int


def _stat_key(path: Path, label: str) -> _Key:
    try:
        info = path.stat()
    except FileNotFoundError:
        raise StoreError(f"profile store {label!r}: {path}: no such file") from None
    except OSError as exc:
        raise StoreError(f"profile store {label!r}: {path}: {exc.strerror or exc}") from None
    return _Key(str(path.resolve()), info.st_mtime_ns, info.st_size)


def _read(key: _Key, label: str, shown: str) -> bytes:
    try:
        return read_source(key.path)
    except BundleError as exc:
        raise StoreError(f"profile store {label!r}: {shown}: {exc.reason}") from None


def jks_store(path: Path, *, display: str, password: str | None = None) -> Store:
    """The anchors of the JKS (or JCEKS) keystore at ``path``."""
    label = f"jks:{display}"
    return _jks_store(_stat_key(path, label), label, str(path), password)


@lru_cache(maxsize=64)
def _jks_store(key: _Key, label: str, shown: str, password: str | None) -> Store:
    import jks

    data = _read(key, label, shown)
    given = DEFAULT_PASSWORD if password is None else password
    try:
        keystore = jks.KeyStore.loads(data, given, try_decrypt_keys=False)
    except jks.util.KeystoreSignatureException:
        which = "the default password 'changeit'" if password is None else "the password given"
        raise StoreError(
            f"profile store {label!r}: {shown}: wrong password ({which} does not match the "
            "keystore's integrity check)"
        ) from None
    except jks.util.BadKeystoreFormatException as exc:
        why = str(exc) if data[:4] in (b"\xfe\xed\xfe\xed", b"\xce\xce\xce\xce") else (
            "not a Java keystore (JKS/JCEKS); for a PKCS#12 file say pkcs12:")
        raise StoreError(f"profile store {label!r}: {shown}: {why}") from None
    except (jks.util.KeystoreException, struct.error, ValueError, IndexError, TypeError,
            EOFError, UnicodeDecodeError) as exc:
        # pyjks reads JCEKS secret keys as serialized Java objects: a hostile one can fail
        # in any of these ways; all mean the same to the user.
        raise StoreError(
            f"profile store {label!r}: {shown}: malformed keystore ({exc})"
        ) from None
    ders: list[bytes] = [entry.cert for entry in keystore.certs.values()]
    for entry in keystore.private_keys.values():
        chain = entry.cert_chain or []
        if chain:
            ders.append(chain[0][1])
    return _store(label, ders, key.path, f"{len(keystore.entries)} entries")


def pkcs12_store(path: Path, *, display: str, password: str | None = None) -> Store:
    """The certificates of the PKCS#12 truststore at ``path``."""
    label = f"pkcs12:{display}"
    return _pkcs12_store(_stat_key(path, label), label, str(path), password)


@lru_cache(maxsize=64)
def _pkcs12_store(key: _Key, label: str, shown: str, password: str | None) -> Store:
    data = _read(key, label, shown)
    tries: tuple[bytes | None, ...] = (
        (None, DEFAULT_PASSWORD.encode()) if password is None else (password.encode(),)
    )
    try:
        certs = load_pkcs12_certs(data, shown, tries)
    except BundleError as exc:
        reason = exc.reason
        if password is None and reason.startswith("wrong password"):
            reason = "wrong password (neither no password nor 'changeit' opens it)"
        raise StoreError(f"profile store {label!r}: {shown}: {reason}") from None
    return _store(label, [c.der for c in certs], key.path, "PKCS#12")


def _store(label: str, ders: list[bytes], path: str, what: str) -> Store:
    anchors: list[Cert] = []
    for number, der in enumerate(ders, start=1):
        try:
            anchors.append(parse_bundle(der, f"{path} entry #{number}")[0])
        except BundleError as exc:
            raise StoreError(f"profile store {label!r}: {exc}") from None
    if not anchors:
        raise StoreError(f"profile store {label!r}: {path}: holds no certificate")
    unique = tuple(dict.fromkeys(anchors))
    return Store(name=label, anchors=unique, source=f"{path} ({what})")


def dir_store(path: Path, *, display: str) -> Store:
    """The certificates of a CApath-style directory: its hash links (``HASH.N``) and its
    ``.pem``/``.crt``/``.cer``/``.der`` files, symbolic links followed. Files that hold no
    certificate (a README, a CRL) are skipped, as OpenSSL skips them; their count is in
    the store's ``source``."""
    label = f"dir:{display}"
    try:
        info = path.stat()
    except FileNotFoundError:
        raise StoreError(f"profile store {label!r}: {path}: no such directory") from None
    except OSError as exc:
        raise StoreError(f"profile store {label!r}: {path}: {exc.strerror or exc}") from None
    if not stat.S_ISDIR(info.st_mode):
        raise StoreError(f"profile store {label!r}: {path}: not a directory (for a bundle "
                         "say file:)")
    entries: list[tuple[str, int, int]] = []
    try:
        with os.scandir(path) as listing:
            for count, entry in enumerate(listing):
                if count >= MAX_DIR_ENTRIES:
                    raise StoreError(f"profile store {label!r}: {path}: more than "
                                     f"{MAX_DIR_ENTRIES} entries")
                if not (_HASH_LINK.match(entry.name) or entry.name.endswith(_CERT_SUFFIXES)):
                    continue
                try:
                    st = entry.stat()  # follows the link
                except OSError:
                    continue  # a dangling link: OpenSSL finds nothing there either
                if stat.S_ISREG(st.st_mode):
                    entries.append((entry.name, st.st_mtime_ns, st.st_size))
    except PermissionError:
        raise StoreError(f"profile store {label!r}: {path}: permission denied") from None
    return _dir_store(str(path.resolve()), tuple(sorted(entries)), label, str(path))


@lru_cache(maxsize=32)
def _dir_store(
    path: str, entries: tuple[tuple[str, int, int], ...], label: str, shown: str
) -> Store:
    anchors: list[Cert] = []
    skipped: list[str] = []
    for name, _mtime, _size in entries:
        try:
            anchors.extend(parse_bundle(read_source(Path(path) / name), name))
        except BundleError as exc:
            skipped.append(f"{name} ({exc.reason})")
    unique = tuple(dict.fromkeys(anchors))
    if not unique:
        why = f"; skipped: {'; '.join(skipped[:3])}" if skipped else ""
        raise StoreError(f"profile store {label!r}: {shown}: holds no certificate file "
                         f"(HASH.N, *.pem, *.crt, *.cer, *.der){why}")
    source = f"{path} ({len(unique)} certificates from {len(entries)} files"
    if skipped:
        source += f"; {len(skipped)} skipped, e.g. {skipped[0]}"
    return Store(name=label, anchors=unique, source=source + ")")
