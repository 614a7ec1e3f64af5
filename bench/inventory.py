"""Inventory loading: ``load_inventory`` of an N-endpoint inventory, this tree against a
baseline tree measured in the same run.

The inventory is ``bench/scan.py``'s (one flow mapping per endpoint: host, port, ip; one
``file:`` profile). Measured, each in a fresh subprocess, in ``--repeat`` turns (the
order reversed every other turn), the median kept:

``baseline``  ``load_inventory`` from ``src/`` of ``--baseline`` (a git revision, default
              :data:`BEFORE_LIBYAML`, the tree the issue measured: PyYAML's pure-Python
              composer; exported with ``git archive`` into a temporary directory).
``this``      ``load_inventory`` from this tree.
``yaml``      each tree's step 1 alone (YAML to data and the line map).
``compose``   libyaml composing the document into nodes and nothing else
              (``yaml.compose`` with ``CSafeLoader``): the least any loader that keeps
              lines from libyaml's nodes pays. ``baseline / compose`` bounds the speed-up
              such a loader can reach.

Wall and CPU time (``time.process_time``) of each are reported: on a shared machine the
CPU times move less.

Also checked, with this tree: an error deep in the file still names its exact line and
field (``endpoints[N-1].port`` on the last line), as the pure-Python composer gave it.

Target (issue 17): this >= 20x the baseline at 10,000 endpoints.

Usage: ``python bench/inventory.py [--endpoints N] [--baseline REV] [--repeat T] [--json]``.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
from io import BytesIO
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve()
REPO = HERE.parent.parent
TARGET = 20.0
BEFORE_LIBYAML = "85a630cbe2b3567164f8c53f162608e450a10859"
"""The last revision whose inventory loading used PyYAML's pure-Python composer."""

WORKER = r"""
import gc, json, sys, time
from pathlib import Path
gc.freeze(); gc.set_threshold(50_000, 20, 20)  # the chainwatch command's collector settings
sys.path.insert(0, sys.argv[1])
from chainwatch.config.inventory import load_inventory
from chainwatch.config import yaml as step1
import yaml
path = Path(sys.argv[2])
start, cpu = time.perf_counter(), time.process_time()
inv = load_inventory(path)
seconds, cpu_seconds = time.perf_counter() - start, time.process_time() - cpu
text = path.read_text()
start, cpu = time.perf_counter(), time.process_time()
step1._read_yaml(text, str(path))
yaml_seconds, yaml_cpu = time.perf_counter() - start, time.process_time() - cpu
compose_seconds = compose_cpu = None
if getattr(yaml, "__with_libyaml__", False):
    start, cpu = time.perf_counter(), time.process_time()
    yaml.compose(text, Loader=yaml.CSafeLoader)
    compose_seconds, compose_cpu = time.perf_counter() - start, time.process_time() - cpu
print(json.dumps({"seconds": seconds, "cpu": cpu_seconds, "yaml_seconds": yaml_seconds,
                  "yaml_cpu": yaml_cpu, "compose_seconds": compose_seconds,
                  "compose_cpu": compose_cpu, "endpoints": len(inv.endpoints)}))
"""


def write_inventory(path: Path, root: Path, count: int, bad_last: bool = False) -> None:
    lines = [
        "defaults: {profiles: [bench], interval: 1h, timeout: 10s}",
        "profiles:",
        f"  bench: {{trust: [{json.dumps('file:' + str(root))}], building: modern}}",
        "endpoints:",
    ]
    lines += [f"  - {{host: e{i}.bench.test, port: 443, ip: 127.0.0.{i % 4 + 1}}}"
              for i in range(count)]
    if bad_last:
        lines[-1] = lines[-1].replace("port: 443", "port: 70000")
    path.write_text("\n".join(lines) + "\n")


def export_tree(revision: str, into: Path) -> Path:
    """``src/`` of ``revision`` of this repository, as files under ``into``."""
    archive = subprocess.run(["git", "-C", str(REPO), "archive", "--format=tar", revision,
                              "src"], check=True, capture_output=True, timeout=120).stdout
    with tarfile.open(fileobj=BytesIO(archive)) as tar:
        tar.extractall(into, filter="data")
    return into / "src"


def run(src: Path, inventory: Path) -> dict[str, Any]:
    out = subprocess.run([sys.executable, "-c", WORKER, str(src), str(inventory)],
                         capture_output=True, text=True, timeout=600, check=True,
                         env={**os.environ, "PYTHONPATH": str(src)})
    result: dict[str, Any] = json.loads(out.stdout.strip().splitlines()[-1])
    return result


