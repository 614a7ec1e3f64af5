"""Speed where users meet it: the ``chainwatch`` command as a whole process, against the
handshake floor timed in the same run.

Set-up (not timed): the loopback nginx farm of ``bench/probe.py`` (one leaf per endpoint,
served by SNI name over ``--addresses`` loopback addresses) and the inventory of
``bench/scan.py`` (every endpoint with its address pinned, one ``file:`` profile of the
bench root).

Measured in turns (one run of each workload per turn, so that a shared machine speeding up
or slowing down moves them alike; ratios are taken turn by turn, judged on their median):

``floor``         ``bench/probe.py``'s pyOpenSSL floor (a thread pool of blocking
                  handshakes returning the peer chain and nothing else), kept warm in its
                  own process: the least work any chain monitor must do.
``sqlite first``  ``chainwatch scan INVENTORY --db sqlite:///NEW --format json`` as a
                  process of its own, wall time from ``exec`` to exit (imports, inventory
                  loading, probe processes, analysis, storage, the report).
``sqlite again``  the same command into the same database: the steady state of a cron job.
``pg first`` / ``pg again``  the same into a PostgreSQL database created for the turn on
                  ``--pg-url`` and dropped after.
``check``         ``chainwatch check`` of one loopback endpoint (``--ip``, ``--sni``,
                  ``--profile file:ROOT``), as a monitoring plugin runs it; best and median
                  of ``--check-runs``, with ``openssl s_client`` of the same endpoint as its
                  floor, and ``python -X importtime`` of the same command (the total import
                  time, in microseconds, summed over top-level imports).

Every scan's JSON report is checked: one report per endpoint, each ``ok``, the exit
status 0; a wrong scan makes the row ``WRONG`` and the run's exit status 1.

Targets (issue 17): scans >= 0.6x the floor at 1,000 endpoints, >= 0.8x at 10,000; check
<= 0.25 s wall. ``--big``: 100,000 endpoints, one SQLite scan, < 150 s end to end and peak
RSS (all processes summed, sampled from ``/proc``) < 1 GiB. Past 10,000 endpoints the farm
is ``bench/probe.py``'s ``variable`` one (``--farm``), so the ``--endpoints`` turns of such a
run are on it too. ``--big`` then runs the floor once on the same endpoints (the pool size
its sweep at ``--endpoints`` chose) and reports, for the scan and for that floor, the
machine's CPU-seconds meanwhile (``/proc/stat``), nginx's, and those of chainwatch's
processes or of the floor's (sampled): on a shared machine, what others took shows.

``--check-baseline REV`` also times ``check`` with ``src/`` of git revision REV (put first
on ``PYTHONPATH``), alternating run by run with this tree, and its import time. Both trees
are byte-compiled first, as an installed package is.

Usage: ``python bench/cli.py [--endpoints N] [--repeat T] [--skip pg,check]
[--check-baseline REV] [--json]``
(``make bench-cli``). Without an ``nginx`` binary it says how to install one and exits 0.
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Any

from _sibling import sibling

HERE = Path(__file__).resolve()
TARGETS = {1_000: 0.6, 10_000: 0.8}
TARGET_CHECK_SECONDS = 0.25
TARGET_BIG_SECONDS = 150.0
TARGET_BIG_RSS_MIB = 1024.0
SCAN_TIMEOUT = 1800.0


@functools.cache
def _probe() -> ModuleType:
    """``bench/probe.py``: the nginx farm, the floor session, the worker protocol."""
    return sibling("probe")


@functools.cache
def _scan() -> ModuleType:
    """``bench/scan.py``: the inventory and the throwaway PostgreSQL database."""
    return sibling("scan")


def chainwatch_command() -> list[str]:
    """The installed ``chainwatch`` entry point next to this interpreter."""
    script = Path(sys.executable).with_name("chainwatch")
    if script.exists():
        return [str(script)]
    found = shutil.which("chainwatch")
    if found is None:
        raise SystemExit("no chainwatch command installed (pip install -e .)")
    return [found]


# -- peak RSS of a process tree, sampled ---------------------------------------------------------


def _tree_sample(root: int) -> tuple[float, float, dict[int, float]]:
    """The resident set (MiB) of ``root`` and all its descendants now, that of ``root``
    alone, and the CPU-seconds (user + system) each of them has used so far (Linux
    ``/proc``)."""
    parents: dict[int, int] = {}
    rss: dict[int, int] = {}
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            text = Path(entry.path, "status").read_text()
        except OSError:
            continue
        pid = int(entry.name)
        for line in text.splitlines():
            if line.startswith("PPid:"):
                parents[pid] = int(line.split()[1])
            elif line.startswith("VmRSS:"):
                rss[pid] = int(line.split()[1])
    total = 0
    cpu: dict[int, float] = {}
    tick = os.sysconf("SC_CLK_TCK")
    for pid, kib in rss.items():
        seen, p = 0, pid
        while p and seen < 64:  # bounded walk up the tree
            if p == root:
                total += kib
                try:
                    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
                    cpu[pid] = (int(fields[11]) + int(fields[12])) / tick
                except (OSError, ValueError, IndexError):
                    pass
                break
            p = parents.get(p, 0)
            seen += 1
    return total / 1024.0, rss.get(root, 0) / 1024.0, cpu


class _RssSampler:
    """Peak resident set of a process tree, and the CPU its processes used, sampled every
    ``every`` seconds (so the CPU of each process's last moments may be missed)."""

    def __init__(self, pid: int, every: float) -> None:
        self.pid, self.every, self.peak, self.root_peak = pid, every, 0.0, 0.0
        self.cpu: dict[int, float] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(self.every):
            tree, root, cpu = _tree_sample(self.pid)
            self.peak, self.root_peak = max(self.peak, tree), max(self.root_peak, root)
            self.cpu.update(cpu)

    def stop(self) -> float:
        self._stop.set()
        self._thread.join(timeout=10)
        return self.peak


# -- one whole-process scan ----------------------------------------------------------------------


def run_scan(inventory: Path, url: str, expected: int, sample_rss: bool = False
             ) -> dict[str, Any]:
    """``chainwatch scan`` as a process: wall seconds, exit status, and whether its report
    is right (one ``ok`` report per endpoint)."""
    command = [*chainwatch_command(), "scan", str(inventory), "--db", url, "--format", "json"]
    start = time.perf_counter()
    proc = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE)
    sampler = _RssSampler(proc.pid, 0.5) if sample_rss else None
    try:
        out, err = proc.communicate(timeout=SCAN_TIMEOUT)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.communicate(timeout=60)
        return {"wrong": f"did not finish within {SCAN_TIMEOUT:.0f} s", "seconds": 0.0}
    seconds = time.perf_counter() - start
    result: dict[str, Any] = {"seconds": seconds, "status": proc.returncode}
    if sampler is not None:
        result["rss_mib"] = sampler.stop()
        result["root_rss_mib"] = sampler.root_peak
        result["tree_cpu"] = sum(sampler.cpu.values())
        result["root_cpu"] = sampler.cpu.get(proc.pid, 0.0)
    result["wrong"] = check_report(out, err, proc.returncode, expected)
    return result


