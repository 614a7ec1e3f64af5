"""Time-independent acceptance rules for one candidate path (RFC 5280 + Web PKI basics).

Each rule is a small function ``(path, ctx) -> Violation | None`` returning what makes
the path unacceptable for the client behaviour in ``ctx``. :func:`path_violation` runs
them in order and returns the first. Time (validity periods) is *not* checked here: the
forecast needs to evaluate the same path at many instants, so validity is handled by the
caller.

The rules model what deployed clients (browsers, Go, OpenSSL) enforce, not every
"MUST" a CA has to follow: a certificate-profile rule that no client checks (a missing
authorityKeyIdentifier, a common name that is not a copy of a SAN entry) would make
chainwatch predict outages that never happen. What is deliberately not checked, and
why, is listed in ``docs/conformance.md``.

Purpose (extendedKeyUsage) along the path: the leaf must allow serverAuth for every
behaviour. A CA certificate must too when the behaviour enforces it
(:attr:`~chainwatch.model.Behaviour.intermediate_eku_enforced`, and for the anchor
:attr:`~chainwatch.model.Behaviour.anchor_eku_enforced`): an email-only intermediate is
refused by Chrome, Firefox, Go, rustls and OpenSSL (``-purpose sslserver``, 1.0.2
included). OpenSSL 1.0.x only purpose-checks the certificates it was sent
(``check_chain_extensions`` loops over ``ctx->last_untrusted``), so an anchor's EKU
never counts for ``legacy``; OpenSSL >= 1.1.0 checks the trusted certificates too unless
auxiliary trust settings (``TRUSTED CERTIFICATE``) say otherwise, and Go's
``checkChainForKeyUsage`` includes the root, so ``modern`` enforces it on the anchor.
A CA passes when its EKU is absent or lists serverAuth, anyExtendedKeyUsage or a Server
Gated Crypto purpose (OpenSSL's ``XKU_SGC``, Go's ``ExtKeyUsage*ServerGatedCrypto``).
OpenSSL alone is stricter than this about anyExtendedKeyUsage on a CA (it wants
serverAuth or SGC): such intermediates are rare, and Go and the browsers accept them.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from urllib.parse import urlsplit

from cryptography import x509
from cryptography.x509.oid import ExtensionOID

from chainwatch.analysis.hostname import normalize_dns
from chainwatch.model import Behaviour, Cert, NameKey, PathError, name_key

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

NAME_CHECK_MAX = 1 << 20
"""Most (name x constraint) comparisons allowed for one certificate under one CA's name
constraints, as OpenSSL bounds it (``NAME_CHECK_MAX``); Go's bound is of the same order.
Beyond it clients refuse the certificate rather than risk a quadratic blow-up."""


@dataclass(frozen=True)
class Violation:
    """Why a path is unacceptable: the JSON ``error`` it maps to and one human sentence."""

    error: PathError
    reason: str


@dataclass(frozen=True)
class CertFacts:
    """What the rules derive from one certificate alone, wherever it sits on a path
    (memoised per certificate by the :class:`~chainwatch.analysis.Analyzer`: the same CA
    certificates recur in thousands of chains)."""

    defect: str | None
    """What makes the certificate unusable anywhere on a path, or ``None``."""
    explicit_curve: bool
    """An EC key encoded with explicit curve parameters."""


def cert_facts(cert: Cert) -> CertFacts:
    """The :class:`CertFacts` of ``cert`` (pure; the analyzer memoises it)."""
    return CertFacts(defect=_defect(cert), explicit_curve=_explicit_curve(cert))


@dataclass(frozen=True)
class RuleContext:
    """What a rule may consult besides the path: the behaviour it models, where the
    trusted part of the path starts, and the per-certificate facts."""

    behaviour: Behaviour
    anchor_index: int
    facts: Callable[[Cert], CertFacts]


Rule = Callable[[Sequence[Cert], RuleContext], "Violation | None"]


def _other(reason: str) -> Violation:
    return Violation(PathError.OTHER, reason)


def _depth(path: Sequence[Cert], ctx: RuleContext) -> Violation | None:
    limit = ctx.behaviour.max_depth
    if len(path) <= limit:
        return None
    return _other(
        f"path longer than {limit} certificates: leaf to anchor it has {len(path)}, and "
        f"{ctx.behaviour.name} clients stop building at {limit}"
    )


def _well_formed(path: Sequence[Cert], ctx: RuleContext) -> Violation | None:
    for cert in path:
        defect = ctx.facts(cert).defect
        if defect:
            return _other(f"{cert.subject!r} {defect}")
        if cert.parsed.version is not x509.Version.v3 and cert is not path[-1]:
            return _other(f"{cert.subject!r} is an X.509 v1/v2 certificate")
    return None


def _defect(cert: Cert) -> str | None:
    """What makes ``cert`` unusable wherever it sits on a path."""
    if cert.extensions is None:
        return "has malformed or duplicate extensions"
    for oid, ext in cert.extensions.items():
        if ext.critical and oid in _NEVER_CRITICAL:
            return f"marks {ext.oid._name} critical"
        if ext.critical and oid not in _HANDLED_CRITICAL:
            return f"has an unknown critical extension {oid}"
    san = _san(cert)
    if san is not None and any(
        isinstance(name, x509.IPAddress)
        and isinstance(name.value, ipaddress.IPv4Network | ipaddress.IPv6Network)
        for name in san
    ):
        # An iPAddress SAN is 4 or 16 bytes; 8 or 32 (an address and a mask) is only
        # valid in name constraints. Go and Chrome refuse to parse such a certificate.
        return "has a malformed iPAddress subjectAltName (a network)"
    return None


def _names_present(path: Sequence[Cert], ctx: RuleContext) -> Violation | None:
    """RFC 5280 4.1.2.4/4.1.2.6: issuers are named; a CA has a subject; an end entity
    without a subject identifies itself by a critical subjectAltName."""
    for i, cert in enumerate(path):
        if not cert.issuer_key:
            return _other(f"{cert.subject!r} has an empty issuer name")
        if cert.subject_key:
            continue
        if i > 0:
            return _other(
                f"the CA certificate that issued {path[i - 1].subject!r} has an empty subject"
            )
        ext = cert.ext(ExtensionOID.SUBJECT_ALTERNATIVE_NAME)
        if ext is None:
            return _other("the leaf has an empty subject and no subjectAltName")
        if not ext.critical:
            return _other("the leaf has an empty subject but a non-critical subjectAltName")
    return None


def _issuers_are_cas(path: Sequence[Cert], ctx: RuleContext) -> Violation | None:
    for cert in path[1:]:
        if cert is path[-1] and cert.parsed.version is x509.Version.v1:
            # A v1 anchor cannot carry basicConstraints; OpenSSL and NSS treat it as a CA
            # (old store roots such as VeriSign's Class 3 PCA are v1).
            continue
        bc = cert.basic_constraints
        if bc is None or not bc.ca:
            return _other(
                f"{cert.subject!r} issues certificates but is not a CA (basicConstraints)"
            )
        ku = _key_usage(cert)
        if ku is not None and not ku.key_cert_sign:
            return _other(f"{cert.subject!r} issues certificates without keyCertSign in keyUsage")
    return None


def _path_length(path: Sequence[Cert], ctx: RuleContext) -> Violation | None:
    # path[0] is the leaf; for the CA at index i, the intermediates below it are 1..i-1.
    for i in range(1, len(path)):
        bc = path[i].basic_constraints
        if bc is None or bc.path_length is None:
            continue
        below = sum(1 for c in path[1:i] if not c.self_issued)
        if below > bc.path_length:
            return _other(
                f"{path[i].subject!r} allows {bc.path_length} intermediates below it, "
                f"has {below}"
            )
    return None


def _leaf_usage(path: Sequence[Cert], ctx: RuleContext) -> Violation | None:
    leaf = path[0]
    if len(path) > 1 and leaf.is_ca:
        return _other("the leaf is a CA certificate (basicConstraints cA=true)")
    if not leaf.server_auth_allowed:
        return Violation(
            PathError.PURPOSE,
            f"the leaf {leaf.subject!r} has extendedKeyUsage {leaf.eku_text}, "
            "without serverAuth",
        )
    ku = _key_usage(leaf)
    if ku is not None and ku.key_cert_sign and not leaf.is_ca and len(path) > 1:
        return _other("the leaf asserts keyCertSign without being a CA")
    return None


def _ca_purpose(path: Sequence[Cert], ctx: RuleContext) -> Violation | None:
    """Every CA on the path allows serverAuth, as far as the behaviour checks: the
    certificates below the trusted part when it enforces intermediates' EKU, the trusted
    part (the anchor) when it enforces the anchor's."""
    behaviour = ctx.behaviour
    for i in range(1, len(path)):
        trusted = i >= ctx.anchor_index
        if not (behaviour.anchor_eku_enforced if trusted else behaviour.intermediate_eku_enforced):
            continue
        cert = path[i]
        if cert.ca_server_auth_allowed:
            continue
        role = "anchor" if trusted else "intermediate"
        return Violation(
            PathError.PURPOSE,
            f"the {role} {cert.subject!r} has extendedKeyUsage {cert.eku_text}, without "
            f"serverAuth: {behaviour.name} clients refuse it on a TLS server's path",
        )
    return None


