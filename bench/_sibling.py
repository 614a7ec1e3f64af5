"""How the benches share code: ``sibling("probe")`` is ``bench/probe.py`` loaded once as
module ``chainwatch_bench_probe`` (the nginx farm, the floor session, the worker protocol;
``scan`` holds the inventory writer and the throwaway PostgreSQL database). Every bench is
run as a script, so ``bench/`` is on ``sys.path`` and this module imports as ``_sibling``."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

HERE = Path(__file__).resolve().parent


def sibling(name: str) -> ModuleType:
    """``bench/NAME.py`` as a module, loaded at most once per process."""
    key = f"chainwatch_bench_{name}"
    loaded = sys.modules.get(key)
    if loaded is not None:
        return loaded
    spec = importlib.util.spec_from_file_location(key, HERE / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[key] = module
    spec.loader.exec_module(module)
    return module
