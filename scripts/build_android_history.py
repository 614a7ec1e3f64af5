#!/usr/bin/env python3
"""Build chainwatch's Android system CA store data, release by release, from AOSP git history.

Android's system trust store is a directory of ``<subject-hash>.<n>`` files, each one
certificate as PEM preceded by its ``openssl x509 -text`` dump. Where those files live in
AOSP depends on the release:

===============  =====================================  ====================================
release          AOSP repository                        path
===============  =====================================  ====================================
up to 6.0.1      ``platform/libcore``                   ``luni/src/main/files/cacerts``
7.0 to 13        ``platform/system/ca-certificates``    ``files``
14 onwards       ``platform/external/conscrypt``        ``apex/ca-certificates/files``
===============  =====================================  ====================================

From 14 on the store a device consults is the one in the updatable Conscrypt module
(``/apex/com.android.conscrypt/cacerts``, which Google Play system updates replace); the
data records what the release's tag shipped in it.

This script reads the tree at each release tag from local git directories (bare or not)
of those repositories, with ``git``, and writes into ``--out``:

``roots.der.gz``
    every distinct certificate exactly once, sorted by the SHA-256 of its DER; each record
    is a 4-byte big-endian length followed by that many DER bytes; gzip with mtime 0
    (the same layout as ``data/mozilla_history``).
``index.json``
    the releases (name, tag, repository, path, commit, how the tag was found, the indices
    of its certificates in the sorted list) and, per certificate, its SHA-256, RFC 4514
    subject, notAfter and the file names it had in AOSP.
``README.md``
    provenance, including every release that could not be read and why.

A tag missing from a mirror can still be found when the mirror holds a downstream merge of
it (``Merge tag 'android-4.4.1_r1' ...``, as CyanogenMod's forks do): the merged parent is
the tag's commit. The index says which releases were found that way, naming the merge.

Output is deterministic for a given ``--made`` date. Usage::

    python scripts/build_android_history.py \\
        --ca-certificates /path/to/platform_system_ca-certificates.git \\
        --conscrypt /path/to/platform_external_conscrypt.git \\
        --libcore /path/to/platform_libcore.git
    python scripts/build_android_history.py ... --release 16=android-16.0.0_r1
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
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path

from cryptography import x509

REPO_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_OUT = REPO_ROOT / "src" / "chainwatch" / "data" / "android_history"
FORMAT = 1
AOSP = "https://android.googlesource.com/"
SOURCE = (
    "Android's system CA certificate store as shipped by each AOSP release tag "
    "(platform/libcore up to 6.0.1, platform/system/ca-certificates for 7.0 to 13, "
    "the Conscrypt module's apex/ca-certificates from 14 on)"
)


@dataclasses.dataclass(frozen=True)
class Source:
    key: str  # the command-line option naming its git directory
    repository: str  # AOSP project name
    path: str  # directory of certificate files in that project


LIBCORE = Source("libcore", "platform/libcore", "luni/src/main/files/cacerts")
CA_CERTIFICATES = Source("ca-certificates", "platform/system/ca-certificates", "files")
CONSCRYPT = Source("conscrypt", "platform/external/conscrypt", "apex/ca-certificates/files")
SOURCES = (LIBCORE, CA_CERTIFICATES, CONSCRYPT)

# The first tag of each release. Pre-7 tags: the earliest each release's libcore mirror
# holds (see README: 4.4_r1, 5.0.0_r1 and 6.0.0_r1 are not reachable there).
DEFAULT_RELEASES: tuple[tuple[str, str], ...] = (
    ("4.4.1", "android-4.4.1_r1"),
    ("4.4.3", "android-4.4.3_r1"),
    ("5.0", "android-5.0.0_r1"),
    ("5.1", "android-5.1.0_r1"),
    ("6.0", "android-6.0.0_r1"),
    ("6.0.1", "android-6.0.1_r3"),
    ("7.0", "android-7.0.0_r1"),
    ("7.1", "android-7.1.0_r1"),
    ("7.1.1", "android-7.1.1_r1"),
    ("7.1.2", "android-7.1.2_r1"),
    ("8.0", "android-8.0.0_r1"),
    ("8.1", "android-8.1.0_r1"),
    ("9", "android-9.0.0_r1"),
    ("10", "android-10.0.0_r1"),
    ("11", "android-11.0.0_r1"),
    ("12", "android-12.0.0_r1"),
    ("12.1", "android-12.1.0_r1"),
    ("13", "android-13.0.0_r1"),
    ("14", "android-14.0.0_r1"),
    ("15", "android-15.0.0_r1"),
)

_PEM_BLOCK = re.compile(
    rb"-----BEGIN CERTIFICATE-----\s*(.*?)\s*-----END CERTIFICATE-----", re.DOTALL
)
_NAME = re.compile(r"^(\d+)(?:\.(\d+))*$")


class ReleaseError(Exception):
    """A release could not be read; the message says why (recorded in the provenance)."""


def version_key(name: str) -> tuple[int, ...]:
    """``7.1.1`` -> (7, 1, 1); trailing zeros dropped so ``9``, ``9.0`` and ``9.0.0`` agree."""
    if not _NAME.match(name):
        raise ValueError(f"not a numeric release name: {name!r}")
    parts = [int(p) for p in name.split(".")]
    while len(parts) > 1 and parts[-1] == 0:
        parts.pop()
    return tuple(parts)


def source_for(name: str) -> Source:
    major = version_key(name)[0]
    if major < 7:
        return LIBCORE
    if major < 14:
        return CA_CERTIFICATES
    return CONSCRYPT


@dataclasses.dataclass(frozen=True)
class Cert:
    sha256: str
    der: bytes
    subject: str
    not_after: str


@dataclasses.dataclass(frozen=True)
class Release:
    name: str
    tag: str
    source: Source
    commit: str
    commit_date: str
    found_by: str  # "tag" or "merge <commit>"
    files: Mapping[str, str]  # file name -> sha256 of the certificate in it


@dataclasses.dataclass(frozen=True)
class Skipped:
    name: str
    tag: str
    reason: str


# --------------------------------------------------------------------------------- git


def _git(git_dir: Path, *args: str) -> bytes:
    proc = subprocess.run(
        ["git", f"--git-dir={git_dir}", *args], capture_output=True, check=False
    )
    if proc.returncode != 0:
        detail = proc.stderr.decode(errors="replace").strip().splitlines()
        raise ReleaseError(f"git {' '.join(args)}: {detail[-1] if detail else 'failed'}")
    return proc.stdout


def git_dir_of(path: Path) -> Path:
    """The git directory for ``path``: itself when bare, ``path/.git`` for a work tree."""
    if (path / ".git").exists():
        return path / ".git"
    if (path / "objects").is_dir() and (path / "HEAD").is_file():
        return path
    raise SystemExit(f"{path}: not a git directory or work tree")


def resolve_tag(git_dir: Path, tag: str) -> tuple[str, str]:
    """(commit, how it was found) for ``tag``: the tag itself, else a merge of it."""
    try:
        found = _git(git_dir, "rev-parse", "--verify", "--quiet", f"refs/tags/{tag}^{{commit}}")
        return found.decode().strip(), "tag"
    except ReleaseError:
        pass
    log = _git(git_dir, "log", "--all", "--merges", "--format=%H %P%x09%s").decode(
        errors="replace"
    )
    merged: dict[str, list[str]] = {}
    subject = re.compile(rf"^Merge tag '{re.escape(tag)}'(?:\s|$)")
    for line in log.splitlines():
        ids, _, title = line.partition("\t")
        parts = ids.split()
        if len(parts) == 3 and subject.match(title):
            merged.setdefault(parts[2], []).append(parts[0])
    if not merged:
        raise ReleaseError(f"tag {tag} is not in the repository, nor any merge of it")
    if len(merged) > 1:
        raise ReleaseError(f"merges of {tag} disagree on its commit: {sorted(merged)}")
    ((commit, merges),) = merged.items()
    return commit, f"merge {sorted(merges)[0]}"


def read_release(
    name: str, tag: str, source: Source, git_dir: Path, notes: list[str]
) -> tuple[Release, dict[str, Cert]]:
    """The release at ``tag`` and the certificates it holds, by SHA-256."""
    commit, found_by = resolve_tag(git_dir, tag)
    date = _git(git_dir, "show", "-s", "--format=%cI", commit).decode().strip()
    commit_date = (
        dt.datetime.fromisoformat(date).astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    )
    listing = _git(git_dir, "ls-tree", "-z", f"{commit}:{source.path}").split(b"\0")
    files: dict[str, str] = {}
    blobs: dict[str, Cert] = {}
    for entry in listing:
        if not entry:
            continue
        meta, _, raw_name = entry.partition(b"\t")
        mode, kind, blob = meta.decode().split()
        file_name = raw_name.decode()
        if kind != "blob":
            notes.append(f"{name}: {source.path}/{file_name} is a {kind}, not a file; ignored")
            continue
        del mode
        cert = parse_file(_git(git_dir, "cat-file", "blob", blob), f"{name}: {file_name}", notes)
        if cert is not None:
            files[file_name] = cert.sha256
            blobs[cert.sha256] = cert
    if not files:
        raise ReleaseError(f"{source.path} at {commit[:12]} holds no certificate")
    release = Release(name, tag, source, commit, commit_date, found_by, dict(sorted(files.items())))
    return release, blobs


def parse_file(data: bytes, label: str, notes: list[str]) -> Cert | None:
    """The one certificate of an Android CA file; anything else is noted and left out."""
    blocks = list(_PEM_BLOCK.finditer(data))
    if len(blocks) != 1:
        notes.append(f"{label}: {len(blocks)} PEM certificates, expected 1; left out")
        return None
    block = blocks[0]
    try:
        der = base64.b64decode(b"".join(block.group(1).split()), validate=True)
    except binascii.Error:
        notes.append(f"{label}: not valid base64; left out")
        return None
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # old roots trip cryptography's pedantry
            cert = x509.load_der_x509_certificate(der)
            subject = cert.subject.rfc4514_string()
            not_after = cert.not_valid_after_utc
    except ValueError as exc:
        notes.append(f"{label}: does not parse ({exc}); left out")
        return None
    return Cert(
        sha256=hashlib.sha256(der).hexdigest(),
        der=der,
        subject=subject,
        not_after=not_after.strftime("%Y-%m-%dT%H:%M:%SZ"),
    )


def compare_system(release: Release, git_dir: Path) -> str:
    """How ``platform/system/ca-certificates`` ``files/`` at the release's tag compares."""
    label = f"{release.name}: {CA_CERTIFICATES.repository} {CA_CERTIFICATES.path}/"
    try:
        other, _ = read_release(release.name, release.tag, CA_CERTIFICATES, git_dir, [])
    except ReleaseError as exc:
        return f"{label} not compared ({exc})"
    mine, theirs = set(release.files.values()), set(other.files.values())
    if mine == theirs:
        return (
            f"{label} at {release.tag} ({other.commit[:12]}) holds the same {len(mine)} "
            f"certificates as the Conscrypt module's store"
        )
    return (
        f"{label} at {release.tag} ({other.commit[:12]}) differs from the Conscrypt module's "
        f"store: {len(theirs - mine)} certificates only there, {len(mine - theirs)} only in "
        "the module; the module's store is the one recorded"
    )


