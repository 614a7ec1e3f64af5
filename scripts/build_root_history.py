#!/usr/bin/env python3
"""Build chainwatch's historic Mozilla root-store data from every certifi release.

certifi ships Mozilla's CA list as ``certifi/cacert.pem`` and names its releases by
date (``2016.2.28`` was released on 2016-02-28). This script fetches every release
from ``--since`` (default 2015) onwards with ``pip download``, extracts the bundle
from the wheel or the sdist, and writes into ``--out``:

``roots.der.gz``
    every distinct root exactly once, sorted by the SHA-256 of its DER; each record is
    a 4-byte big-endian length followed by that many DER bytes; gzip with mtime 0.
``index.json``
    the releases (version, date, artifact, hashes, count) and, per root, its SHA-256,
    subject, notAfter and the maximal runs of consecutive releases that contain it.
``README.md``
    provenance, including every release that was skipped and why.

The output is deterministic: regenerating from the same artifacts gives identical
bytes. Usage::

    python scripts/build_root_history.py                      # download into a temp dir
    python scripts/build_root_history.py --cache ~/.cache/certifi-history
    python scripts/build_root_history.py --cache DIR --offline  # only what DIR holds
"""

from __future__ import annotations

import argparse
import base64
import binascii
import dataclasses
import datetime as dt
import gzip
import hashlib
import io
import json
import re
import subprocess
import sys
import tarfile
import tempfile
import warnings
import zipfile
from collections.abc import Iterable, Sequence
from pathlib import Path

from cryptography import x509

PACKAGE = "certifi"
REPO_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_OUT = REPO_ROOT / "src" / "chainwatch" / "data" / "mozilla_history"
SOURCE = (
    "Mozilla's CA certificate list (NSS built-in roots trusted for TLS server "
    "authentication) as packaged in certifi/cacert.pem by every certifi release on PyPI; "
    "release date = the date in the version number"
)
FORMAT = 1

_PEM_BLOCK = re.compile(
    rb"-----BEGIN CERTIFICATE-----\s*(.*?)\s*-----END CERTIFICATE-----", re.DOTALL
)
_ARTIFACT = re.compile(
    r"^certifi-(?P<version>\d+(?:\.\d+)*(?:\.post\d+)?)(?:-.+\.whl|\.tar\.gz|\.zip)$",
    re.IGNORECASE,
)
# Wheels first: a release with both gives the same cacert.pem; prefer the wheel for
# a stable choice of artifact.
_KIND_ORDER = {".whl": 0, ".tar.gz": 1, ".zip": 2}


class ReleaseError(Exception):
    """A release could not be used; the message says why (recorded in the provenance)."""


@dataclasses.dataclass(frozen=True, order=True)
class Version:
    """A certifi release: a numeric dotted version, optionally a PEP 440 post-release
    (``2026.10.19.post1``, a re-packaging whose ``certifi.__version__`` says
    ``2026.10.19``). A post-release sorts after its base release and names its date."""

    parts: tuple[int, ...]
    post: int = -1

    @classmethod
    def parse(cls, text: str) -> Version:
        """Parse ``2015.04.28`` (normalised to 2015.4.28) or ``2026.10.19.post1``."""
        pieces = text.strip().split(".")
        post = -1
        if len(pieces) > 1 and pieces[-1].startswith("post") and pieces[-1][4:].isdigit():
            post = int(pieces.pop()[4:])
        if not pieces or not all(p.isdigit() for p in pieces):
            raise ValueError(f"not a numeric version: {text!r}")
        return cls(tuple(int(p) for p in pieces), post)

    def __str__(self) -> str:
        base = ".".join(str(p) for p in self.parts)
        return base if self.post < 0 else f"{base}.post{self.post}"

    def date(self) -> dt.date:
        """The release date a certifi version names: its first three components."""
        if len(self.parts) < 3:
            raise ValueError(f"certifi {self} does not name a date")
        return dt.date(self.parts[0], self.parts[1], self.parts[2])


@dataclasses.dataclass(frozen=True)
class Root:
    sha256: str
    der: bytes
    subject: str
    not_after: str


@dataclasses.dataclass(frozen=True)
class Release:
    version: Version
    artifact: str
    artifact_sha256: str
    cacert_sha256: str
    roots: tuple[Root, ...]  # distinct, sorted by sha256


@dataclasses.dataclass(frozen=True)
class Skipped:
    version: Version
    reason: str


# --------------------------------------------------------------------------- fetching


def _pip(args: Sequence[str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "pip", "--disable-pip-version-check", *args],
        capture_output=True,
        text=True,
        check=False,
    )


