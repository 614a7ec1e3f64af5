"""Time-independent acceptance rules for one candidate path (RFC 5280 + Web PKI basics).

Each rule is a small function ``(path, ctx) -> str | None`` returning a human reason
when the path is unacceptable. :func:`path_violation` runs them in order and returns
the first reason. Time (validity periods) is *not* checked here: the forecast needs
to evaluate the same path at many instants, so validity is handled by the caller.

What is deliberately not checked is listed in ``docs/conformance.md``.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from cryptography import x509
from cryptography.x509.oid import ExtensionOID

from chainwatch.analysis.hostname import normalize_dns
from chainwatch.model import Cert, NameKey, name_key

_HANDLED_CRITICAL = frozenset(
    oid.dotted_string
    for oid in (
        ExtensionOID.BASIC_CONSTRAINTS,
        ExtensionOID.KEY_USAGE,
        ExtensionOID.EXTENDED_KEY_USAGE,
        ExtensionOID.SUBJECT_ALTERNATIVE_NAME,
        ExtensionOID.NAME_CONSTRAINTS,
        ExtensionOID.CERTIFICATE_POLICIES,
        ExtensionOID.POLICY_CONSTRAINTS,
        ExtensionOID.INHIBIT_ANY_POLICY,
        ExtensionOID.POLICY_MAPPINGS,
    )
)
_NEVER_CRITICAL = frozenset(
    oid.dotted_string
    for oid in (
        ExtensionOID.AUTHORITY_KEY_IDENTIFIER,
        ExtensionOID.SUBJECT_KEY_IDENTIFIER,
        ExtensionOID.AUTHORITY_INFORMATION_ACCESS,
    )
)


@dataclass(frozen=True)
class PolicyOptions:
    """Which client behaviour the rules model.

    ``reject_weak``: modern clients refuse SHA-1/MD5 signatures on non-anchors and
    RSA < 2048, EC < 256, DSA keys anywhere on the path; OpenSSL 1.0.x accepted them.
    """

    reject_weak: bool = True


Rule = Callable[[Sequence[Cert], PolicyOptions], "str | None"]


def _well_formed(path: Sequence[Cert], opts: PolicyOptions) -> str | None:
    for cert in path:
        if cert.extensions is None:
            return f"{cert.subject!r} has malformed or duplicate extensions"
        if cert.parsed.version is not x509.Version.v3 and cert is not path[-1]:
            return f"{cert.subject!r} is an X.509 v1/v2 certificate"
        for oid, ext in cert.extensions.items():
            if ext.critical and oid in _NEVER_CRITICAL:
                return f"{cert.subject!r} marks {ext.oid._name} critical"
            if ext.critical and oid not in _HANDLED_CRITICAL:
                return f"{cert.subject!r} has an unknown critical extension {oid}"
    return None


def _issuers_are_cas(path: Sequence[Cert], opts: PolicyOptions) -> str | None:
    for cert in path[1:]:
        bc = cert.basic_constraints
        if bc is None or not bc.ca:
            return f"{cert.subject!r} issues certificates but is not a CA (basicConstraints)"
        ku = _key_usage(cert)
        if ku is not None and not ku.key_cert_sign:
            return f"{cert.subject!r} issues certificates without keyCertSign in keyUsage"
    return None


def _path_length(path: Sequence[Cert], opts: PolicyOptions) -> str | None:
    # path[0] is the leaf; for the CA at index i, the intermediates below it are 1..i-1.
    for i in range(1, len(path)):
        bc = path[i].basic_constraints
        if bc is None or bc.path_length is None:
            continue
        below = sum(1 for c in path[1:i] if not c.self_issued)
        if below > bc.path_length:
            return (
                f"{path[i].subject!r} allows {bc.path_length} intermediates below it, "
                f"has {below}"
            )
    return None


def _leaf_usage(path: Sequence[Cert], opts: PolicyOptions) -> str | None:
    leaf = path[0]
    if len(path) > 1 and leaf.is_ca:
        return "the leaf is a CA certificate (basicConstraints cA=true)"
    if not leaf.server_auth_allowed:
        return "the leaf's extendedKeyUsage does not allow serverAuth"
    ku = _key_usage(leaf)
    if ku is not None and ku.key_cert_sign and not leaf.is_ca and len(path) > 1:
        return "the leaf asserts keyCertSign without being a CA"
    return None


def _weak_crypto(path: Sequence[Cert], opts: PolicyOptions) -> str | None:
    if not opts.reject_weak:
        return None
    for cert in path[:-1]:
        if cert.weak_signature:
            return (
                f"{cert.subject!r} is signed with {cert.signature_hash}, "
                "refused by modern clients"
            )
    for cert in path:
        algo, bits = cert.key_description
        if algo == "RSA" and (bits < 2048 or bits % 8):
            return f"{cert.subject!r} has a {bits}-bit RSA key, refused by modern clients"
        if algo == "EC" and bits < 256:
            return f"{cert.subject!r} has a {bits}-bit EC key, refused by modern clients"
        if algo in {"DSA", "unknown"}:
            return f"{cert.subject!r} has a {algo} key, refused by modern clients"
    return None


def _name_constraints(path: Sequence[Cert], opts: PolicyOptions) -> str | None:
    for i in range(1, len(path)):
        ext = path[i].ext(ExtensionOID.NAME_CONSTRAINTS)
        if ext is None or not isinstance(ext.value, x509.NameConstraints):
            continue
        nc = ext.value
        if not nc.permitted_subtrees and not nc.excluded_subtrees:
            return f"{path[i].subject!r} has empty name constraints"
        for j in range(i):
            cert = path[j]
            if j > 0 and cert.self_issued:
                continue
            reason = _check_names(cert, nc, leaf=j == 0)
            if reason:
                return f"{cert.subject!r}: {reason} (name constraints of {path[i].subject!r})"
    return None


RULES: tuple[Rule, ...] = (
    _well_formed,
    _issuers_are_cas,
    _leaf_usage,
    _path_length,
    _name_constraints,
    _weak_crypto,
)


def path_violation(path: Sequence[Cert], opts: PolicyOptions) -> str | None:
    """The first reason ``path`` (leaf → anchor) is unacceptable, or ``None``."""
    for rule in RULES:
        reason = rule(path, opts)
        if reason:
            return reason
    return None


# -- helpers ---------------------------------------------------------------------------


def _key_usage(cert: Cert) -> x509.KeyUsage | None:
    ext = cert.ext(ExtensionOID.KEY_USAGE)
    return ext.value if ext is not None and isinstance(ext.value, x509.KeyUsage) else None


def _dns_in_subtree(name: str, base: str) -> bool:
    base_n = normalize_dns(base.lstrip("."))
    name_n = normalize_dns(name)
    if base_n is None or name_n is None:
        return False
    return name_n == base_n or name_n.endswith("." + base_n)


def _dn_in_subtree(name: NameKey, base: NameKey) -> bool:
    return name[: len(base)] == base


def _check_names(cert: Cert, nc: x509.NameConstraints, *, leaf: bool) -> str | None:
    dns = list(cert.dns_names)
    ips = list(cert.ip_addresses)
    subject = cert.subject_key
    permitted = nc.permitted_subtrees or []
    excluded = nc.excluded_subtrees or []
    for sub in excluded:
        if isinstance(sub, x509.DNSName) and any(_dns_in_subtree(n, sub.value) for n in dns):
            return f"DNS name excluded by {sub.value!r}"
        if isinstance(sub, x509.IPAddress) and isinstance(
            sub.value, ipaddress.IPv4Network | ipaddress.IPv6Network
        ):
            net = sub.value
            if any(ip.version == net.version and ip in net for ip in ips):
                return f"IP address excluded by {net}"
        if isinstance(sub, x509.DirectoryName) and subject and _dn_in_subtree(
            subject, name_key(sub.value)
        ):
            return "subject excluded by a directoryName constraint"
    p_dns = [s.value for s in permitted if isinstance(s, x509.DNSName)]
    p_ip = [s.value for s in permitted if isinstance(s, x509.IPAddress)]
    p_dn = [name_key(s.value) for s in permitted if isinstance(s, x509.DirectoryName)]
    if p_dns:
        for n in dns:
            if not any(_dns_in_subtree(n, b) for b in p_dns):
                return f"DNS name {n!r} outside permitted subtrees"
    if p_ip:
        for ip in ips:
            if not any(
                isinstance(net, ipaddress.IPv4Network | ipaddress.IPv6Network)
                and ip.version == net.version
                and ip in net
                for net in p_ip
            ):
                return f"IP address {ip} outside permitted subtrees"
    if p_dn and subject and not any(_dn_in_subtree(subject, b) for b in p_dn):
        return "subject outside permitted directoryName subtrees"
    return None