def _weak_crypto(path: Sequence[Cert], ctx: RuleContext) -> Violation | None:
    behaviour = ctx.behaviour
    if not behaviour.sha1_accepted:
        for cert in path[:-1]:
            if cert.weak_signature:
                return _other(
                    f"{cert.subject!r} is signed with {cert.signature_hash}, "
                    f"refused by {behaviour.name} clients"
                )
    if behaviour.weak_keys_accepted:
        return None
    for cert in path:
        algo, bits = cert.key_description
        if algo == "RSA" and (bits < 2048 or bits % 8):
            return _other(
                f"{cert.subject!r} has a {bits}-bit RSA key, refused by {behaviour.name} clients"
            )
        if algo == "EC" and bits < 256:
            return _other(
                f"{cert.subject!r} has a {bits}-bit EC key, refused by {behaviour.name} clients"
            )
        if algo in {"DSA", "unknown"}:
            return _other(
                f"{cert.subject!r} has a {algo} key, refused by {behaviour.name} clients"
            )
        if algo == "EC" and ctx.facts(cert).explicit_curve:
            return _other(
                f"{cert.subject!r} encodes its EC key with explicit curve parameters, "
                f"refused by {behaviour.name} clients"
            )
    return None


def _name_constraints(path: Sequence[Cert], ctx: RuleContext) -> Violation | None:
    for i in range(1, len(path)):
        ext = path[i].ext(ExtensionOID.NAME_CONSTRAINTS)
        if ext is None or not isinstance(ext.value, x509.NameConstraints):
            continue
        nc = ext.value
        if not nc.permitted_subtrees and not nc.excluded_subtrees:
            return _other(f"{path[i].subject!r} has empty name constraints")
        for j in range(i):
            cert = path[j]
            if j > 0 and cert.self_issued:
                continue
            reason = _check_names(cert, nc)
            if reason:
                return _other(
                    f"{cert.subject!r}: {reason} (name constraints of {path[i].subject!r})"
                )
    return None