def check_report(out: bytes, err: bytes, status: int, expected: int) -> str:
    """Why the scan's output is wrong, or "" when it is right."""
    if status != 0:
        tail = err.decode(errors="replace").strip().splitlines()[-1:] or ["no error output"]
        return f"exit status {status}: {tail[0][:200]}"
    try:
        data = json.loads(out)
    except ValueError:
        return "output is not JSON"
    reports = data.get("reports", [])
    if len(reports) != expected:
        return f"{len(reports)} reports, expected {expected}"
    bad = [r for r in reports if r.get("status") != "ok"]
    if bad:
        return f"{len(bad)} reports not ok (first: {bad[0].get('status')})"
    hosts = {r.get("target", {}).get("host") for r in reports}
    if len(hosts) != expected:
        return f"{len(hosts)} distinct hosts, expected {expected}"
    return ""


def accounted(server: int, work: Callable[[], dict[str, Any]]) -> dict[str, Any]:
    """``work()``'s result with what the machine spent meanwhile: the load average before
    and after, every process's CPU-seconds (``/proc/stat``) and those of nginx (the process
    tree of pid ``server``), so that the farm's share of two shared cores shows."""
    probe = _probe()
    load = " ".join(f"{x:.1f}" for x in os.getloadavg())
    machine, nginx = probe._cpu_times(), probe.tree_cpu_seconds(server)
    result = work()
    after = probe._cpu_times()
    result["nginx_cpu"] = probe.tree_cpu_seconds(server) - nginx
    if machine is not None and after is not None:
        result["machine_cpu"] = after[0] - machine[0]
    result["load_before"] = load
    result["load_after"] = " ".join(f"{x:.1f}" for x in os.getloadavg())
    return result


