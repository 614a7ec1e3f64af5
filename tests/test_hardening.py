"""Hostile input files are bounded in the work they cause.

- PEM is scanned in linear time: megabytes of BEGIN lines without END lines are refused
  at once (the old backtracking scan took ~27 s at 256 KiB, hours at 2 MiB).
"""

from __future__ import annotations

import pytest

from chainwatch.errors import BundleError
from chainwatch.model import Cert
from chainwatch.parsing import parse_bundle

from .pki import PKI, Leaf, at, pem_of


@pytest.fixture(scope="module")
def leaf() -> Leaf:
    pki = PKI(now=at("2026-01-01"))
    return pki.root("Hardening Root").intermediate("Hardening CA").leaf("app.example.com")


def served(leaf: Leaf) -> tuple[Cert, ...]:
    """The leaf and its issuing CA, as a server sends them."""
    assert leaf.issuer is not None
    return leaf.chain(leaf.issuer)


# -- PEM: one linear pass --------------------------------------------------------------------

BEGIN = b"-----BEGIN CERTIFICATE-----\n"


def test_megabytes_of_begin_lines_without_end_are_refused_at_once() -> None:
    # 2 MiB: ~75,000 BEGIN lines. The backtracking scan looked for an END line from each of
    # them to the end of the file: ~75,000 x 1 MiB of scanning, hours (27 s at 256 KiB).
    data = BEGIN * (2 * 1024 * 1024 // len(BEGIN))
    with pytest.raises(BundleError, match="truncated PEM: a BEGIN line has no matching END"):
        parse_bundle(data, "begins.pem")


def test_begin_lines_closed_by_one_end_line_are_truncated() -> None:
    data = BEGIN * (2 * 1024 * 1024 // len(BEGIN)) + b"-----END CERTIFICATE-----\n"
    with pytest.raises(BundleError, match="truncated PEM"):
        parse_bundle(data, "begins.pem")


@pytest.mark.parametrize(
    "data",
    [
        b"-----BEGIN CERTIFICATE-----no line break",
        BEGIN + b"-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n",
        BEGIN + b"AAAA\n-----END PRIVATE KEY-----\n",
    ],
    ids=["no-line-break", "begin-inside-a-block", "other-end-label"],
)
def test_every_begin_line_must_start_a_block(data: bytes) -> None:
    with pytest.raises(BundleError, match="truncated PEM"):
        parse_bundle(data, "odd.pem")


def test_many_blocks_parse_in_order(leaf: Leaf) -> None:
    chain = served(leaf)
    key_block = b"-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\r\n"
    data = (pem_of(*chain) + key_block + b"text between blocks\n") * 1500  # ~3.5 MiB
    certs = parse_bundle(data, "many.pem")
    assert len(certs) == 1500 * len(chain)
    assert certs[: len(chain)] == chain
