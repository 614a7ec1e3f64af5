"""``make run``: analyse the incident examples shipped in this folder and print the reports.

Each scenario is checked the way an operator would before (and after) the day it broke,
with the client profiles that matter for it. Exit status 0 when every scenario ran.
"""

from __future__ import annotations

import sys
from pathlib import Path

from chainwatch.cli import run

HERE = Path(__file__).resolve().parent

SCENARIOS: list[tuple[str, list[str]]] = [
    (
        "Hourfleet 2019: the renewed certificate comes from a new CA hierarchy. The back-ends"
        " trust only the old root: check the bundle before deploying it.",
        ["check-bundle", "hourfleet/renewed.pem", "--host", "api.hourfleet.example",
         "--at", "2019-06-01", "--profile", "file:hourfleet/backend-trust.pem",
         "--profile", "file:hourfleet/new-root.pem"],
    ),
    (
        "DST Root CA X3 pattern, 2021-09-29: the leaf is fine for months, but legacy"
        " (OpenSSL 1.0.x) clients break with the old root tomorrow.",
        ["check-bundle", "dst-2021/served.pem", "--host", "devices.netpark.example",
         "--at", "2021-09-29", "--profile", "file:dst-2021/store-2021.pem",
         "--profile", "legacy:file:dst-2021/store-2021.pem",
         "--profile", "file:dst-2021/old-device-store.pem"],
    ),
    (
        "DST Root CA X3 pattern, 2021-10-01: modern clients moved to X1; legacy ones and"
        " devices whose store never got X1 are down.",
        ["check-bundle", "dst-2021/served.pem", "--host", "devices.netpark.example",
         "--at", "2021-10-01", "--profile", "file:dst-2021/store-2021.pem",
         "--profile", "legacy:file:dst-2021/store-2021.pem",
         "--profile", "file:dst-2021/old-device-store.pem"],
    ),
    (
        "AddTrust pattern, 2020-05-29: the served cross-sign and root expire tomorrow.",
        ["check-bundle", "addtrust-2020/served.pem", "--host", "app.logdna.example",
         "--at", "2020-05-29", "--profile", "file:addtrust-2020/store-2020.pem",
         "--profile", "legacy:file:addtrust-2020/store-2020.pem"],
    ),
    (
        "AddTrust pattern, 2020-05-31: legacy clients fail although the leaf is valid.",
        ["check-bundle", "addtrust-2020/served.pem", "--host", "app.logdna.example",
         "--at", "2020-05-31", "--profile", "file:addtrust-2020/store-2020.pem",
         "--profile", "legacy:file:addtrust-2020/store-2020.pem"],
    ),
]


def main() -> int:
    failures = 0
    for title, args in SCENARIOS:
        print(f"\n=== {title}\n$ chainwatch {' '.join(args)}\n", flush=True)
        resolved = [
            str(HERE / a) if a.endswith(".pem") and not a.startswith(("file:", "legacy:"))
            else a.replace("file:", f"file:{HERE}/")
            for a in args
        ]
        status = run(resolved)
        print(f"(exit status {status})", flush=True)
        failures += status == 3
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
