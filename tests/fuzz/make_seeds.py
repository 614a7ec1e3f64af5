"""Write the fuzzing seeds: ``python -m tests.fuzz.make_seeds`` (from the repository root).

Seeds are small valid (and nearly valid) inputs that let the fuzzer start deep inside
each parser. The revocation seeds are signed by the issuer in ``certs.pem`` (its key
is thrown away), so this rewrites ``certs.pem`` too. The PKCS#12 seeds need the
``openssl`` command. Inputs that once crashed a
harness are added to ``corpus/<harness>/`` by hand, named ``crash-...``; this script
leaves them alone.
"""

from __future__ import annotations

import datetime as dt
import subprocess
import tempfile
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.serialization import pkcs12
from cryptography.x509 import ocsp

from chainwatch.testing.pki import PKI, pem_of

HERE = Path(__file__).parent
CORPUS = HERE / "corpus"
AT = dt.datetime(2026, 3, 1, 12, tzinfo=dt.UTC)
HOUR = dt.timedelta(hours=1)


def write(harness: str, name: str, data: bytes) -> None:
    folder = CORPUS / harness
    folder.mkdir(parents=True, exist_ok=True)
    (folder / name).write_bytes(data)


def main() -> None:
    pki = PKI(now=AT)
    root = pki.root("Fuzz Root")
    issuer = root.intermediate("Fuzz CA")
    leaf = issuer.leaf("app.fuzz.test", "192.0.2.7")
    (HERE / "certs.pem").write_bytes(pem_of(issuer.cert, leaf.cert))

    # bundle
    write("bundle", "pem-chain", pem_of(leaf.cert, issuer.cert))
    write("bundle", "der-leaf", leaf.cert.der)
    write("bundle", "pem-trusted-and-key",
          pem_of(root.cert).replace(b"CERTIFICATE", b"TRUSTED CERTIFICATE")
          + b"-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n")
    write("bundle", "pem-truncated", pem_of(leaf.cert)[:200])
    write("bundle", "p12-plain", pkcs12.serialize_key_and_certificates(
        None, None, None, [leaf.cert.parsed], serialization.NoEncryption()))
    # Encrypted with the empty password (which the harness tries; cryptography's builder
    # wants one of at least a byte), 2 iterations to keep the fuzzer fast.
    with tempfile.TemporaryDirectory() as tmp:
        (Path(tmp) / "in.pem").write_bytes(pem_of(leaf.cert, issuer.cert) + leaf.key_pem())
        for name, options in (("p12-pbes2", []), ("p12-legacy-3des", ["-descert"])):
            out = Path(tmp) / name
            subprocess.run(["openssl", "pkcs12", "-export", "-in", str(Path(tmp) / "in.pem"),
                            "-passout", "pass:", "-iter", "2", "-out", str(out), *options],
                           check=True)
            write("bundle", name, out.read_bytes())

    # inventory
    write("inventory", "minimal.yaml", b"endpoints:\n  - www.example.com\n")
    write("inventory", "design.yaml", b"""\
defaults: {profiles: [mozilla], warn_days: 30, crit_days: 7, interval: 1h, timeout: 10s}
profiles:
  old-devices: {trust: ["mozilla@2016-06-01"], building: legacy}
endpoints:
  - host: www.example.com
  - {host: mail.example.com, port: 25, starttls: smtp}
  - {host: api.example.com, ip: 127.0.0.1, sni: api.example.com, profiles: [mozilla, old-devices],
     tags: [api], owner: team-api, zone: dc-east}
files:
  - {path: "certs/*.pem", profiles: [old-devices], host: intranet.example.com}
""")
    write("inventory", "alerts.yaml", b"""\
endpoints: [a.example.com]
alerts:
  channels:
    hook: {type: webhook, url: "https://hooks.example.net/cw"}
    oncall: {type: pagerduty, routing_key_env: PD_ROUTING_KEY}
  steps:
    - {days: 30, action: ticket, channels: [hook]}
    - {days: 7, action: page, repeat: 24h, channels: [oncall]}
  broken: {action: page, repeat: 1h, channels: [oncall]}
  short_lived:
    max_lifetime: 100d
    steps:
      - {overdue: true, action: notify, channels: [hook]}
      - {remaining: 10%, action: page, repeat: 24h, channels: [oncall]}
""")
    write("inventory", "anchors.yaml",
          b"base: &b {port: 8443, tags: [x]}\nendpoints:\n  - {<<: *b, host: a.example.com}\n")

    # revocation: first byte 0 = OCSP, 1 = CRL
    def ocsp_answer(status: ocsp.OCSPCertStatus, *, by_name: bool = False,
                    include: bool = False) -> bytes:
        builder = ocsp.OCSPResponseBuilder().add_response(
            cert=leaf.cert.parsed, issuer=issuer.cert.parsed, algorithm=hashes.SHA1(),
            cert_status=status, this_update=AT - HOUR, next_update=AT + 24 * HOUR,
            revocation_time=AT - 2 * HOUR if status is ocsp.OCSPCertStatus.REVOKED else None,
            revocation_reason=(x509.ReasonFlags.key_compromise
                               if status is ocsp.OCSPCertStatus.REVOKED else None),
        ).responder_id(
            ocsp.OCSPResponderEncoding.NAME if by_name else ocsp.OCSPResponderEncoding.HASH,
            issuer.cert.parsed,
        )
        if include:
            builder = builder.certificates([issuer.cert.parsed])
        response = builder.sign(issuer.key, hashes.SHA256())
        return response.public_bytes(serialization.Encoding.DER)

    write("revocation", "ocsp-good", b"\x00" + ocsp_answer(ocsp.OCSPCertStatus.GOOD))
    write("revocation", "ocsp-revoked-by-name",
          b"\x00" + ocsp_answer(ocsp.OCSPCertStatus.REVOKED, by_name=True, include=True))
    write("revocation", "ocsp-try-later", b"\x00" + ocsp.OCSPResponseBuilder.build_unsuccessful(
        ocsp.OCSPResponseStatus.TRY_LATER).public_bytes(serialization.Encoding.DER))
    entry = (x509.RevokedCertificateBuilder().serial_number(leaf.cert.parsed.serial_number)
             .revocation_date(AT - 2 * HOUR)
             .add_extension(x509.CRLReason(x509.ReasonFlags.superseded), critical=False)
             .build())
    crl = (x509.CertificateRevocationListBuilder().issuer_name(issuer.cert.parsed.subject)
           .last_update(AT - HOUR).next_update(AT + 24 * HOUR).add_revoked_certificate(entry)
           .sign(issuer.key, hashes.SHA256()))
    write("revocation", "crl-revoked", b"\x01" + crl.public_bytes(serialization.Encoding.DER))
    empty = (x509.CertificateRevocationListBuilder().issuer_name(issuer.cert.parsed.subject)
             .last_update(AT - HOUR).next_update(AT + 24 * HOUR)
             .sign(issuer.key, hashes.SHA256()))
    write("revocation", "crl-empty-pem", b"\x01" + empty.public_bytes(serialization.Encoding.PEM))

    # ari: the directory, a NUL byte, the renewalInfo answer
    write("ari", "window", b'{"renewalInfo": "https://acme.fuzz.test/ari"}\x00'
          b'{"suggestedWindow": {"start": "2026-02-01T00:00:00Z", '
          b'"end": "2026-02-03T00:00:00+01:00"}, "explanationURL": "https://acme.fuzz.test/why"}')
    write("ari", "no-renewal-info", b'{"newOrder": "https://acme.fuzz.test/new-order"}\x00')

    # probe: first byte 0 = TLS, 1.. = PROTOCOLS in order (smtp imap pop3 ftp ldap xmpp postgres)
    record = bytes.fromhex("16030300") + bytes([4]) + bytes.fromhex("0e000000")  # ServerHelloDone
    write("probe", "tls-alert", b"\x00" + bytes.fromhex("15030300020228"))
    write("probe", "tls-records", b"\x00" + record + bytes.fromhex("15030300020100"))
    write("probe", "not-tls", b"\x00HTTP/1.1 400 Bad Request\r\n\r\n")
    write("probe", "smtp", b"\x01220 mx ESMTP\r\n250-mx\r\n250 STARTTLS\r\n220 go ahead\r\n")
    write("probe", "imap",
          b"\x02* OK ready\r\n* CAPABILITY IMAP4rev1 STARTTLS\r\na1 OK begin TLS\r\n")
    write("probe", "pop3", b"\x03+OK ready\r\n+OK begin TLS\r\n")
    write("probe", "ftp", b"\x04220-welcome\r\n free text\r\n220 ready\r\n234 AUTH TLS ok\r\n")
    write("probe", "ldap", b"\x05" + bytes.fromhex("300c02010178070a010004000400"))
    write("probe", "xmpp", b"\x06<?xml version='1.0'?><stream:stream><stream:features><starttls "
          b"xmlns='urn:ietf:params:xml:ns:xmpp-tls'/></stream:features><proceed/>")
    write("probe", "postgres", b"\x07S")


if __name__ == "__main__":
    main()
