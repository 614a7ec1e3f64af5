"""Inventories that used to kill or hang chainwatch: every value that parses into an
overflow or a recursion is a field error at load time, unknown YAML tags are refused, and
``serve`` survives a SIGHUP with such a file (logged, previous inventory kept)."""

from __future__ import annotations

import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from chainwatch.config.inventory import load_inventory
from chainwatch.errors import InventoryError

EXE = Path(sys.executable).with_name("chainwatch")


def error_of(tmp_path: Path, text: str) -> str:
    path = tmp_path / "inv.yaml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(InventoryError) as caught:
        load_inventory(path)
    message = str(caught.value)
    assert "\n" not in message and len(message) < 400
    return message.replace(str(path), "inv.yaml")


@pytest.mark.parametrize(("text", "expect"), [
    ("defaults: {timeout: 99999999999999999999999s}\n",
     "inv.yaml:1: defaults.timeout: must be at most 36500 days"),
    ("defaults: {interval: 99999999999999999d}\n",
     "inv.yaml:1: defaults.interval: must be at most 36500 days"),
    ("defaults: {retention: 999999999d}\n",
     "inv.yaml:1: defaults.retention: must be at most 36500 days"),
    ("defaults: {renew_at: 9999999d}\n",
     "inv.yaml:1: defaults.renew_at: must be at most 36500 days"),
    ("endpoints: [{host: a.example, interval: 10000000000000000000000000000000000000000d}]\n",
     "inv.yaml:1: endpoints[0].interval: must be at most 36500 days"),
])
def test_durations_are_bounded_at_load_time(tmp_path: Path, text: str, expect: str) -> None:
    assert error_of(tmp_path, text).startswith(expect)


def test_deep_nesting_is_a_load_error(tmp_path: Path) -> None:
    assert "nested more than 64 levels deep" in error_of(tmp_path, "a: " + "[" * 100_000)
    nested = "endpoints:\n  - " + "{a: " * 70 + "1" + "}" * 70 + "\n"
    assert "nested more than 64 levels deep" in error_of(tmp_path, nested)


@pytest.mark.parametrize("text", [
    "endpoints: [!foo {host: a.example}]\n",
    "endpoints: !!python/object:os.system {host: a.example}\n",
    "defaults: !!python/name:os.system\n",
    "endpoints: [!bar a.example]\n",
])
def test_unknown_yaml_tags_are_refused(tmp_path: Path, text: str) -> None:
    message = error_of(tmp_path, text)
    assert message.startswith("inv.yaml:1:") and "tag" in message


def test_a_nul_character_names_its_line(tmp_path: Path) -> None:
    assert error_of(tmp_path, "endpoints:\n  - a.example\x00\n").startswith(
        "inv.yaml:2: invalid YAML: character '\\x00' is not allowed")


def test_home_of_a_missing_user(tmp_path: Path) -> None:
    message = error_of(tmp_path, "files: [{path: '~nosuchuser-cw/x.pem'}]\n")
    assert message.startswith("inv.yaml:1: files[0].path: cannot expand")


def test_serve_survives_a_reload_of_a_hostile_file(tmp_path: Path) -> None:
    inv = tmp_path / "inv.yaml"
    inv.write_text("defaults: {interval: 1h, timeout: 1s}\n"
                   "endpoints: [{host: nothing.lab.test, port: 1, ip: 127.0.0.1}]\n")
    proc = subprocess.Popen([str(EXE), "serve", str(inv), "--no-web",
                             "--db", str(tmp_path / "cw.sqlite")],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    lines: list[str] = []
    assert proc.stderr is not None
    reader = threading.Thread(target=lambda: lines.extend(iter(proc.stderr.readline, "")),
                              daemon=True)
    reader.start()

    def wait_for(text: str, count: int) -> None:
        deadline = time.monotonic() + 60  # generous: the machine may be loaded
        while sum(text in line for line in list(lines)) < count:
            assert proc.poll() is None, "".join(lines)
            assert time.monotonic() < deadline, f"no {text!r} #{count}:\n" + "".join(lines)
            time.sleep(0.05)

    failed = "inventory reload failed, keeping the previous one"
    try:
        wait_for("chainwatch serve: watching", 1)  # the SIGHUP handler is installed
        for n, text in enumerate(("defaults: {retention: 999999999d}\n", "a: " + "[" * 100_000,
                                  "endpoints: [!foo {host: a}]\n"), start=1):
            inv.write_text(text)
            proc.send_signal(signal.SIGHUP)
            wait_for(failed, n)  # one reload at a time: two quick SIGHUPs are one reload
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=60) == 0
        reader.join(10)
        err = "".join(lines)
        assert err.count(failed) == 3, err
        assert "Traceback" not in err
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=10)
        if proc.stderr is not None:
            proc.stderr.close()

