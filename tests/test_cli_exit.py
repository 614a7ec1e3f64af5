"""How the ``chainwatch`` command ends: once the command returns, the process leaves
without tearing the interpreter down (a large scan spent half a second freeing objects),
but only after what an ordinary exit does that anyone can see: non-daemon threads
joined, every exit handler run, the output flushed, the command's status kept."""

from __future__ import annotations

import datetime as dt
import json
import subprocess
import sys
from pathlib import Path

from .pki import PKI, at, pem_of
from .servers import ServerLoop, server_context, tls_handler

NOW = at("2026-03-01T12:00:00Z")

WRAPPED = """
import atexit, sys, threading, time
from pathlib import Path
from chainwatch.cli import app

out = Path(sys.argv[1])
real_run = app.run

def run(argv):
    status = real_run(argv)
    # Registered while the command runs, as libraries do: after main()'s own handler.
    atexit.register(lambda: (out / "atexit").write_text("ran"))
    def late() -> None:
        time.sleep(0.3)
        (out / "thread").write_text("joined")
    threading.Thread(target=late).start()  # not a daemon: exit waits for it
    return status

app.run = run
sys.argv = ["chainwatch", *sys.argv[2:]]
app.main()
"""


def test_the_command_leaves_with_its_status_and_its_whole_output(tmp_path: Path) -> None:
    pki = PKI(now=NOW)
    root = pki.root("Exit Root")
    inter = root.intermediate("Exit CA")
    leaf = inter.leaf("www.example.com", expires=NOW + dt.timedelta(days=20))  # warning
    (tmp_path / "root.pem").write_bytes(pem_of(root.cert))
    with ServerLoop() as lab:
        ep = lab.serve(tls_handler(server_context(leaf.chain(inter), leaf.key, tmp_path)))
        done = subprocess.run(
            [sys.executable, "-c", WRAPPED, str(tmp_path), "check", ep.hostport,
             "--sni", "www.example.com", "--profile", f"file:{tmp_path / 'root.pem'}",
             "--at", "2026-03-01T12:00:00Z", "--format", "json"],
            capture_output=True, text=True, timeout=120)
    assert done.returncode == 1, done.stderr  # the plugin's WARNING
    report = json.loads(done.stdout)  # all of it: flushed before the process ended
    assert report["status"] == "warning"
    assert (tmp_path / "atexit").read_text() == "ran"
    assert (tmp_path / "thread").read_text() == "joined"


def test_bad_input_still_exits_3_with_its_message(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("endpoints:\n  - {host: www.example.com, port: 99999}\n")
    done = subprocess.run(
        [sys.executable, "-c", WRAPPED, str(tmp_path), "scan", str(bad),
         "--db", f"sqlite:///{tmp_path / 'cw.db'}"],
        capture_output=True, text=True, timeout=120)
    assert done.returncode == 3
    assert "bad.yaml:2" in done.stderr and "port" in done.stderr
    assert "Traceback" not in done.stderr
    assert (tmp_path / "atexit").read_text() == "ran"
