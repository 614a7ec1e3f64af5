"""The fuzzing harnesses of ``tests/fuzz/`` in the regular run.

- every input of ``tests/fuzz/corpus/`` (the seeds, and each input that once crashed a
  harness) replays without a crash;
- every reproducer of ``tests/fuzz/crashes/`` (a crash outside the fuzzed parsers, not
  fixed yet) still crashes: a strict xfail, so that fixing it shows;
- each harness runs a short coverage-guided campaign under atheris: fixed seed, a fixed
  number of inputs, in a subprocess with a time cap. ``make fuzz`` runs long ones.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.fuzz import harnesses
from tests.fuzz.harnesses import HARNESSES

ROOT = Path(__file__).resolve().parent.parent
FUZZ = ROOT / "tests" / "fuzz"
CORPUS = FUZZ / "corpus"
CRASHES = FUZZ / "crashes"
RUNS = 2000  # inputs per harness and run, seeds included: about a second each
SAFETY_SECONDS = 180

KNOWN_CRASHES: dict[str, tuple[str, type[BaseException]]] = {}


def _inputs(folder: Path) -> list[Path]:
    return sorted(p for p in folder.glob("*/*") if p.is_file())


def _id(path: Path) -> str:
    return f"{path.parent.name}/{path.name}"


def test_every_harness_has_seeds_and_every_folder_a_harness() -> None:
    assert sorted(p.name for p in CORPUS.iterdir()) == sorted(HARNESSES)
    assert all(len(list((CORPUS / name).iterdir())) >= 2 for name in HARNESSES)
    assert {_id(p) for p in _inputs(CRASHES)} == set(KNOWN_CRASHES)
    assert max(p.stat().st_size for p in _inputs(CORPUS)) < 8192  # small files only


@pytest.mark.parametrize("path", _inputs(CORPUS), ids=_id)
def test_corpus_input_replays_without_a_crash(path: Path) -> None:
    HARNESSES[path.parent.name](path.read_bytes())


@pytest.mark.parametrize(
    "path",
    [
        pytest.param(p, marks=pytest.mark.xfail(
            strict=True, reason=KNOWN_CRASHES[_id(p)][0], raises=KNOWN_CRASHES[_id(p)][1]
        ))
        for p in _inputs(CRASHES)
    ],
    ids=_id,
)
def test_known_crash_outside_the_fuzzed_parsers(path: Path,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(harnesses, "KNOWN_BUGS", False)
    HARNESSES[path.parent.name](path.read_bytes())


def _atheris_available() -> bool:
    try:
        import atheris  # noqa: F401
    except ImportError:
        if os.environ.get("CHAINWATCH_REQUIRE_SERVICES") == "1":
            raise
        return False
    return True


@pytest.mark.parametrize("name", sorted(HARNESSES))
def test_short_fuzzing_campaign(name: str, tmp_path: Path) -> None:
    if not _atheris_available():
        pytest.skip("atheris is not installed (pip install -e '.[dev]')")
    found = tmp_path / "found"
    found.mkdir()
    command = [
        sys.executable, "-m", "tests.fuzz.run", name, f"-runs={RUNS}", "-seed=1",
        "-max_total_time=120", "-timeout=30", "-rss_limit_mb=3072",
        f"-artifact_prefix={tmp_path}/", str(found), str(CORPUS / name),
    ]
    try:
        done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True,
                              timeout=SAFETY_SECONDS, stdin=subprocess.DEVNULL, check=False)
    except subprocess.TimeoutExpired:
        pytest.fail(f"the {name} campaign did not finish in {SAFETY_SECONDS}s")
    artifacts = sorted(p for p in tmp_path.iterdir() if p.is_file())
    report = "\n".join(done.stderr.splitlines()[-40:])
    for artifact in artifacts:
        report += (f"\n{artifact.name}: {artifact.read_bytes()[:2000]!r}\n(add it to "
                   f"tests/fuzz/corpus/{name}/ as crash-<what>, fix the crash, or add it to "
                   f"tests/fuzz/crashes/{name}/ with a KNOWN_CRASHES entry)")
    assert done.returncode == 0 and not artifacts, report
    assert f"Done {RUNS} runs" in done.stderr, report
