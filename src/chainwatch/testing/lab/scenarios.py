"""The lab's scenarios: certificate hierarchies for five public incidents, the badssl-style
cases and a healthy control, dated relative to the lab's "now" so they stay meaningful
whenever the lab is started.

Pure construction: :func:`build_world` makes the hierarchies and :func:`build_scenarios`
says what each endpoint serves and what chainwatch is expected to find there. Nothing
here listens or writes files (that is :mod:`chainwatch.testing.lab.core`).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass, field

from chainwatch.model import Cert, Status
from chainwatch.testing.pki import CA, PKI, Leaf, PrivateKey

DOMAIN = "lab.test"
"""Every lab name ends in this reserved (RFC 2606) suffix: nothing real can answer."""


@dataclass(frozen=True)
class Served:
    """A chain as the server sends it (leaf first) and the leaf's private key.

    ``hierarchy`` names the issuing hierarchy (a key of :attr:`World.issuers`, or a
    descriptive name for one-off hierarchies), for renewals and hierarchy swaps.
    """

    chain: tuple[Cert, ...]
    key: PrivateKey
    hierarchy: str


@dataclass(frozen=True)
class Site:
    """One name served on one address of a scenario's port.

    Attributes:
        name: the endpoint's name in the lab (``Lab.endpoints``, ``replace_certificate``).
        sni: the server name clients send, and the name the leaf must cover.
        served: what the endpoint serves when the lab starts.
        profiles: the inventory profiles (names) the endpoint is judged for.
        status / codes: what ``chainwatch check`` with those profiles is expected to
            report at start: the status and finding codes that must be among its findings.
        slot: 0 for the lab's listen address, 1 for its second loopback address.
        lifetime: days a renewal issued by :meth:`Lab.renew` lasts.
    """

    name: str
    sni: str
    served: Served
    profiles: tuple[str, ...]
    status: Status
    codes: frozenset[str]
    description: str
    slot: int = 0
    lifetime: int = 90


@dataclass(frozen=True)
class Scenario:
    """One listening port: its sites (the first on each address is that address's
    default certificate, served when the SNI names no site), and STARTTLS if any."""

    name: str
    incident: str
    sites: tuple[Site, ...]
    starttls: str | None = None


@dataclass(frozen=True)
class TrustBundle:
    """A trust store the lab writes (``trust/<file>``) and the inventory profile over it."""

    profile: str
    file: str
    anchors: tuple[Cert, ...]
    building: str
    description: str

    @property
    def inventory_path(self) -> str:
        return f"trust/{self.file}"


@dataclass
class World:
    """The lab's hierarchies. ``issuers`` are the CAs that can issue replacement leaves
    (``lab`` and ``alt`` are two independent publicly-trusted-style hierarchies)."""

    pki: PKI
    issuers: dict[str, CA] = field(default_factory=dict)
    roots: dict[str, CA] = field(default_factory=dict)
    extra: dict[str, CA] = field(default_factory=dict)

    @property
    def now(self) -> dt.datetime:
        return self.pki.now


def name(label: str) -> str:
    return f"{label}.{DOMAIN}"


def build_world(now: dt.datetime | None = None) -> World:
    """Every hierarchy the scenarios use, dated around ``now`` (default: the current time)."""
    pki = PKI(now=now) if now is not None else PKI()
    t = pki.now
    days = dt.timedelta(days=1)
    w = World(pki)
    # Two independent "public" hierarchies (renewals, CA_CHANGED swaps) and an RSA issuer
    # (SHA-1 signatures need an RSA signer).
    w.roots["lab"] = pki.root("Chainwatch Lab Root CA")
    w.issuers["lab"] = w.roots["lab"].intermediate("Chainwatch Lab TLS CA")
    w.roots["alt"] = pki.root("Chainwatch Lab Alt Root CA")
    w.issuers["alt"] = w.roots["alt"].intermediate("Chainwatch Lab Alt TLS CA")
    w.issuers["rsa"] = w.roots["lab"].intermediate("Chainwatch Lab RSA CA", key="rsa2048")
    # Hourfleet: the back-ends trust only the old corporate hierarchy; the renewal came
    # from a new vendor's.
    w.roots["old-corp"] = pki.root("Lab Old Corp Root CA")
    w.issuers["old-corp"] = w.roots["old-corp"].intermediate("Lab Old Corp TLS CA")
    w.roots["new-vendor"] = pki.root("Lab New Vendor Root CA")
    w.issuers["new-vendor"] = w.roots["new-vendor"].intermediate("Lab New Vendor TLS CA")
    # DST Root CA X3 style: X1 cross-signed by an old root that expires in 3 days; the
    # cross-sign itself outlives the root, as Let's Encrypt's did.
    w.roots["dst-old"] = pki.root("Lab DST-style Root X3", not_before=t - 7000 * days,
                                  expires=t + 3 * days)
    w.roots["x1"] = pki.root("Lab ISRG-style Root X1", not_before=t - 2000 * days,
                             expires=t + 5000 * days)
    w.extra["x1-by-old"] = w.roots["x1"].cross_signed_by(
        w.roots["dst-old"], not_before=t - 300 * days, expires=t + 1000 * days
    )
    w.issuers["x1"] = w.roots["x1"].intermediate("Lab R3-style CA", not_before=t - 400 * days,
                                                 expires=t + 1000 * days)
    # AddTrust style: the old root and its cross-sign of USERTrust expired 2 days ago and
    # the server still sends both.
    w.roots["addtrust"] = pki.root("Lab AddTrust-style External Root",
                                   not_before=t - 7300 * days, expires=t - 2 * days)
    w.roots["usertrust"] = pki.root("Lab USERTrust-style RSA CA", not_before=t - 3700 * days,
                                    expires=t + 4000 * days)
    w.extra["usertrust-by-addtrust"] = w.roots["usertrust"].cross_signed_by(
        w.roots["addtrust"], not_before=t - 7300 * days, expires=t - 2 * days
    )
    w.issuers["usertrust"] = w.roots["usertrust"].intermediate(
        "Lab Sectigo-style DV CA", not_before=t - 600 * days, expires=t + 2000 * days
    )
    return w


def trust_bundles(w: World) -> tuple[TrustBundle, ...]:
    """The stores the inventory's profiles are built on."""
    r = w.roots
    lab_roots = tuple(r[k].cert for k in ("lab", "alt", "old-corp", "new-vendor", "dst-old",
                                          "x1", "addtrust", "usertrust"))
    return (
        TrustBundle("lab", "lab-roots.pem", lab_roots, "modern",
                    "the lab's public roots, as a browser or a current OS trusts them "
                    "(the lab's 'mozilla')"),
        TrustBundle("legacy-clients", "lab-roots.pem", lab_roots, "legacy",
                    "the same roots with OpenSSL 1.0.x path building (no backtracking)"),
        TrustBundle("backend", "backend.pem", (r["old-corp"].cert,), "modern",
                    "a back-end's CA file that holds only the old corporate hierarchy"),
        TrustBundle("old-devices", "old-devices.pem",
                    (r["lab"].cert, r["dst-old"].cert, r["addtrust"].cert), "modern",
                    "devices whose store was frozen years ago: neither X1 nor USERTrust"),
    )


