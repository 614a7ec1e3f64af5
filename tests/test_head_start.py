"""``probe.parallel.HeadStart``: ``chainwatch scan`` starts a large sweep's probe
processes as soon as it has read the inventory, and imports its storage and opens its
database while they probe; the batch then takes those probes over instead of starting
its own. Probes nobody takes over are ended."""

from __future__ import annotations

import json
import multiprocessing
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from chainwatch.model import Target
from chainwatch.probe import parallel
from chainwatch.probe.handshake import Limits
from chainwatch.probe.parallel import HeadStart, probe_all

from .pki import PKI, pem_of
from .servers import ServerLoop, server_context, tls_handler

pytestmark = pytest.mark.skipif("forkserver" not in multiprocessing.get_all_start_methods(),
                                reason="no forkserver on this platform")
MANY = parallel.PROCESS_MIN_ADDRESSES  # the smallest sweep that probes in processes


@pytest.fixture
def server(tmp_path: Path) -> Any:
    pki = PKI()
    root = pki.root("Head Start Root")
    inter = root.intermediate("Head Start CA")
    leaf = inter.leaf("www.example.com")
    (tmp_path / "root.pem").write_bytes(pem_of(root.cert))
    with ServerLoop() as lab:
        yield lab.serve(tls_handler(server_context(leaf.chain(inter), leaf.key, tmp_path)))


def _counting_starts(monkeypatch: pytest.MonkeyPatch) -> list[Any]:
    plans: list[Any] = []
    real = parallel._Plan.start

    def start(plan: Any) -> None:
        plans.append(plan)
        real(plan)

    monkeypatch.setattr(parallel._Plan, "start", start)
    return plans


def test_probe_all_takes_over_the_probes_begun_for_it(
        server: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    plans = _counting_starts(monkeypatch)
    targets = [Target("127.0.0.1", server.port, sni=f"n{i}.example.com") for i in range(MANY)]
    limits = Limits(timeout=10)
    seen: list[int] = []
    with HeadStart() as head:
        assert head.begin(targets, limits=limits, workers=2)
        assert len(plans) == 1  # the children are probing already
        observations = probe_all(targets, limits=limits, workers=2, begun=head,
                                 on_result=lambda i, _: seen.append(i))
    assert len(plans) == 1  # none started for the call itself
    assert [o.target.sni for o in observations] == [t.sni for t in targets]  # in order
    assert all(o.failure is None and len(o.chain) == 2 for o in observations)
    assert sorted(seen) == list(range(MANY))
    assert plans[0].children and not any(c.process.is_alive() for c in plans[0].children)


def test_probes_begun_for_other_arguments_are_ended_not_used(
        server: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    plans = _counting_starts(monkeypatch)
    targets = [Target("127.0.0.1", server.port, sni=f"n{i}.example.com") for i in range(MANY)]
    with HeadStart() as head:
        assert head.begin(targets, limits=Limits(timeout=10), workers=2)
        observations = probe_all(targets, limits=Limits(timeout=20), workers=2, begun=head)
        assert len(plans) == 2  # a timeout of its own: its own probes
        assert all(o.failure is None for o in observations)
    begun = plans[0]
    assert begun.children and not any(c.process.is_alive() for c in begun.children)


def test_a_small_sweep_begins_nothing(server: Any) -> None:
    with HeadStart() as head:
        assert not head.begin([Target("127.0.0.1", server.port)] * 3, workers=2)
        assert not head.begin([Target("127.0.0.1", server.port)] * MANY, workers=1)


def test_scan_of_a_large_inventory_reports_every_endpoint(server: Any, tmp_path: Path) -> None:
    inventory = tmp_path / "inventory.yaml"
    lines = ["profiles:",
             f"  lab: {{trust: [{json.dumps('file:' + str(tmp_path / 'root.pem'))}]}}",
             "defaults: {profiles: [lab]}", "endpoints:"]
    lines += [f"  - {{host: n{i}.example.com, port: {server.port}, ip: 127.0.0.1}}"
              for i in range(MANY)]
    inventory.write_text("\n".join(lines) + "\n")
    program = "import sys; from chainwatch.cli import main; sys.argv[0] = 'chainwatch'; main()"
    done = subprocess.run(
        [sys.executable, "-c", program, "scan", str(inventory),
         "--db", f"sqlite:///{tmp_path / 'cw.db'}", "--format", "json"],
        capture_output=True, text=True, timeout=300)
    assert done.returncode == 2, done.stderr  # every name but www.example.com mismatches
    reports = json.loads(done.stdout)["reports"]
    assert sorted(r["host"] for r in reports) == sorted(f"n{i}.example.com" for i in range(MANY))
    assert {r["status"] for r in reports} == {"critical"}
    assert all(len(r["chain"]) == 2 for r in reports)


def test_a_scan_that_cannot_open_its_database_leaves_no_probes_behind(
        server: Any, tmp_path: Path) -> None:
    inventory = tmp_path / "inventory.yaml"
    lines = ["endpoints:"] + [f"  - {{host: n{i}.example.com, port: {server.port}, "
                              "ip: 127.0.0.1}" for i in range(MANY)]
    inventory.write_text("\n".join(lines) + "\n")
    blocked = tmp_path / "not-a-dir"
    blocked.write_text("a file where the database's directory should be")
    program = ("import sys; from chainwatch.cli import main; sys.argv[0] = 'chainwatch'\n"
               "try:\n    main()\nfinally:\n"
               "    import multiprocessing\n"
               "    print(len(multiprocessing.active_children()), file=sys.stderr)\n")
    done = subprocess.run(
        [sys.executable, "-c", program, "scan", str(inventory),
         "--db", f"sqlite:///{blocked / 'cw.db'}"],
        capture_output=True, text=True, timeout=300)
    assert done.returncode == 3
    assert "chainwatch: error:" in done.stderr and "Traceback" not in done.stderr
    assert done.stderr.strip().splitlines()[-1] == "0"  # the begun probes were ended


def test_scan_begins_only_the_first_timeout_group(
        server: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    """The timeout groups are probed one after another (so the concurrency and the
    per-address limit hold for the whole sweep): only the first may begin early."""
    from chainwatch.cli import run

    begun: list[int] = []
    real = HeadStart.begin

    def begin(self: HeadStart, targets: Any, **kwargs: Any) -> bool:
        targets = list(targets)
        begun.append(len(targets))
        return real(self, targets, **kwargs)

    monkeypatch.setattr(HeadStart, "begin", begin)
    inventory = tmp_path / "inventory.yaml"
    lines = ["endpoints:"]
    lines += [f"  - {{host: a{i}.example.com, port: {server.port}, ip: 127.0.0.1, "
              "timeout: 5s}" for i in range(MANY)]
    lines += [f"  - {{host: b{i}.example.com, port: {server.port}, ip: 127.0.0.1, "
              "timeout: 6s}" for i in range(MANY)]
    inventory.write_text("\n".join(lines) + "\n")
    code = run(["scan", str(inventory), "--db", f"sqlite:///{tmp_path / 'cw.db'}",
                "--format", "json"])
    reports = json.loads(capsys.readouterr().out)["reports"]
    assert code in (1, 2, 3)  # the names do not match the served leaf: not ok
    assert len(reports) == 2 * MANY and all(len(r["chain"]) == 2 for r in reports)
    assert begun == [MANY]