RULES: tuple[Rule, ...] = (
    _depth,
    _well_formed,
    _names_present,
    _issuers_are_cas,
    _leaf_usage,
    _ca_purpose,
    _path_length,
    _name_constraints,
    _weak_crypto,
)


def path_violation(
    path: Sequence[Cert],
    behaviour: Behaviour,
    *,
    anchor_index: int | None = None,
    facts: Callable[[Cert], CertFacts] = cert_facts,
) -> Violation | None:
    """The first reason ``path`` (leaf → anchor) is unacceptable to clients of
    ``behaviour``, or ``None``. ``anchor_index``: where the trusted part starts (default:
    the last certificate); ``facts``: per-certificate facts (pass a memoised lookup)."""
    ctx = RuleContext(
        behaviour, len(path) - 1 if anchor_index is None else anchor_index, facts
    )
    for rule in RULES:
        violation = rule(path, ctx)
        if violation is not None:
            return violation
    return None


# -- helpers ---------------------------------------------------------------------------


def _key_usage(cert: Cert) -> x509.KeyUsage | None:
    ext = cert.ext(ExtensionOID.KEY_USAGE)
    return ext.value if ext is not None and isinstance(ext.value, x509.KeyUsage) else None


def _san(cert: Cert) -> x509.SubjectAlternativeName | None:
    ext = cert.ext(ExtensionOID.SUBJECT_ALTERNATIVE_NAME)
    return ext.value if ext is not None and isinstance(
        ext.value, x509.SubjectAlternativeName
    ) else None


