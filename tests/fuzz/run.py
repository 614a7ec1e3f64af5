"""Run one harness under atheris (libFuzzer):

    python -m tests.fuzz.run HARNESS [libFuzzer options] [CORPUS_DIR ...]

from the repository root, e.g. ``python -m tests.fuzz.run bundle -max_total_time=600
/tmp/new tests/fuzz/corpus/bundle`` (new inputs go to the first directory; give a fresh
one first to leave the committed corpus alone). ``make fuzz`` runs every harness this way.
A crash prints the exception and writes the input as ``crash-<sha1>`` (``-artifact_prefix``).
"""

from __future__ import annotations

import sys

import atheris

with atheris.instrument_imports(include=["chainwatch"]):
    from tests.fuzz.harnesses import HARNESSES


def main() -> None:
    if len(sys.argv) < 2 or sys.argv[1] not in HARNESSES:
        sys.exit(f"usage: python -m tests.fuzz.run {{{','.join(HARNESSES)}}} [libFuzzer args]")
    harness = HARNESSES[sys.argv.pop(1)]
    atheris.Setup(sys.argv, harness)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