def big_floor(targets: list[tuple[str, int, str]], threads: int, tmp: Path) -> dict[str, Any]:
    """The floor (``bench/probe.py``'s pyOpenSSL pool, with the pool size the sweep at
    ``--endpoints`` chose) once over ``targets``, in a process of its own."""
    probe = _probe()
    spec = probe._spec("floor", targets, {"threads": [threads], "sweep": False}, tmp)
    worker = probe._Worker(sys.executable, "floor", spec, tmp)
    try:
        worker.answer()  # set up and warm (200 handshakes)
        before = probe.tree_cpu_seconds(worker.proc.pid)
        worker.ask("run")
        run: dict[str, Any] = worker.answer()
        used = probe.tree_cpu_seconds(worker.proc.pid) - before
        worker.finish()
    finally:
        worker.close()
    return {"seconds": float(run["seconds"]), "ok": int(run["ok"]), "threads": threads,
            "client_cpu": used}


# -- check as a monitoring plugin ----------------------------------------------------------------


def check_command(target: tuple[str, int, str], root: Path) -> list[str]:
    ip, port, name = target
    return [*chainwatch_command(), "check", f"{name}:{port}", "--ip", ip,
            "--profile", f"file:{root}"]


def compile_tree(src: Path) -> None:
    """Byte-compile the ``chainwatch`` package under ``src`` (as installing it does), so
    that no timed run compiles sources (``PYTHONDONTWRITEBYTECODE`` would make every run
    of a source checkout compile them)."""
    subprocess.run([sys.executable, "-m", "compileall", "-q", str(src / "chainwatch")],
                   check=True, capture_output=True, timeout=600)


def _timed(command: list[str], env: dict[str, str]) -> tuple[float, float, int]:
    """Wall seconds, CPU seconds (user + system, from the kernel's accounting of the
    child) and exit status of one run of ``command``, its output discarded; killed after
    two minutes."""
    start = time.perf_counter()
    child = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                             stderr=subprocess.DEVNULL, env=env)
    killer = threading.Timer(120.0, child.kill)
    killer.start()
    try:
        _, wait_status, usage = os.wait4(child.pid, 0)
    finally:
        killer.cancel()
    child.returncode = os.waitstatus_to_exitcode(wait_status)
    return (time.perf_counter() - start, usage.ru_utime + usage.ru_stime,
            child.returncode)