# ----------------------------------------------------------------------------- writing


def build_index(
    releases: Sequence[Release],
    skipped: Sequence[Skipped],
    certs: Mapping[str, Cert],
    made: str,
    origins: Mapping[str, str],
) -> dict[str, object]:
    order = sorted(certs)
    position = {sha: i for i, sha in enumerate(order)}
    names: dict[str, set[str]] = {sha: set() for sha in order}
    for release in releases:
        for file_name, sha in release.files.items():
            names[sha].add(file_name)
    return {
        "format": FORMAT,
        "source": SOURCE,
        "generated_by": "scripts/build_android_history.py",
        "made": made,
        "origins": {
            s.repository: origins[s.key] for s in SOURCES if s.key in origins
        },
        "releases": [
            {
                "release": r.name,
                "tag": r.tag,
                "repository": r.source.repository,
                "path": r.source.path,
                "commit": r.commit,
                "commit_date": r.commit_date,
                "found_by": r.found_by,
                "count": len(set(r.files.values())),
                "certs": sorted({position[sha] for sha in r.files.values()}),
            }
            for r in releases
        ],
        "skipped": [{"release": s.name, "tag": s.tag, "reason": s.reason} for s in skipped],
        "certs": [
            {
                "sha256": sha,
                "subject": certs[sha].subject,
                "not_after": certs[sha].not_after,
                "files": sorted(names[sha]),
            }
            for sha in order
        ],
    }