def _leaf(ca: CA, sni: str, now: dt.datetime, *, issued: int = 1, expires: int = 90,
          key: str = "ec256", sha1: bool = False) -> Leaf:
    return ca.leaf(sni, not_before=now - dt.timedelta(days=issued),
                   expires=now + dt.timedelta(days=expires), key=key, sha1=sha1)


def _served(leaf: Leaf, *cas: CA | Cert, hierarchy: str) -> Served:
    return Served(leaf.chain(*cas), leaf.key, hierarchy)


def build_scenarios(w: World, *, second_address: bool = True) -> tuple[Scenario, ...]:
    """The lab's endpoints, one scenario per port. ``second_address``: include the
    stale-deployment site on the lab's second loopback address."""
    now = w.now
    i = w.issuers
    lab = i["lab"]
    std = ("lab", "legacy-clients", "old-devices")
    ok = Status.OK
    crit = Status.CRITICAL

    def codes(*c: str) -> frozenset[str]:
        return frozenset(c)

    def simple(scenario: str, incident: str, label: str, served: Served,
               status: Status, found: frozenset[str], description: str,
               profiles: tuple[str, ...] = ("lab",), starttls: str | None = None,
               lifetime: int = 90) -> Scenario:
        site = Site(scenario, name(label), served, profiles, status, found, description,
                    lifetime=lifetime)
        return Scenario(scenario, incident, (site,), starttls)

    healthy = _leaf(lab, name("healthy"), now)
    expired = _leaf(lab, name("crates"), now, issued=91, expires=-1)
    soon = _leaf(lab, name("soon"), now, issued=85, expires=5)
    due = _leaf(lab, name("due"), now, issued=70, expires=20)
    hourfleet = _leaf(i["new-vendor"], name("api.hourfleet"), now, expires=365)
    dst = _leaf(i["x1"], name("devices.netpark"), now, issued=10, expires=80)
    addtrust = _leaf(i["usertrust"], name("shop.addtrust"), now, issued=200, expires=165)
    www = _leaf(lab, name("www.hellosign"), now, issued=30, expires=300)
    app = _leaf(i["alt"], name("app.hellosign"), now, issued=88, expires=2)
    logdna = _leaf(i["usertrust"], name("app.logdna"), now, issued=30, expires=335)
    wrong = _leaf(lab, name("other"), now)
    self_signed = w.pki.self_signed_leaf(name("self-signed"),
                                         expires=now + dt.timedelta(days=90))
    incomplete = _leaf(lab, name("incomplete-chain"), now)
    sha1 = _leaf(i["rsa"], name("sha1"), now, sha1=True)
    rsa1024 = _leaf(lab, name("rsa1024"), now, key="rsa1024")
    mail = _leaf(lab, name("mail"), now)
    fresh = _leaf(lab, name("stale"), now, issued=2, expires=88)
    stale = _leaf(lab, name("stale"), now, issued=80, expires=10)

    scenarios = [
        simple("healthy", "control", "healthy", _served(healthy, lab, hierarchy="lab"),
               ok, codes(), "a correct chain from the lab CA, valid for 90 days", std),
        simple("crates-expired", "crates.io 2016", "crates",
               _served(expired, lab, hierarchy="lab"), crit,
               codes("LEAF_EXPIRED"),
               "the renewed certificate was never installed: the served leaf expired a "
               "day ago"),
        simple("expiring-5d", "crates.io 2016", "soon", _served(soon, lab, hierarchy="lab"),
               crit, codes("EXPIRES_SOON"),
               "the leaf expires in 5 days (under crit_days: page now)"),
        simple("expiring-20d", "crates.io 2016", "due", _served(due, lab, hierarchy="lab"),
               Status.WARNING, codes("EXPIRES_SOON"),
               "the leaf expires in 20 days (under warn_days: ticket or notify)"),
        simple("hourfleet", "Hourfleet 2019", "api.hourfleet",
               _served(hourfleet, i["new-vendor"], hierarchy="new-vendor"), crit,
               codes("UNTRUSTED"),
               "renewed from a new CA hierarchy: publicly trusted, but the back-ends "
               "(profile backend) trust only the old corporate root",
               ("lab", "backend"), lifetime=365),
        simple("dst-cross-sign", "netPark 2021 (DST Root CA X3)", "devices.netpark",
               _served(dst, i["x1"], w.extra["x1-by-old"], hierarchy="x1"), crit,
               codes("PROFILE_BREAKS", "EXPIRES_SOON"),
               "leaf <- R3 <- X1 cross-signed by an old root that expires in 3 days: "
               "modern clients go on via X1, legacy ones and old devices break",
               std),
        simple("addtrust-cross-sign", "LogDNA 2020 (AddTrust)", "shop.addtrust",
               _served(addtrust, i["usertrust"], w.extra["usertrust-by-addtrust"],
                       w.roots["addtrust"].cert, hierarchy="usertrust"), crit,
               codes("UNTRUSTED", "EXPIRED_CERT_SENT"),
               "the AddTrust-style root and its cross-sign of USERTrust expired 2 days "
               "ago and are still served: OpenSSL 1.0.x path building fails",
               ("lab", "legacy-clients"), lifetime=365),
        Scenario("hellosign", "HelloSign 2017", (
            Site("hellosign-www", name("www.hellosign"), _served(www, lab, hierarchy="lab"),
                 ("lab",), ok, codes(),
                 "www.* (the name everyone watched) has a healthy certificate",
                 lifetime=365),
            Site("hellosign-app", name("app.hellosign"),
                 _served(app, i["alt"], hierarchy="alt"), ("lab",), crit,
                 codes("EXPIRES_SOON"),
                 "app.* on the same port has its own certificate, expiring in 2 days"),
        )),
        simple("logdna-missing-intermediate", "LogDNA 2020", "app.logdna",
               _served(logdna, hierarchy="usertrust"), crit, codes("CHAIN_INCOMPLETE"),
               "the server sends the leaf without its intermediate", lifetime=365),
        simple("wrong-host", "badssl: wrong.host", "wrong.host",
               _served(wrong, lab, hierarchy="lab"), crit, codes("HOSTNAME_MISMATCH"),
               f"serves a certificate for {name('other')}"),
        simple("self-signed", "badssl: self-signed", "self-signed",
               Served(self_signed.chain(), self_signed.key, "self-signed"), crit,
               codes("SELF_SIGNED_LEAF", "UNTRUSTED"), "a self-signed leaf"),
        simple("incomplete-chain", "badssl: incomplete-chain", "incomplete-chain",
               _served(incomplete, w.roots["lab"], hierarchy="lab"), crit,
               codes("CHAIN_INCOMPLETE"),
               "sends the leaf and the root but not the intermediate between them"),
        simple("sha1", "badssl: sha1-intermediate", "sha1",
               _served(sha1, i["rsa"], hierarchy="rsa"), crit,
               codes("WEAK_SIGNATURE", "UNTRUSTED"),
               "the leaf is signed with SHA-1 (current clients refuse it)"),
        simple("rsa1024", "badssl: rsa1024", "rsa1024",
               _served(rsa1024, lab, hierarchy="lab"), crit,
               codes("WEAK_KEY", "UNTRUSTED"),
               "the leaf has a 1024-bit RSA key (current clients refuse it)"),
        simple("smtp-starttls", "STARTTLS", "mail", _served(mail, lab, hierarchy="lab"),
               ok, codes(), "SMTP with STARTTLS and a healthy chain", starttls="smtp"),
    ]
    stale_sites = [
        Site("stale", name("stale"), _served(fresh, lab, hierarchy="lab"), ("lab",), ok,
             codes(), "one name on two addresses: this one serves the renewed certificate"),
    ]
    if second_address:
        stale_sites.append(Site(
            "stale", name("stale"), _served(stale, lab, hierarchy="lab"), ("lab",),
            Status.WARNING, codes("EXPIRES_SOON"),
            "the same name on the second address still serves the old certificate "
            "(expires in 10 days): a stale deployment", slot=1,
        ))
    scenarios.append(Scenario("stale", "HelloSign 2017 / crates.io 2016", tuple(stale_sites)))
    return tuple(scenarios)


def issue(w: World, hierarchy: str, sni: str, *, days: int = 90) -> Served:
    """A fresh leaf for ``sni`` from ``hierarchy`` (a key of ``w.issuers``), valid from
    now for ``days`` days, with its intermediate."""
    ca = w.issuers[hierarchy]
    # A hierarchy swap or a renewal happens while the lab runs: date it by the clock.
    now = dt.datetime.now(dt.UTC).replace(microsecond=0)
    leaf = ca.leaf(sni, not_before=now - dt.timedelta(minutes=5),
                   expires=now + dt.timedelta(days=days))
    return Served(leaf.chain(ca), leaf.key, hierarchy)


def bundles_by_profile(bundles: tuple[TrustBundle, ...]) -> Mapping[str, TrustBundle]:
    return {b.profile: b for b in bundles}