_ID_EC_PUBLIC_KEY = bytes.fromhex("06072a8648ce3d0201")
_DER_OID = 0x06


def _der_element(data: bytes, pos: int) -> tuple[int, int]:
    """(start, end) of the value of the DER element at ``pos``."""
    length = data[pos + 1]
    pos += 2
    if length & 0x80:
        size = length & 0x7F
        length = int.from_bytes(data[pos : pos + size], "big")
        pos += size
    return pos, pos + length


def _explicit_curve(cert: Cert) -> bool:
    """The SubjectPublicKeyInfo is id-ecPublicKey with parameters other than a named curve
    (specifiedCurve or implicitCA). ``cryptography`` maps explicit parameters of a known
    curve to that curve, so this reads the DER: TBSCertificate → subjectPublicKeyInfo
    → algorithm → parameters."""
    tbs = cert.parsed.tbs_certificate_bytes
    try:
        pos, _ = _der_element(tbs, 0)
        if tbs[pos] == 0xA0:  # [0] EXPLICIT version
            pos = _der_element(tbs, pos)[1]
        for _ in range(5):  # serialNumber, signature, issuer, validity, subject
            pos = _der_element(tbs, pos)[1]
        spki, _ = _der_element(tbs, pos)
        alg, alg_end = _der_element(tbs, spki)
        oid_end = _der_element(tbs, alg)[1]
        if tbs[alg:oid_end] != _ID_EC_PUBLIC_KEY:
            return False
        return oid_end >= alg_end or tbs[oid_end] != _DER_OID
    except IndexError:  # cryptography parsed it, so this cannot happen; fail open
        return False


def _dns_labels_ok(name: str) -> bool:
    """A dNSName a name-constraint check can compare: printable ASCII, no empty label
    (so no leading, trailing or doubled dot). Go refuses a constrained certificate whose
    names (or email addresses) fail this, rather than guess what they mean."""
    return bool(name) and all(
        label and all(33 <= ord(ch) <= 126 for ch in label) for label in name.split(".")
    )


def _mailbox_ok(address: str) -> bool:
    """``local@domain`` with one unquoted ``@`` and a well-formed domain."""
    local, at, domain = address.rpartition("@")
    return bool(at and local) and _dns_labels_ok(domain) and (
        "@" not in local or (local.startswith('"') and local.endswith('"'))
    )


def _dns_in_subtree(name: str, base: str) -> bool:
    base_n = normalize_dns(base.lstrip("."))
    name_n = normalize_dns(name)
    if base_n is None or name_n is None:
        return False
    return name_n == base_n or name_n.endswith("." + base_n)


def _wildcard_may_match(name: str, base: str) -> bool:
    """A wildcard SAN (``*.example.com``) would cover some host inside the subtree ``base``
    (``bar.example.com``) without being inside it itself (CVE-2025-61727): for an
    exclusion, that is as bad as naming the excluded host."""
    if not name.startswith("*."):
        return False
    base_n = normalize_dns(base.lstrip("."))
    name_n = normalize_dns(name)
    if base_n is None or name_n is None or "." not in base_n:
        return False
    return base_n.split(".", 1)[1] == name_n[2:]


def _dn_in_subtree(name: NameKey, base: NameKey) -> bool:
    return name[: len(base)] == base


def _email_in_subtree(address: str, base: str) -> bool:
    """RFC 5280 4.2.1.10 rfc822Name constraints: a mailbox, a host, or ``.domain``."""
    if "@" in base:
        return address.casefold() == base.casefold()
    host = address.rpartition("@")[2]
    if base.startswith("."):
        return _dns_in_subtree(host, base) and normalize_dns(host) != normalize_dns(base[1:])
    return normalize_dns(host) == normalize_dns(base)


def _uri_in_subtree(uri: str, base: str) -> bool:
    """RFC 5280 4.2.1.10 URI constraints apply to the host part (``host`` or ``.domain``)."""
    try:
        host = urlsplit(uri).hostname
    except ValueError:
        return False
    if not host:
        return False
    if base.startswith("."):
        return _dns_in_subtree(host, base) and normalize_dns(host) != normalize_dns(base[1:])
    return normalize_dns(host) == normalize_dns(base)