def list_remote_versions() -> list[Version]:
    """Every numeric certifi version the package index offers."""
    proc = _pip(["index", "versions", PACKAGE])
    text = ""
    match = re.search(r"Available versions:\s*(.+)", proc.stdout)
    if match:
        text = match.group(1)
    else:
        # Older or newer pips without ``index versions``: the error of an impossible
        # pin lists every version.
        proc = _pip(["download", "--no-deps", "-d", tempfile.gettempdir(), f"{PACKAGE}==0.0.0a0"])
        match = re.search(r"\(from versions:\s*([^)]*)\)", proc.stderr + proc.stdout)
        if not match:
            raise SystemExit(f"cannot list {PACKAGE} versions with pip:\n{proc.stderr.strip()}")
        text = match.group(1)
    versions: set[Version] = set()
    for raw in text.split(","):
        try:
            versions.add(Version.parse(raw))
        except ValueError:
            continue  # pre-releases and the like: not a published Mozilla store
    return sorted(versions)


def cached_artifacts(cache: Path) -> dict[Version, Path]:
    """The best artifact per version in ``cache`` (wheel over tar.gz over zip)."""
    best: dict[Version, tuple[int, str, Path]] = {}
    if not cache.is_dir():
        return {}
    for path in cache.iterdir():
        match = _ARTIFACT.match(path.name)
        if not match or not path.is_file():
            continue
        version = Version.parse(match.group("version"))
        kind = next(k for k in _KIND_ORDER if path.name.lower().endswith(k))
        key = (_KIND_ORDER[kind], path.name, path)
        if version not in best or key[:2] < best[version][:2]:
            best[version] = key
    return {version: entry[2] for version, entry in best.items()}


def download(version: Version, cache: Path) -> Path:
    """Fetch one release into ``cache`` (the wheel when there is one, else the sdist)."""
    cache.mkdir(parents=True, exist_ok=True)
    proc = _pip(["download", "--no-deps", "-d", str(cache), f"{PACKAGE}=={version}"])
    found = cached_artifacts(cache).get(version)
    if found is None:
        lines = [ln for ln in (proc.stderr or proc.stdout).splitlines() if ln.strip()]
        reason = lines[-1].strip() if lines else f"pip exited {proc.returncode}"
        raise ReleaseError(f"download failed: {reason}")
    return found


# ------------------------------------------------------------------------- extracting


def extract_cacert(artifact: Path) -> bytes:
    """``certifi/cacert.pem`` from a wheel, a .tar.gz sdist or a .zip sdist."""
    name = artifact.name.lower()
    try:
        if name.endswith((".whl", ".zip")):
            with zipfile.ZipFile(artifact) as archive:
                member = _pick_member(archive.namelist())
                return archive.read(member)
        if name.endswith(".tar.gz"):
            with tarfile.open(artifact, "r:gz") as archive:
                member = _pick_member(m.name for m in archive.getmembers() if m.isfile())
                handle = archive.extractfile(member)
                if handle is None:
                    raise ReleaseError(f"{artifact.name}: {member} is not a regular file")
                with handle:
                    return handle.read()
    except (zipfile.BadZipFile, tarfile.TarError, OSError, EOFError) as exc:
        raise ReleaseError(f"{artifact.name}: unreadable archive ({exc})") from None
    raise ReleaseError(f"{artifact.name}: not a wheel, .tar.gz or .zip")


def _pick_member(names: Iterable[str]) -> str:
    hits = sorted(
        (n for n in names if n == "certifi/cacert.pem" or n.endswith("/certifi/cacert.pem")),
        key=lambda n: (n.count("/"), n),
    )
    if not hits:
        raise ReleaseError("archive has no certifi/cacert.pem")
    return hits[0]


def parse_roots(pem: bytes, label: str, notes: list[str]) -> tuple[Root, ...]:
    """Every distinct certificate of a PEM bundle. Unparseable blocks are noted, not kept."""
    roots: dict[str, Root] = {}
    for number, match in enumerate(_PEM_BLOCK.finditer(pem), start=1):
        try:
            der = base64.b64decode(b"".join(match.group(1).split()), validate=True)
        except binascii.Error:
            notes.append(f"{label}: certificate #{number} is not valid base64; left out")
            continue
        try:
            with warnings.catch_warnings():
                # Old roots trip cryptography's pedantry (non-positive serials, over-long
                # name attributes); they are still Mozilla's roots, so keep them quietly.
                warnings.simplefilter("ignore")
                (cert,) = x509.load_pem_x509_certificates(match.group(0))
                subject = cert.subject.rfc4514_string()
                not_after = cert.not_valid_after_utc
        except ValueError as exc:
            notes.append(f"{label}: certificate #{number} does not parse ({exc}); left out")
            continue
        sha = hashlib.sha256(der).hexdigest()
        roots.setdefault(
            sha,
            Root(
                sha256=sha,
                der=der,
                subject=subject,
                not_after=not_after.strftime("%Y-%m-%dT%H:%M:%SZ"),
            ),
        )
    if not roots:
        raise ReleaseError(f"{label}: cacert.pem holds no certificate")
    return tuple(roots[k] for k in sorted(roots))