def dump_index(index: Mapping[str, object]) -> bytes:
    """``index`` as indented JSON, but each list of numbers on one line (it stays small)."""
    text = json.dumps(index, indent=1, ensure_ascii=False)
    text = re.sub(
        r"\[\s*(\d+(?:,\s*\d+)*)\s*\]",
        lambda m: "[" + ", ".join(m.group(1).replace(",", " ").split()) + "]",
        text,
    )
    return (text + "\n").encode()


def pack(certs: Mapping[str, Cert]) -> bytes:
    raw = b"".join(len(certs[s].der).to_bytes(4, "big") + certs[s].der for s in sorted(certs))
    buf = io.BytesIO()
    with gzip.GzipFile(filename="", mode="wb", fileobj=buf, compresslevel=9, mtime=0) as gz:
        gz.write(raw)
    return buf.getvalue()


def render_readme(
    releases: Sequence[Release],
    skipped: Sequence[Skipped],
    notes: Sequence[str],
    n_certs: int,
    made: str,
    origins: Mapping[str, str],
) -> str:
    lines = [
        "# Android system CA stores by release (generated data)",
        "",
        "**Generated by `scripts/build_android_history.py`. Do not edit these files by hand.**",
        "",
        "## What this is",
        "",
        "The certificates in Android's system trust store (`/system/etc/security/cacerts`,",
        "from 14 on `/apex/com.android.conscrypt/cacerts`) as the AOSP source tree of each",
        "release tag holds them. `android@VERSION` profiles use them",
        "(`chainwatch.stores.android`). A device keeps the store of the release it runs;",
        "vendors may add certificates and, from Android 14, Google Play system updates can",
        "replace the Conscrypt module's store, so these are the stores as AOSP shipped them.",
        "",
        f"- made: {made}",
        f"- releases: {len(releases)}; distinct certificates: {n_certs}",
        "",
        *(
            [f"- {s.repository} read from {origins[s.key]}" for s in SOURCES if s.key in origins]
        ),
        "",
        "## Where each release's store lives in AOSP",
        "",
        "- up to 6.0.1: `platform/libcore`, `luni/src/main/files/cacerts` (installed by",
        "  libcore's `CaCerts.mk`);",
        "- 7.0 to 13: `platform/system/ca-certificates`, `files/`;",
        "- 14 on: `platform/external/conscrypt`, `apex/ca-certificates/files/`, the store of",
        "  the updatable Conscrypt module (see Notes for how it compares with",
        "  `platform/system/ca-certificates/files/` at the same tag).",
        "",
        "Only those directories are read: `google/` (roots for Google's own services) and",
        "`wfa_certs/` (Wi-Fi Passpoint) in `platform/system/ca-certificates` are not part of",
        "the TLS system store.",
        "",
        "Every file holds one certificate as PEM after its `openssl x509 -text` dump; the",
        "PEM block is what is read. Files are named `<hash>.<n>` by OpenSSL's old subject",
        "hash (`n` tells apart certificates with one subject); a renewed root can take an",
        "old name, so certificates are identified by the SHA-256 of their DER, and `files`",
        "lists every name each one had.",
        "",
        "## How tags were found",
        "",
        "`found_by` in `index.json` is `tag` when the mirror read holds the tag itself.",
        *merge_note(releases),
        "",
        "## Files",
        "",
        "- `index.json`: `releases` (release name, tag, AOSP repository and path, commit,",
        "  commit date, `found_by`, the number of distinct certificates and `certs`: their",
        "  indices in the `certs` list), `skipped` (releases that could not be read, and why)",
        "  and `certs` (sorted by SHA-256 of the DER: SHA-256, RFC 4514 subject, notAfter,",
        "  and the file names it had in AOSP).",
        "- `roots.der.gz`: every certificate once, sorted by SHA-256; gzip of records made",
        "  of a 4-byte big-endian length and the DER (the layout of `mozilla_history`).",
        "",
        "## Rebuilding",
        "",
        "Clone (or mirror) the three AOSP projects, then:",
        "",
        "```",
        "python scripts/build_android_history.py \\",
        "    --ca-certificates platform_system_ca-certificates.git \\",
        "    --conscrypt platform_external_conscrypt.git \\",
        "    --libcore platform_libcore.git \\",
        f"    --made {made}",
        "python -m pytest tests/test_android_history.py",
        "```",
        "",
        "`--release NAME=TAG` (repeatable) adds a release to the built-in list or changes",
        "the tag read for one (`--only`: just those); the repository follows from the",
        "release (before 7: libcore; 7 to 13: ca-certificates; 14 on: conscrypt). Output is",
        "deterministic for a given `--made`.",
        "",
        "## Releases",
        "",
        "| release | tag | repository | commit | commit date | found by | certificates |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    for r in releases:
        lines.append(
            f"| {r.name} | {r.tag} | {r.source.repository} | `{r.commit}` | "
            f"{r.commit_date[:10]} | {r.found_by} | {len(set(r.files.values()))} |"
        )
    lines += ["", "## Releases not included", ""]
    if skipped:
        lines += [f"- {s.name} ({s.tag}): {s.reason}" for s in skipped]
    else:
        lines.append("None: every release asked for was read.")
    if notes:
        lines += ["", "## Notes", ""]
        lines += [f"- {note}" for note in notes]
    return "\n".join(lines) + "\n"


def merge_note(releases: Sequence[Release]) -> list[str]:
    merged = sorted({r.source.repository for r in releases if r.found_by != "tag"})
    if not merged:
        return []
    return [
        f"The mirror read for {', '.join(f'`{m}`' for m in merged)} holds no AOSP tags but",
        "a downstream fork's merges of them (`Merge tag 'android-...' into ...`): the merged",
        "parent is the tag's commit, and `found_by` names the merge. Commit ids are AOSP's:",
        "in a clone of the AOSP project `git rev-parse TAG^{commit}` gives the same id.",
    ]


def write_if_changed(path: Path, data: bytes) -> bool:
    if path.is_file() and path.read_bytes() == data:
        return False
    path.write_bytes(data)
    return True


# -------------------------------------------------------------------------------- main


def _release_arg(text: str) -> tuple[str, str]:
    name, sep, tag = text.partition("=")
    if not sep or not tag.strip():
        raise argparse.ArgumentTypeError(f"{text!r}: expected NAME=TAG, e.g. 9=android-9.0.0_r1")
    try:
        version_key(name.strip())
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    return name.strip(), tag.strip()


def _origin_arg(text: str) -> tuple[str, str]:
    key, sep, where = text.partition("=")
    keys = [s.key for s in SOURCES]
    if not sep or key.strip() not in keys or not where.strip():
        raise argparse.ArgumentTypeError(f"{text!r}: expected SOURCE=WHERE, SOURCE one of {keys}")
    return key.strip(), where.strip()


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    for source in SOURCES:
        parser.add_argument(
            f"--{source.key}",
            type=Path,
            help=f"git directory (bare or work tree) of AOSP {source.repository}",
        )
    parser.add_argument(
        "--release",
        action="append",
        type=_release_arg,
        metavar="NAME=TAG",
        help="a release to read, added to the built-in list of first tags or replacing "
        "the tag it gives for NAME (repeatable)",
    )
    parser.add_argument(
        "--only", action="store_true", help="read only the --release entries, not the list"
    )
    parser.add_argument(
        "--origin",
        action="append",
        type=_origin_arg,
        metavar="SOURCE=WHERE",
        help="where a git directory was cloned from, recorded in the provenance "
        "(e.g. libcore=https://android.googlesource.com/platform/libcore)",
    )
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="output directory")
    parser.add_argument(
        "--made",
        type=dt.date.fromisoformat,
        default=dt.datetime.now(dt.UTC).date(),
        help="the date recorded as when the data was made (default: today, UTC)",
    )
    args = parser.parse_args(argv)

    git_dirs: dict[str, Path] = {}
    for source in SOURCES:
        path: Path | None = getattr(args, source.key.replace("-", "_"))
        if path is not None:
            git_dirs[source.key] = git_dir_of(path)
    if not git_dirs:
        parser.error("give at least one of --libcore, --ca-certificates, --conscrypt")
    if args.only and not args.release:
        parser.error("--only needs --release")
    chosen: dict[tuple[int, ...], tuple[str, str]] = {}
    for name, tag in () if args.only else DEFAULT_RELEASES:
        chosen[version_key(name)] = (name, tag)
    given: set[tuple[int, ...]] = set()
    for name, tag in args.release or ():
        key = version_key(name)
        if key in given:
            parser.error(f"release {name} is given twice")
        given.add(key)
        chosen[key] = (name, tag)
    wanted = [chosen[key] for key in sorted(chosen)]

    releases: list[Release] = []
    skipped: list[Skipped] = []
    notes: list[str] = []
    certs: dict[str, Cert] = {}
    for name, tag in wanted:
        source = source_for(name)
        git_dir = git_dirs.get(source.key)
        if git_dir is None:
            reason = f"no --{source.key} git directory given ({source.repository})"
            skipped.append(Skipped(name, tag, reason))
            print(f"skip {name}: {reason}", file=sys.stderr)
            continue
        try:
            release, held = read_release(name, tag, source, git_dir, notes)
        except ReleaseError as exc:
            skipped.append(Skipped(name, tag, f"{source.repository}: {exc}"))
            print(f"skip {name}: {exc}", file=sys.stderr)
            continue
        releases.append(release)
        certs.update(held)
        if source is CONSCRYPT and CA_CERTIFICATES.key in git_dirs:
            notes.append(compare_system(release, git_dirs[CA_CERTIFICATES.key]))
        print(
            f"{name}: {tag} {release.commit[:12]} ({release.found_by}), "
            f"{len(release.files)} files",
            file=sys.stderr,
        )
    if not releases:
        print("no release could be read", file=sys.stderr)
        return 1
    made = args.made.isoformat()
    origins = dict(args.origin or ())
    index = build_index(releases, skipped, certs, made, origins)
    out: Path = args.out
    out.mkdir(parents=True, exist_ok=True)
    index_bytes = dump_index(index)
    readme = render_readme(releases, skipped, notes, len(certs), made, origins).encode()
    changed = [
        name
        for name, data in (
            ("index.json", index_bytes),
            ("roots.der.gz", pack(certs)),
            ("README.md", readme),
        )
        if write_if_changed(out / name, data)
    ]
    size = sum(p.stat().st_size for p in out.iterdir() if p.is_file())
    print(
        f"{len(releases)} releases, {len(skipped)} skipped, {len(certs)} distinct certificates; "
        f"{out} is {size} bytes; changed: {', '.join(changed) or 'nothing'}",
        file=sys.stderr,
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