def exact_error(tmp: Path, root: Path, count: int) -> str:
    """The error this tree gives for a bad port on the last line ("" if right)."""
    sys.path.insert(0, str(REPO / "src"))
    from chainwatch.config.inventory import load_inventory
    from chainwatch.errors import InventoryError

    bad = tmp / "bad.yaml"
    write_inventory(bad, root, count, bad_last=True)
    line = count + 4
    try:
        load_inventory(bad)
    except InventoryError as exc:
        expected = f"{bad}:{line}: endpoints[{count - 1}].port:"
        return "" if str(exc).startswith(expected) else f"got {str(exc)[:200]!r}"
    return "no error for a bad port"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--endpoints", type=int, default=10_000)
    parser.add_argument("--baseline", default=BEFORE_LIBYAML,
                        help="git revision to compare with (default: the last one before "
                             "libyaml loading)")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="chainwatch-bench-") as tmp_name:
        tmp = Path(tmp_name)
        from chainwatch.testing.pki import PKI, pem_of

        root = tmp / "root.pem"
        root.write_bytes(pem_of(PKI().root("Chainwatch Bench Root").cert))
        inventory = tmp / "inventory.yaml"
        write_inventory(inventory, root, args.endpoints)
        trees = {"baseline": export_tree(args.baseline, tmp / "baseline"),
                 "this": REPO / "src"}
        runs: dict[str, list[dict[str, Any]]] = {k: [] for k in trees}
        load = os.getloadavg()
        for turn in range(max(1, args.repeat)):
            order = list(trees) if turn % 2 == 0 else list(reversed(trees))
            for kind in order:
                runs[kind].append(run(trees[kind], inventory))
        wrong = exact_error(tmp, root, args.endpoints)
    base = [r["seconds"] for r in runs["baseline"]]
    this = [r["seconds"] for r in runs["this"]]
    ratios = [b / t for b, t in zip(base, this, strict=True)]
    ratio = statistics.median(ratios)
    cpu_ratios = [b["cpu"] / t["cpu"] for b, t in zip(runs["baseline"], runs["this"],
                                                      strict=True)]
    composes = [r["compose_cpu"] for r in runs["this"] if r["compose_cpu"] is not None]
    bounds = [b["cpu"] / t["compose_cpu"] for b, t in zip(runs["baseline"], runs["this"],
                                                          strict=True)
              if t["compose_cpu"]]
    result = {
        "endpoints": args.endpoints, "baseline": args.baseline, "load_before": load,
        "load_after": os.getloadavg(),
        "baseline_seconds": base, "this_seconds": this,
        "baseline_cpu": [r["cpu"] for r in runs["baseline"]],
        "this_cpu": [r["cpu"] for r in runs["this"]],
        "this_yaml_seconds": [r["yaml_seconds"] for r in runs["this"]],
        "baseline_yaml_seconds": [r["yaml_seconds"] for r in runs["baseline"]],
        "compose_cpu": composes,
        "ratios": ratios, "ratio": ratio, "cpu_ratios": cpu_ratios,
        "cpu_ratio": statistics.median(cpu_ratios),
        "compose_bounds": bounds, "compose_bound": statistics.median(bounds) if bounds else None,
        "exact_error": wrong or "ok",
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
    }
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        def listed(values: list[float]) -> str:
            return ", ".join(f"{x:.3f}" for x in values)

        print(f"bench/inventory.py: load_inventory of {args.endpoints} endpoints, "
              f"{os.cpu_count()} CPUs, {result['date']}, load average "
              f"{' '.join(f'{x:.1f}' for x in load)} before, "
              f"{' '.join(f'{x:.1f}' for x in result['load_after'])} after")
        print(f"baseline ({args.baseline[:12]}): wall {listed(base)} s, CPU "
              f"{listed(result['baseline_cpu'])} s (YAML step wall: "
              f"{listed(result['baseline_yaml_seconds'])})")
        print(f"this tree:      wall {listed(this)} s, CPU {listed(result['this_cpu'])} s "
              f"(YAML step wall: {listed(result['this_yaml_seconds'])})")
        if composes:
            print(f"libyaml compose alone: CPU {listed(composes)} s; baseline CPU / compose "
                  f"CPU: " + ", ".join(f"{b:.1f}" for b in bounds)
                  + "x (no loader built on libyaml's nodes can beat this)")
        met = "met" if ratio >= TARGET else "NOT met"
        print(f"speed-up, wall: {ratio:.1f}x (median of turns: "
              + ", ".join(f"{r:.1f}" for r in ratios) + f"); CPU: "
              f"{result['cpu_ratio']:.1f}x (" + ", ".join(f"{r:.1f}" for r in cpu_ratios)
              + f"); target >= {TARGET:g}x: {met}")
        print(f"exact error on the last line: {result['exact_error']}")
    return 0 if not wrong else 1


if __name__ == "__main__":
    sys.exit(main())