def load_release(version: Version, artifact: Path, notes: list[str]) -> Release:
    blob = artifact.read_bytes()
    pem = extract_cacert(artifact)
    return Release(
        version=version,
        artifact=artifact.name,
        artifact_sha256=hashlib.sha256(blob).hexdigest(),
        cacert_sha256=hashlib.sha256(pem).hexdigest(),
        roots=parse_roots(pem, f"certifi {version}", notes),
    )


# --------------------------------------------------------------------------- writing


def runs(present: Sequence[bool]) -> list[tuple[int, int]]:
    """Maximal runs of True as (first index, last index), in order."""
    out: list[tuple[int, int]] = []
    start: int | None = None
    for i, flag in enumerate(present):
        if flag and start is None:
            start = i
        elif not flag and start is not None:
            out.append((start, i - 1))
            start = None
    if start is not None:
        out.append((start, len(present) - 1))
    return out


def build_index(
    releases: Sequence[Release], skipped: Sequence[Skipped]
) -> tuple[dict[str, object], dict[str, Root]]:
    all_roots: dict[str, Root] = {}
    for release in releases:
        for root in release.roots:
            all_roots.setdefault(root.sha256, root)
    members = [{r.sha256 for r in release.roots} for release in releases]
    root_entries: list[dict[str, object]] = []
    for sha in sorted(all_roots):
        root = all_roots[sha]
        spans = runs([sha in m for m in members])
        root_entries.append(
            {
                "sha256": sha,
                "subject": root.subject,
                "not_after": root.not_after,
                "ranges": [[str(releases[a].version), str(releases[b].version)] for a, b in spans],
            }
        )
    index: dict[str, object] = {
        "format": FORMAT,
        "source": SOURCE,
        "generated_by": "scripts/build_root_history.py",
        "releases": [
            {
                "version": str(r.version),
                "date": r.version.date().isoformat(),
                "artifact": r.artifact,
                "artifact_sha256": r.artifact_sha256,
                "cacert_sha256": r.cacert_sha256,
                "count": len(r.roots),
            }
            for r in releases
        ],
        "skipped": [{"version": str(s.version), "reason": s.reason} for s in skipped],
        "roots": root_entries,
    }
    return index, all_roots


def pack_roots(roots: dict[str, Root]) -> bytes:
    raw = b"".join(len(roots[sha].der).to_bytes(4, "big") + roots[sha].der for sha in sorted(roots))
    buf = io.BytesIO()
    # filename="" and mtime=0 keep the gzip header free of anything that varies.
    with gzip.GzipFile(filename="", mode="wb", fileobj=buf, compresslevel=9, mtime=0) as gz:
        gz.write(raw)
    return buf.getvalue()


