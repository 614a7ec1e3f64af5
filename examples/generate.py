"""Regenerate the example bundles in this folder (incident scenarios).

The bundles are committed so ``make run`` needs nothing but chainwatch; run this
only to change them: ``.venv/bin/python examples/generate.py``. The dates mirror the
real incidents; the keys and names are throwaway.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path

from chainwatch.testing.pki import PKI, pem_of, when

HERE = Path(__file__).resolve().parent


def day(text: str) -> dt.datetime:
    return when(text, dt.datetime.now(dt.UTC))


def write(folder: str, name: str, data: bytes) -> None:
    path = HERE / folder / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)


def hourfleet() -> None:
    """2019: the renewed certificate came from a CA hierarchy the back-ends did not trust."""
    pki = PKI(now=day("2019-06-01"))
    old_root = pki.root("Old Corp Root CA")
    new_root = pki.root("New Vendor Root CA")
    new_ca = new_root.intermediate("New Vendor TLS CA")
    renewed = new_ca.leaf("api.hourfleet.example", expires="2020-06-01")
    write("hourfleet", "renewed.pem", pem_of(*renewed.chain(new_ca)))
    write("hourfleet", "backend-trust.pem", pem_of(old_root.cert))
    write("hourfleet", "new-root.pem", pem_of(new_root.cert))


def dst_2021() -> None:
    """2021: leaf <- R <- X1 cross-signed by an old root that expires 2021-09-30."""
    pki = PKI(now=day("2021-08-01"))
    old = pki.root("Example DST Root X3", not_before="2000-09-30T21:12:19",
                   expires="2021-09-30T14:01:15", key="rsa2048")
    x1 = pki.root("Example Root X1", not_before="2015-06-04", expires="2035-06-04",
                  key="rsa2048")
    x1_by_old = x1.cross_signed_by(old, not_before="2021-01-20T19:14:03",
                                   expires="2024-09-30T18:14:03")
    r3 = x1.intermediate("Example R3", not_before="2020-09-04", expires="2025-09-15T16:00:00")
    leaf = r3.leaf("devices.netpark.example", not_before="2021-08-11",
                   expires="2021-11-09T09:01:35")
    write("dst-2021", "served.pem", pem_of(*leaf.chain(r3, x1_by_old)))
    write("dst-2021", "store-2021.pem", pem_of(old.cert, x1.cert))
    write("dst-2021", "old-device-store.pem", pem_of(old.cert))


def addtrust_2020() -> None:
    """2020: AddTrust External CA Root and its cross-sign of USERTrust expire 2020-05-30."""
    pki = PKI(now=day("2020-05-01"))
    addtrust = pki.root("Example AddTrust External CA Root", not_before="2000-05-30T10:48:38",
                        expires="2020-05-30T10:48:38", key="rsa2048", sha1=True)
    usertrust = pki.root("Example USERTrust RSA CA", not_before="2010-02-01",
                         expires="2038-01-18T23:59:59", key="rsa2048")
    cross = usertrust.cross_signed_by(addtrust, not_before="2000-05-30T10:48:38",
                                      expires="2020-05-30T10:48:38")
    dv = usertrust.intermediate("Example RSA DV CA", not_before="2018-11-02",
                                expires="2030-12-31T23:59:59")
    leaf = dv.leaf("app.logdna.example", not_before="2019-10-25", expires="2020-10-22T23:59:59")
    write("addtrust-2020", "served.pem", pem_of(*leaf.chain(dv, cross, addtrust)))
    write("addtrust-2020", "store-2020.pem", pem_of(addtrust.cert, usertrust.cert))


if __name__ == "__main__":
    hourfleet()
    dst_2021()
    addtrust_2020()
    print(f"wrote examples under {HERE}")
