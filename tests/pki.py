"""The test suite's throwaway-PKI factory.

It is the package's own :mod:`chainwatch.testing.pki` (the incident lab and the examples are
built with the same code), re-exported here so tests read like trustme::

    pki = PKI(now=at("2021-09-01"))
    old = pki.root("Old Root", expires="2021-09-30T14:01:15")
    leaf = old.intermediate("R3").leaf("app.example.com")
"""

from __future__ import annotations

import datetime as dt

from chainwatch.testing.pki import CA, PKI, KeyPool, Leaf, key_pem, pem_of, when

__all__ = ["CA", "PKI", "KeyPool", "Leaf", "at", "key_pem", "pem_of", "when"]


def at(value: str) -> dt.datetime:
    """A UTC instant from an ISO string (no offset means UTC)."""
    return when(value, dt.datetime.now(dt.UTC))