def render_readme(
    releases: Sequence[Release], skipped: Sequence[Skipped], notes: Sequence[str], n_roots: int
) -> str:
    first, last = releases[0], releases[-1]
    lines = [
        "# Historic Mozilla root store (generated data)",
        "",
        "**Generated by `scripts/build_root_history.py`. Do not edit these files by hand.**",
        "",
        "## What this is",
        "",
        "Mozilla's CA certificate list (the NSS built-in roots trusted for TLS server",
        "authentication) as it was shipped, release by release, by",
        "[certifi](https://pypi.org/project/certifi/), the Python package that packages",
        "that list as `certifi/cacert.pem`. A device or runtime that was last updated on a",
        "given day trusts the store as it stood then; `mozilla@YYYY-MM-DD` profiles use the",
        "latest release on or before that day (`chainwatch.stores.history`).",
        "",
        f"- releases: {len(releases)}, from certifi {first.version} "
        f"({first.version.date().isoformat()}) to {last.version} "
        f"({last.version.date().isoformat()})",
        f"- distinct root certificates: {n_roots}",
        "",
        "## Version to date rule",
        "",
        "certifi versions are date-named: the first three components are year, month and",
        "day (`2016.2.28` is 2016-02-28; `2020.4.5.1`, a same-day re-release, is",
        "2020-04-05). That date is taken as the release date. It is when the list reached",
        "certifi users, which is after Mozilla made the change in NSS. Several releases on",
        "one date are ordered by version; a date resolves to the last of them.",
        "",
        "Only `cacert.pem` is used. Releases 2015.9.6 to 2017.7.27.1 also shipped the",
        "1024-bit roots Mozilla had just removed, in separate files (`old_root.pem`,",
        "`weak.pem`, for opt-in legacy use); those files are ignored. In 2015.4.28,",
        "`cacert.pem` itself still held them, so that first snapshot includes them.",
        "",
        "## Files",
        "",
        "- `index.json`: `releases` (version, date, the artifact read, its SHA-256, the",
        "  SHA-256 of its `cacert.pem`, the number of distinct roots), `skipped` (releases",
        "  that could not be used and why) and `roots` (SHA-256 of the DER, RFC 4514",
        "  subject, notAfter, and `ranges`: the maximal runs of consecutive releases that",
        "  contain the root, each as [first version, last version]).",
        "- `roots.der.gz`: every distinct root once, sorted by SHA-256; gzip of records",
        "  made of a 4-byte big-endian length and the DER.",
        "",
        "## Refreshing",
        "",
        "```",
        "python scripts/build_root_history.py --cache ~/.cache/certifi-history",
        "python -m pytest tests/test_history.py",
        "```",
        "",
        "The script downloads every certifi release from 2015 on with `pip download`",
        "(wheel, or the sdist when there is no wheel), reuses whatever the `--cache`",
        "directory already holds, and rewrites this directory. Output is deterministic:",
        "the same artifacts give byte-identical files.",
        "",
        "## Skipped releases",
        "",
    ]
    if skipped:
        lines += [f"- certifi {s.version}: {s.reason}" for s in skipped]
    else:
        lines.append("None: every release since 2015 was read.")
    if notes:
        lines += ["", "## Notes", ""]
        lines += [f"- {note}" for note in notes]
    lines += ["", "## Releases", "", "| version | date | roots |", "| --- | --- | --- |"]
    lines += [
        f"| {r.version} | {r.version.date().isoformat()} | {len(r.roots)} |" for r in releases
    ]
    return "\n".join(lines) + "\n"


def write_if_changed(path: Path, data: bytes) -> bool:
    if path.is_file() and path.read_bytes() == data:
        return False
    path.write_bytes(data)
    return True


# ------------------------------------------------------------------------------ main


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument(
        "--cache",
        type=Path,
        help="directory of certifi artifacts: reused when present, downloads saved there "
        "(default: a temporary directory)",
    )
    parser.add_argument(
        "--offline",
        action="store_true",
        help="use only the artifacts already in --cache; list and download nothing",
    )
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="output directory")
    parser.add_argument(
        "--since", type=int, default=2015, help="first year to include (default: 2015)"
    )
    args = parser.parse_args(argv)
    if args.offline and args.cache is None:
        parser.error("--offline needs --cache")

    with tempfile.TemporaryDirectory(prefix="certifi-history-") as tmp:
        cache: Path = args.cache if args.cache is not None else Path(tmp)
        have = cached_artifacts(cache)
        wanted = sorted(have) if args.offline else list_remote_versions()
        wanted = [v for v in wanted if len(v.parts) >= 3 and v.parts[0] >= args.since]
        releases: list[Release] = []
        skipped: list[Skipped] = []
        notes: list[str] = []
        for version in wanted:
            try:
                version.date()
                artifact = have.get(version) or download(version, cache)
                releases.append(load_release(version, artifact, notes))
            except (ReleaseError, ValueError) as exc:
                skipped.append(Skipped(version, str(exc)))
                print(f"skip certifi {version}: {exc}", file=sys.stderr)
                continue
            print(f"certifi {version}: {len(releases[-1].roots)} roots", file=sys.stderr)

    if not releases:
        print("no usable release", file=sys.stderr)
        return 1
    index, roots = build_index(releases, skipped)
    out: Path = args.out
    out.mkdir(parents=True, exist_ok=True)
    index_bytes = (json.dumps(index, indent=1, ensure_ascii=False) + "\n").encode()
    readme = render_readme(releases, skipped, notes, len(roots)).encode()
    changed = [
        name
        for name, data in (
            ("index.json", index_bytes),
            ("roots.der.gz", pack_roots(roots)),
            ("README.md", readme),
        )
        if write_if_changed(out / name, data)
    ]
    size = sum(p.stat().st_size for p in out.iterdir() if p.is_file())
    print(
        f"{len(releases)} releases, {len(skipped)} skipped, {len(roots)} distinct roots; "
        f"{out} is {size} bytes; changed: {', '.join(changed) or 'nothing'}",
        file=sys.stderr,
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