def measure_check(target: tuple[str, int, str], root: Path, runs: int,
                  baseline: Path | None = None) -> dict[str, Any]:
    """``check`` of one endpoint ``runs`` times, and with ``baseline`` (the ``src/`` of
    another revision, put first on ``PYTHONPATH``) as many times, alternating run by run;
    then ``openssl s_client`` of the same endpoint; then ``-X importtime`` of each."""
    command = check_command(target, root)
    trees: dict[str, dict[str, str]] = {"this": dict(os.environ)}
    compile_tree(HERE.parent.parent / "src")
    if baseline is not None:
        compile_tree(baseline)
        trees["baseline"] = {**os.environ, "PYTHONPATH": str(baseline)}
    times: dict[str, list[float]] = {name: [] for name in trees}
    cpu: dict[str, list[float]] = {name: [] for name in trees}
    status: dict[str, int] = dict.fromkeys(trees, 0)
    for n in range(runs):
        order = list(trees) if n % 2 == 0 else list(reversed(trees))
        for name in order:
            wall, used, code = _timed(command, trees[name])
            times[name].append(wall)
            cpu[name].append(used)
            status[name] = status[name] or code
    openssl = shutil.which("openssl")
    floor: list[float] = []
    if openssl is not None:
        ip, port, name = target
        for _ in range(runs):
            start = time.perf_counter()
            subprocess.run([openssl, "s_client", "-connect", f"{ip}:{port}", "-servername",
                            name, "-showcerts"], stdin=subprocess.DEVNULL, capture_output=True,
                           timeout=60)
            floor.append(time.perf_counter() - start)
    script = Path(command[0]).read_text().splitlines()
    python = script[0][2:].strip() if script and script[0].startswith("#!") else sys.executable
    imports: dict[str, tuple[int, list[str]]] = {}
    for name, env in trees.items():
        traced = subprocess.run(
            [python, "-X", "importtime", "-c",
             "import sys; from chainwatch.cli import main; sys.argv[0] = 'chainwatch'; main()",
             *command[1:]], capture_output=True, text=True, timeout=120, env=env)
        imports[name] = (import_total(traced.stderr), import_modules(traced.stderr))
    result: dict[str, Any] = {
        "best": min(times["this"]), "median": statistics.median(times["this"]),
        "runs": times["this"], "status": status["this"], "cpu": cpu["this"],
        "cpu_median": statistics.median(cpu["this"]),
        "openssl_best": min(floor) if floor else None,
        "openssl_median": statistics.median(floor) if floor else None,
        "import_us": imports["this"][0], "modules": imports["this"][1],
    }
    if baseline is not None:
        result["baseline"] = {
            "best": min(times["baseline"]), "median": statistics.median(times["baseline"]),
            "runs": times["baseline"], "status": status["baseline"], "cpu": cpu["baseline"],
            "cpu_median": statistics.median(cpu["baseline"]),
            "import_us": imports["baseline"][0], "modules": imports["baseline"][1],
        }
    return result


def _import_lines(stderr: str) -> list[tuple[int, int, str]]:
    """(self us, cumulative us, indented name) of ``-X importtime`` output."""
    rows = []
    for line in stderr.splitlines():
        if not line.startswith("import time:") or "self [us]" in line:
            continue
        head, cumulative, name = line.split("|", 2)
        rows.append((int(head.rsplit(":", 1)[-1]), int(cumulative), name))
    return rows


def import_total(stderr: str) -> int:
    return sum(self_us for self_us, _, _ in _import_lines(stderr))


def import_modules(stderr: str) -> list[str]:
    """The heavy third-party packages imported (top-level names)."""
    heavy = ("sqlalchemy", "alembic", "httpx", "httpcore", "apprise", "pydantic", "yaml")
    found = {name.strip().split(".")[0] for _, _, name in _import_lines(stderr)}
    return sorted(found & set(heavy))


# -- report --------------------------------------------------------------------------------------


ROWS = ("sqlite first", "sqlite again", "pg first", "pg again")


