"""x509-limbo conformance of the modern profile.

The suite (C2SP/x509-limbo, Apache-2.0) lives beside the checkout, in
``../shared/conformance/limbo.json``, or wherever ``CHAINWATCH_LIMBO`` points; it is
not copied into the repository. Without it these tests are skipped.

Each SERVER testcase a TLS client meets (no ``pedantic-*`` or ``has-crl`` feature) is
run through :func:`chainwatch.analysis.engine.analyze` with a modern profile whose
anchors are the testcase's trusted certificates. "chainwatch accepts" means the
profile trusts the chain and, when a peer name is given, there is no
``HOSTNAME_MISMATCH`` finding. The cases where that differs from the expected result
must be exactly the ones listed, with their reasons, in ``docs/conformance.md``: an
improvement or a regression fails here until the document says so.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import re
import ssl
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from chainwatch.analysis.engine import analyze
from chainwatch.model import Building, Cert, FindingCode, Profile, Store

ROOT = Path(__file__).resolve().parents[1]
DOC = ROOT / "docs" / "conformance.md"
DEFAULT_LIMBO = Path(__file__).resolve().parents[2] / "shared" / "conformance" / "limbo.json"

SCORED_CASES = 175
"""SERVER testcases without a ``pedantic-*`` or ``has-crl`` feature in the suite version
chainwatch is measured against; a different number means a different suite."""

MIN_AGREED = 148
"""Agreement floor: the figure in docs/conformance.md. Raise it with every improvement."""

NOW = dt.datetime.now(dt.UTC)
"""limbo's ``validation_time: null`` means "validate at the current time"."""


def _limbo_path() -> Path:
    override = os.environ.get("CHAINWATCH_LIMBO")
    return Path(override) if override else DEFAULT_LIMBO


@pytest.fixture(scope="module")
def limbo() -> list[dict[str, Any]]:
    path = _limbo_path()
    if not path.is_file():
        pytest.skip(
            f"x509-limbo suite not found at {path} "
            "(set CHAINWATCH_LIMBO to the path of limbo.json)"
        )
    cases: list[dict[str, Any]] = json.loads(path.read_text(encoding="utf-8"))["testcases"]
    return cases


def scored(case: dict[str, Any]) -> bool:
    """A SERVER testcase a TLS client meets: no pedantic profile, no CRL file."""
    return case["validation_kind"] == "SERVER" and not any(
        f.startswith(("pedantic-", "has-crl")) for f in case["features"]
    )


@dataclass(frozen=True)
class Outcome:
    """chainwatch's answer to one testcase."""

    id: str
    expected: str
    actual: str
    why: str

    @property
    def agrees(self) -> bool:
        return self.expected == self.actual


def _parse(pems: Iterable[str]) -> list[Cert] | None:
    """The certificates, or ``None`` when one of them is unparsable (a client that cannot
    parse a certificate it was sent, or one of its anchors, fails the handshake)."""
    certs = []
    for pem in pems:
        try:
            cert = Cert.from_der(ssl.PEM_cert_to_DER_cert(pem))
            # Decode the extensions now: cryptography raises TypeError (not ValueError)
            # for some malformed name constraints, which Cert.extensions does not catch.
            _ = cert.extensions
        except (ValueError, TypeError):
            return None
        certs.append(cert)
    return certs


def run_case(case: dict[str, Any]) -> Outcome:
    expected = case["expected_result"]
    anchors = _parse(case["trusted_certs"])
    chain = _parse([case["peer_certificate"], *case["untrusted_intermediates"]])
    if anchors is None or chain is None:
        return Outcome(case["id"], expected, "FAILURE", "unparsable certificate")
    at = dt.datetime.fromisoformat(case["validation_time"]) if case["validation_time"] else NOW
    peer = case["expected_peer_name"]
    host = peer["value"] if peer else None
    profile = Profile(
        spec="modern:limbo",
        store=Store(name="limbo", anchors=tuple(anchors)),
        building=Building.MODERN,
    )
    report = analyze(chain, [profile], at=at, host=host)
    result = report.profiles[0]
    if not result.trusted:
        return Outcome(case["id"], expected, "FAILURE", result.reason or str(result.error))
    if host and any(f.code is FindingCode.HOSTNAME_MISMATCH for f in report.findings):
        return Outcome(case["id"], expected, "FAILURE", f"hostname mismatch for {host}")
    return Outcome(case["id"], expected, "SUCCESS", "trusted")


def documented_disagreements() -> dict[str, tuple[str, str]]:
    """Case id -> (expected, chainwatch) from the table of docs/conformance.md."""
    section = DOC.read_text(encoding="utf-8").split("## Disagreements", 1)[1]
    section = section.split("\n## ", 1)[0]
    rows = re.findall(r"^\| `([^`]+)` \| (\w+) \| (\w+) \|", section, re.MULTILINE)
    return {case_id: (expected, actual) for case_id, expected, actual in rows}


def test_limbo_agreement_matches_docs(limbo: list[dict[str, Any]]) -> None:
    outcomes = [run_case(c) for c in limbo if scored(c)]
    assert len(outcomes) == SCORED_CASES
    agreed = sum(o.agrees for o in outcomes)
    differ = {o.id: (o.expected, o.actual) for o in outcomes if not o.agrees}
    reasons = "\n".join(f"  {o.id}: chainwatch {o.actual} ({o.why})"
                        for o in outcomes if not o.agrees)
    documented = documented_disagreements()
    assert differ == documented, (
        f"agreement is {agreed}/{SCORED_CASES}; update docs/conformance.md.\n"
        f"newly disagreeing: {sorted(differ.keys() - documented.keys())}\n"
        f"no longer disagreeing: {sorted(documented.keys() - differ.keys())}\n"
        f"all disagreements:\n{reasons}"
    )
    assert f"{agreed}/{SCORED_CASES}" in DOC.read_text(encoding="utf-8")
    assert agreed >= MIN_AGREED


def test_limbo_unscored_cases_are_reported(
    limbo: list[dict[str, Any]], record_property: Any
) -> None:
    """Pedantic, CRL and CLIENT testcases are run and summarised, never asserted on."""
    rest = [run_case(c) for c in limbo if not scored(c)]
    kinds: Counter[str] = Counter()
    agree: Counter[str] = Counter()
    for case, outcome in zip((c for c in limbo if not scored(c)), rest, strict=True):
        kind = _group(case)
        kinds[kind] += 1
        agree[kind] += outcome.agrees
    summary = ", ".join(f"{k}: {agree[k]}/{kinds[k]}" for k in sorted(kinds))
    record_property("limbo_unscored", summary)
    print(f"x509-limbo cases outside the score (agreeing/total): {summary}")
    assert sum(kinds.values()) == len(limbo) - SCORED_CASES


def _group(case: dict[str, Any]) -> str:
    kind = str(case["validation_kind"])
    if kind != "SERVER":
        return kind
    features: list[str] = case["features"]
    return "has-crl" if "has-crl" in features else "pedantic"
