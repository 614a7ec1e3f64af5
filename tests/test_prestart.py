"""``probe.parallel.prestart``: the forkserver starts in the background (``scan`` starts it
while the inventory is parsed) and the probe processes come from that one server."""

from __future__ import annotations

import json
import multiprocessing
import subprocess
import sys
from pathlib import Path

import pytest

from .pki import PKI
from .servers import ServerLoop, server_context, tls_handler

PROGRAM = """
import json, sys
from multiprocessing import forkserver
from chainwatch.model import Target
from chainwatch.probe.parallel import prestart, probe_all
thread = prestart()
thread.join(60)
started = forkserver._forkserver._forkserver_pid
port = int(sys.argv[1])
observations = probe_all([Target("127.0.0.1", port)] * 2, workers=2, processes=True)
print(json.dumps({"started": started, "after": forkserver._forkserver._forkserver_pid,
                  "chains": [len(o.chain) for o in observations]}))
"""


@pytest.mark.skipif("forkserver" not in multiprocessing.get_all_start_methods(),
                    reason="no forkserver on this platform")
def test_prestart_starts_the_forkserver_the_probes_use(tmp_path: Path) -> None:
    pki = PKI()
    inter = pki.root("Prestart Root").intermediate("Prestart CA")
    leaf = inter.leaf("www.example.com")
    with ServerLoop() as lab:
        ep = lab.serve(tls_handler(server_context(leaf.chain(inter), leaf.key, tmp_path)))
        done = subprocess.run([sys.executable, "-c", PROGRAM, str(ep.port)],
                              capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    seen = json.loads(done.stdout.strip().splitlines()[-1])
    assert seen["started"] is not None
    assert seen["after"] == seen["started"]  # the probes' children came from that server
    assert seen["chains"] == [2, 2]