_CHECKED_TYPES: tuple[type[x509.GeneralName], ...] = (
    x509.DNSName,
    x509.IPAddress,
    x509.DirectoryName,
    x509.RFC822Name,
    x509.UniformResourceIdentifier,
)


def _ip_in(ip: object, nets: Iterable[object]) -> bool:
    return isinstance(ip, ipaddress.IPv4Address | ipaddress.IPv6Address) and any(
        isinstance(net, ipaddress.IPv4Network | ipaddress.IPv6Network)
        and ip.version == net.version
        and ip in net
        for net in nets
    )


def _check_names(cert: Cert, nc: x509.NameConstraints) -> str | None:
    permitted = nc.permitted_subtrees or []
    excluded = nc.excluded_subtrees or []
    san = _san(cert)
    names: list[x509.GeneralName] = list(san) if san is not None else []
    subject = cert.subject_key
    if (len(names) + len(subject)) * (len(permitted) + len(excluded)) > NAME_CHECK_MAX:
        return "too many names and name constraints to check"
    constrained = {type(s) for s in (*permitted, *excluded)}
    for name in names:
        if type(name) in constrained and not isinstance(name, _CHECKED_TYPES):
            return f"cannot check its {type(name).__name__} against constraints of that type"
        if isinstance(name, x509.DNSName) and not _dns_labels_ok(name.value):
            return f"malformed DNS name {name.value!r}"
        if isinstance(name, x509.RFC822Name) and not _mailbox_ok(name.value):
            return f"malformed email address {name.value!r}"
    return _check_excluded(cert, names, excluded) or _check_permitted(cert, names, permitted)


def _check_excluded(
    cert: Cert, names: Sequence[x509.GeneralName], excluded: Sequence[x509.GeneralName]
) -> str | None:
    for sub in excluded:
        for name in names:
            if _within(name, sub) or (
                isinstance(sub, x509.DNSName)
                and isinstance(name, x509.DNSName)
                and _wildcard_may_match(name.value, sub.value)
            ):
                return f"{_show(name)} excluded by {_show(sub)}"
        if isinstance(sub, x509.DirectoryName) and cert.subject_key and _dn_in_subtree(
            cert.subject_key, name_key(sub.value)
        ):
            return "subject excluded by a directoryName constraint"
    return None


def _check_permitted(
    cert: Cert, names: Sequence[x509.GeneralName], permitted: Sequence[x509.GeneralName]
) -> str | None:
    if not permitted:
        return None
    by_type: dict[type[x509.GeneralName], list[x509.GeneralName]] = {}
    for sub in permitted:
        by_type.setdefault(type(sub), []).append(sub)
    for name in names:
        subs = by_type.get(type(name))
        if subs is not None and not any(_within(name, sub) for sub in subs):
            return f"{_show(name)} outside permitted subtrees"
    dirs = by_type.get(x509.DirectoryName)
    if dirs and cert.subject_key and not any(
        _dn_in_subtree(cert.subject_key, name_key(sub.value))
        for sub in dirs
        if isinstance(sub, x509.DirectoryName)
    ):
        return "subject outside permitted directoryName subtrees"
    return None


def _within(name: x509.GeneralName, sub: x509.GeneralName) -> bool:
    """``name`` lies inside the subtree ``sub`` (``False`` when their types differ)."""
    if isinstance(name, x509.DNSName) and isinstance(sub, x509.DNSName):
        return _dns_in_subtree(name.value, sub.value)
    if isinstance(name, x509.IPAddress) and isinstance(sub, x509.IPAddress):
        return _ip_in(name.value, (sub.value,))
    if isinstance(name, x509.DirectoryName) and isinstance(sub, x509.DirectoryName):
        return _dn_in_subtree(name_key(name.value), name_key(sub.value))
    if isinstance(name, x509.RFC822Name) and isinstance(sub, x509.RFC822Name):
        return _email_in_subtree(name.value, sub.value)
    if isinstance(name, x509.UniformResourceIdentifier) and isinstance(
        sub, x509.UniformResourceIdentifier
    ):
        return _uri_in_subtree(name.value, sub.value)
    return False


def _show(name: x509.GeneralName) -> str:
    value = name.value
    if isinstance(value, x509.Name):
        return f"directoryName {value.rfc4514_string()!r}"
    return f"{type(name).__name__} {str(value)!r}"
