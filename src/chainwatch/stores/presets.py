"""Named client populations: short names for profile specs, with their justification.

Only populations whose trust store and path building can be stated from a public,
checkable source are listed; each says what it assumes (``description``) and where that
comes from (``source``).

Not listed, on purpose:

- Java 8, 11 and 17: what a JVM trusts is the ``cacerts`` of the runtime it runs on, and
  that file is the vendor's or the distribution's, not one store per Java version.
  OpenJDK's own repository held no roots until JDK 10 (JEP 319, "Root Certificates"),
  so an OpenJDK 8 runtime carries its distributor's list (Debian's and Ubuntu's
  ``ca-certificates-java`` build it from Mozilla's list at package time, Oracle's JDK
  from Oracle's program), and 11 and 17 updates change their roots in point releases.
  Judge a Java population on its own file: ``java:jks:$JAVA_HOME/lib/security/cacerts``
  (JDK 8-17: JKS) or ``java:pkcs12:...`` (JDK 18 and later: password-less PKCS#12).
- Android 5.0 and 6.0: the AOSP tags read for the Android history lack them (see
  ``chainwatch stores``); ``android@5.1`` and ``android@6.0.1`` are there.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Preset:
    name: str
    spec: str
    description: str
    source: str = ""


_LE_ANDROID = (
    "Let's Encrypt, \"Extending Android Device Compatibility for Let's Encrypt "
    "Certificates\" (2020-12-21) and \"Certificate Compatibility\" "
    "(https://letsencrypt.org/docs/certificate-compatibility/): Android >= 7.1.1 trusts "
    "ISRG Root X1; older Android, which lacks it, kept trusting chains through the DST "
    "Root CA X3 cross-sign after 2021-09-30 because it ignores an anchor's expiry"
)


def _android(version: str, tag: str, released: str, note: str) -> Preset:
    return Preset(
        f"android-{version}",
        f"android:android@{version}",
        f"Android {version} ({released}) devices using the platform TLS stack: the system "
        f"store of AOSP {tag} with Android's verifier (android behaviour: modern search, "
        f"an anchor's dates ignored). {note}",
        f"store: AOSP platform/system/ca-certificates at tag {tag} (chainwatch stores); "
        f"behaviour: chainwatch stores --behaviours; {_LE_ANDROID}",
    )


_PRESETS = (
    Preset(
        "openssl-1.0",
        "legacy:system",
        "OpenSSL 1.0.x clients (curl, Python, Ruby, PHP, Node.js <= 8 built against it) "
        "using this machine's CA file: untrusted-first path building, no backtracking.",
        "OpenSSL 1.1.0 changes: X509_V_FLAG_TRUSTED_FIRST became the default (1.0.x "
        "builds from the presented chain first and does not backtrack); the AddTrust "
        "expiry of 2020-05-30 broke exactly these clients",
    ),
    Preset(
        "nodejs-8",
        "legacy:mozilla@2017-05-30",
        "Node.js 8.x: links OpenSSL 1.0.2 (legacy building) and carries its own copy of "
        "Mozilla's list; modelled as the list at 8.0.0's release (2017-05-30). Later 8.x "
        "releases refreshed the list, so this is the oldest 8.x population.",
        "Node.js 8.0.0 release (2017-05-30), bundling OpenSSL 1.0.2 and "
        "src/node_root_certs.h generated from Mozilla's certdata.txt",
    ),
    Preset(
        "nodejs-10",
        "mozilla@2018-04-24",
        "Node.js 10.x: OpenSSL 1.1.x (modern building) with its own copy of Mozilla's list, "
        "modelled as the list at 10.0.0's release (2018-04-24); it ignores the OS store "
        "unless started with --use-openssl-ca.",
        "Node.js 10.0.0 release (2018-04-24), bundling OpenSSL 1.1.0 and "
        "src/node_root_certs.h generated from Mozilla's certdata.txt",
    ),
    _android("7.0", "android-7.0.0_r1", "Nougat, 2016-08", "Lacks ISRG Root X1: the Let's "
             "Encrypt population that the DST Root CA X3 cross-sign kept working."),
    _android("7.1.1", "android-7.1.1_r1", "Nougat MR1, 2016-12",
             "The first release with ISRG Root X1."),
    _android("9", "android-9.0.0_r1", "Pie, 2018-08", "Still carries DST Root CA X3."),
    _android("10", "android-10.0.0_r1", "Q, 2019-09", "Still carries DST Root CA X3."),
)

PRESETS: dict[str, Preset] = {p.name: p for p in _PRESETS}