def render(results: dict[str, Any], meta: dict[str, Any]) -> str:
    n = meta["endpoints"]
    out = [
        f"bench/cli.py: the chainwatch command as a whole process, {n} endpoints (leaf + "
        f"intermediate, EC P-256), nginx {meta['nginx_version']} "
        f"({meta.get('farm', 'per-name')} farm) on {meta['addresses']} loopback addresses, "
        f"{meta['cpus']} CPUs, Python {meta['python']}, {meta['date']}; "
        f"{meta['turns']} turns; load average before {meta['load_before']}, after "
        f"{meta.get('load_after', '?')}",
        "",
        f"{'workload':<13} {'best s':>8} {'median s':>9} {'ratio (median of turns)':>24}  "
        "runs",
    ]
    floor = results.get("floor", [])
    target = TARGETS.get(n)
    if floor:
        out.append(f"{'floor':<13} {min(floor):>8.2f} {statistics.median(floor):>9.2f} "
                   f"{'1.00x':>24}  " + ", ".join(f"{x:.2f}" for x in floor))
    verdicts = []
    for row in ROWS:
        runs = results.get(row)
        if not runs:
            continue
        if isinstance(runs, str):
            out.append(f"{row:<13} {runs}")
            continue
        wrong = [r["wrong"] for r in runs if r["wrong"]]
        seconds = [r["seconds"] for r in runs]
        ratios = [f / s for f, s in zip(floor, seconds, strict=False) if s > 0]
        ratio = statistics.median(ratios) if ratios else 0.0
        out.append(f"{row:<13} {min(seconds):>8.2f} {statistics.median(seconds):>9.2f} "
                   f"{ratio:>23.2f}x  " + ", ".join(f"{x:.2f}" for x in seconds)
                   + (f"  WRONG: {wrong[0]}" if wrong else ""))
        if target is not None:
            met = "met" if ratio >= target and not wrong else "NOT met"
            verdicts.append(f"{row}: {ratio:.2f}x the floor, target >= {target:g}x: {met}")
    check = results.get("check")
    if check:
        out.append("")
        met = "met" if check["best"] <= TARGET_CHECK_SECONDS else "NOT met"
        floor_text = (f"; openssl s_client best {check['openssl_best']:.3f} s, median "
                      f"{check['openssl_median']:.3f} s" if check.get("openssl_best") else "")
        out.append(f"check (one endpoint, whole process): best {check['best']:.3f} s, median "
                   f"{check['median']:.3f} s over {len(check['runs'])} runs (exit "
                   f"{check['status']}){floor_text}; target <= {TARGET_CHECK_SECONDS} s: {met}")
        out.append("  runs: " + ", ".join(f"{x:.3f}" for x in check["runs"]))
        out.append(f"  CPU (user + system): median {check['cpu_median']:.3f} s; "
                   + ", ".join(f"{x:.3f}" for x in check["cpu"]))
        out.append(f"check imports: {check['import_us'] / 1000:.0f} ms (python -X importtime, "
                   f"self times summed); heavy packages imported: "
                   f"{', '.join(check['modules']) or 'none'}")
        base = check.get("baseline")
        if base:
            out.append(f"check of {meta.get('check_baseline', 'the baseline')}, alternating "
                       f"run by run with this tree: best {base['best']:.3f} s, median "
                       f"{base['median']:.3f} s (exit {base['status']}); imports "
                       f"{base['import_us'] / 1000:.0f} ms; heavy packages: "
                       f"{', '.join(base['modules']) or 'none'}")
            out.append("  runs: " + ", ".join(f"{x:.3f}" for x in base["runs"]))
            out.append(f"  CPU (user + system): median {base['cpu_median']:.3f} s; "
                       + ", ".join(f"{x:.3f}" for x in base["cpu"]))
    big = results.get("big")
    if big:
        out.append("")
        ok = big["seconds"] < TARGET_BIG_SECONDS and big.get("rss_mib", 0) < TARGET_BIG_RSS_MIB
        out.append(f"big: {big['endpoints']} endpoints into SQLite in {big['seconds']:.1f} s "
                   f"({big['endpoints'] / big['seconds']:.0f}/s), "
                   f"peak RSS (process tree, sampled) {big.get('rss_mib', 0):.0f} MiB "
                   f"(the scan process alone {big.get('root_rss_mib', 0):.0f} MiB); "
                   f"targets < {TARGET_BIG_SECONDS:.0f} s and < {TARGET_BIG_RSS_MIB:.0f} MiB: "
                   f"{'met' if ok and not big['wrong'] else 'NOT met'}"
                   + (f"  WRONG: {big['wrong']}" if big["wrong"] else ""))
        out.append("  " + _spent(big))
        floor_big = results.get("big floor")
        if floor_big:
            rate = big["endpoints"] / floor_big["seconds"]
            out.append(f"big floor: the same {big['endpoints']} endpoints in "
                       f"{floor_big['seconds']:.1f} s ({rate:.0f}/s, "
                       f"{floor_big['threads']} threads, {floor_big['ok']} chains); "
                       f"scan / floor {floor_big['seconds'] / big['seconds']:.2f}x")
            out.append("  " + _spent(floor_big))
    if verdicts:
        out.append("")
        out.extend(verdicts)
    return "\n".join(out)


