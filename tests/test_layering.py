"""The house layout is enforced: the import-linter contracts in pyproject.toml hold for the
tree, and they do fail when a forbidden import is added (a negative control on a copy)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
LINT = Path(sys.executable).with_name("lint-imports")


def lint(src: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(src)}
    return subprocess.run([str(LINT), "--config", str(ROOT / "pyproject.toml"), "--no-cache"],
                          cwd=src, env=env, capture_output=True, text=True, timeout=300,
                          check=False)


@pytest.fixture(scope="module")
def tree(tmp_path_factory: pytest.TempPathFactory) -> Path:
    src = tmp_path_factory.mktemp("layering") / "src"
    shutil.copytree(ROOT / "src" / "chainwatch", src / "chainwatch",
                    ignore=shutil.ignore_patterns("__pycache__", "data"))
    return src


def test_the_tree_keeps_every_contract() -> None:
    done = lint(ROOT / "src")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "broken" not in done.stdout.lower().replace("0 broken", "")


@pytest.mark.parametrize(("module", "line", "contract"), [
    ("analysis/paths.py", "import chainwatch.storage.repo", "do no I/O"),
    ("probe/handshake.py", "import chainwatch.analysis.paths", "Probing never analyses"),
    ("storage/repo.py", "import chainwatch.render.text", "Storage renders no text"),
    ("service/cycle.py", "import chainwatch.cli.app", "Nothing imports the CLI"),
    ("model/values.py", "import chainwatch.service.collect", "layered"),
])
def test_a_forbidden_import_breaks_its_contract(tree: Path, module: str, line: str,
                                                 contract: str) -> None:
    path = tree / "chainwatch" / module
    original = path.read_text()
    try:
        path.write_text(original + f"\n{line}  # the negative control\n")
        done = lint(tree)
    finally:
        path.write_text(original)
    assert done.returncode != 0
    broken = done.stdout.split("Broken contracts", 1)[-1]
    assert contract in broken, done.stdout