def _spent(row: dict[str, Any]) -> str:
    """What the machine spent during one big run (see :func:`accounted`)."""
    machine = row.get("machine_cpu")
    text = f"machine CPU {machine:.0f} s, " if machine is not None else ""
    if "tree_cpu" in row:
        text += (f"chainwatch's processes {row['tree_cpu']:.0f} s of it (the scan process "
                 f"{row['root_cpu']:.0f} s; sampled), ")
    if "client_cpu" in row:
        text += f"the floor's process {row['client_cpu']:.0f} s of it, "
    return (text + f"nginx {row.get('nginx_cpu', 0):.0f} s; load average "
            f"{row.get('load_before', '?')} before, {row.get('load_after', '?')} after")


def wrong_anywhere(results: dict[str, Any]) -> bool:
    for row in ROWS:
        runs = results.get(row)
        if isinstance(runs, list) and any(r["wrong"] for r in runs):
            return True
    big = results.get("big")
    return bool(big and big["wrong"])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--endpoints", type=int, default=1000)
    parser.add_argument("--addresses", type=int, default=4,
                        help="loopback addresses the endpoints are spread over")
    parser.add_argument("--repeat", type=int, default=3, help="turns")
    parser.add_argument("--floor-threads", default="16,32,64",
                        help="thread pool sizes the floor is swept over (best kept)")
    parser.add_argument("--check-runs", type=int, default=10)
    parser.add_argument("--check-baseline", metavar="REV",
                        help="also time check with src/ of this git revision, alternating")
    parser.add_argument("--nginx", help="nginx binary (default: found on PATH or in sbin)")
    parser.add_argument("--nginx-workers", default="auto")
    _probe().add_farm_argument(parser)
    parser.add_argument("--pg-url", default=os.environ.get("CHAINWATCH_BENCH_PG",
                                                           "postgresql+psycopg://postgres@"
                                                           "127.0.0.1:5432/postgres"))
    parser.add_argument("--skip", default="", help="comma-separated: sqlite, pg, check")
    parser.add_argument("--big", action="store_true",
                        help="also one SQLite scan of --big-endpoints (100,000) endpoints")
    parser.add_argument("--big-endpoints", type=int, default=100_000)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)

    probe, scan = _probe(), _scan()
    prepared = probe.prepare(parser, args)
    if prepared is None:
        return 0
    nginx, addresses, skip, meta = prepared
    meta["turns"] = max(1, args.repeat)
    meta["date"] = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    meta["load_before"] = " ".join(f"{x:.1f}" for x in os.getloadavg())
    total = max(args.endpoints, args.big_endpoints if args.big else 0)
    results: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="chainwatch-bench-") as tmp_name:
        tmp = Path(tmp_name)
        tmp.chmod(0o755)  # nginx workers may run as another user
        port = probe.free_port(addresses)
        print(f"building {total} certificate chains...", file=sys.stderr)
        targets = probe.build_certificates(tmp, total, addresses, port)
        main_set = targets[: args.endpoints]
        root = tmp / "root.pem"
        inventory = tmp / "inventory.yaml"
        scan.write_inventory(inventory, root, main_set)
        print(f"starting nginx with {total} server names "
              f"({probe.farm_mode(args.farm, total)} farm)...", file=sys.stderr)
        with probe.running_nginx(nginx, tmp, targets, args.nginx_workers,
                                 args.farm) as server:
            threads = [int(t) for t in args.floor_threads.split(",") if t.strip()]
            spec = probe._spec("floor", main_set, {"threads": threads}, tmp)
            floor = probe._Worker(sys.executable, "floor", spec, tmp)
            try:
                floor.answer()  # set up, swept and warm
                results["floor"] = []
                rows: dict[str, Any] = {row: [] for row in ROWS}
                if "sqlite" in skip:
                    rows.pop("sqlite first"), rows.pop("sqlite again")
                if "pg" in skip:
                    rows.pop("pg first"), rows.pop("pg again")
                for turn in range(meta["turns"]):
                    print(f"turn {turn + 1}/{meta['turns']}...", file=sys.stderr)
                    floor.ask("run")
                    results["floor"].append(float(floor.answer()["seconds"]))
                    if "sqlite first" in rows:
                        url = f"sqlite:///{tmp / f'turn-{turn}.db'}"
                        rows["sqlite first"].append(run_scan(inventory, url, len(main_set)))
                        rows["sqlite again"].append(run_scan(inventory, url, len(main_set)))
                    if "pg first" in rows:
                        pg, why = scan.create_pg_database(args.pg_url)
                        if pg is None:
                            rows["pg first"] = rows["pg again"] = why
                            continue
                        try:
                            rows["pg first"].append(run_scan(inventory, pg, len(main_set)))
                            rows["pg again"].append(run_scan(inventory, pg, len(main_set)))
                        finally:
                            scan.drop_pg_database(args.pg_url, pg)
                results.update({k: v for k, v in rows.items() if v})
                floor_threads = int(floor.finish().get("threads", threads[0]))
            finally:
                floor.close()
            if "check" not in skip:
                print("measuring chainwatch check...", file=sys.stderr)
                baseline = None
                if args.check_baseline:
                    baseline = sibling("inventory").export_tree(args.check_baseline,
                                                                tmp / "baseline")
                    meta["check_baseline"] = args.check_baseline
                results["check"] = measure_check(main_set[0], root, args.check_runs,
                                                 baseline)
            if args.big:
                big_set = targets[: args.big_endpoints]
                big_inventory = tmp / "big.yaml"
                scan.write_inventory(big_inventory, root, big_set)
                print(f"scanning {args.big_endpoints} endpoints...", file=sys.stderr)
                results["big"] = {
                    **accounted(server.pid, lambda: run_scan(
                        big_inventory, f"sqlite:///{tmp / 'big.db'}", args.big_endpoints,
                        sample_rss=True)),
                    "endpoints": args.big_endpoints}
                if "floor" not in skip:
                    print(f"the floor on the same {args.big_endpoints} endpoints, once "
                          f"({floor_threads} threads)...", file=sys.stderr)
                    results["big floor"] = accounted(server.pid, lambda: big_floor(
                        big_set, floor_threads, tmp))
    meta["load_after"] = " ".join(f"{x:.1f}" for x in os.getloadavg())
    if args.json:
        print(json.dumps({"meta": meta, "results": results}, indent=2))
    else:
        print(render(results, meta))
    return 1 if wrong_anywhere(results) else 0


if __name__ == "__main__":
    sys.exit(main())
