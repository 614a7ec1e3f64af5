"""A real Prometheus for tests: its own config, data directory and loopback port, killed
at the end; plus ``promtool`` and a small ``/metrics`` listener.

::

    with PrometheusServer.start(tmp_path, [scrape_job("chainwatch", "127.0.0.1:9999")]) as prom:
        prom.wait_for_targets_up(1)
        result = prom.wait_for('chainwatch_target_status{target="a:443"}')  # vector samples

Every wait is bounded (:data:`WAIT`). A missing ``prometheus``/``promtool`` skips the
test, or fails it under ``CHAINWATCH_REQUIRE_SERVICES=1`` (:func:`tests.services.unavailable`).
Reusable for any scrape target: ``serve``'s own ``/metrics`` once it is wired in, or a
:class:`MetricsListener` serving :func:`chainwatch.service.metrics.exposition`.
"""

from __future__ import annotations

import contextlib
import shutil
import subprocess
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any

import httpx
import uvicorn
import yaml
from fastapi import FastAPI
from fastapi.responses import Response

from chainwatch.config.values import Inventory
from chainwatch.service.metrics import exposition
from chainwatch.storage.repo import Database

from .services import _tail, free_port, unavailable

WAIT = 60.0
"""Seconds any wait (start, first scrape, a query's answer) may take before failing."""
POLL = 0.25


def tool(name: str) -> str:
    """The path of ``prometheus`` or ``promtool`` (skips / fails when missing)."""
    path = shutil.which(name) or (f"/usr/bin/{name}" if Path(f"/usr/bin/{name}").exists()
                                  else None)
    if path is None:
        unavailable(f"{name} is not installed (apt-get install prometheus)")
    return path


def promtool(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    """Run ``promtool ARGS`` (``stdin`` fed to it), bounded by :data:`WAIT`."""
    return subprocess.run([tool("promtool"), *args], input=stdin, capture_output=True,
                          text=True, timeout=WAIT, check=False)


def scrape_job(name: str, address: str, *, path: str = "/metrics",
               params: dict[str, list[str]] | None = None, interval: str = "1s",
               relabel_targets: Sequence[str] | None = None) -> dict[str, Any]:
    """A scrape config. With ``relabel_targets``, the blackbox multi-target pattern: each
    listed target becomes ``?target=...`` of a scrape of ``address``."""
    job: dict[str, Any] = {"job_name": name, "scrape_interval": interval,
                           "scrape_timeout": interval, "metrics_path": path}
    if params:
        job["params"] = params
    if relabel_targets is None:
        job["static_configs"] = [{"targets": [address]}]
        return job
    job["static_configs"] = [{"targets": list(relabel_targets)}]
    job["relabel_configs"] = [
        {"source_labels": ["__address__"], "target_label": "__param_target"},
        {"source_labels": ["__param_target"], "target_label": "instance"},
        {"target_label": "__address__", "replacement": address},
    ]
    return job


class PrometheusServer:
    """A ``prometheus`` process on a free loopback port."""

    def __init__(self, process: subprocess.Popen[bytes], port: int, log: Path) -> None:
        self.process = process
        self.port = port
        self.log = log
        self.url = f"http://127.0.0.1:{port}"
        self.client = httpx.Client(base_url=self.url, timeout=10.0)

    @classmethod
    def start(cls, directory: Path, jobs: Sequence[dict[str, Any]],
              rule_files: Sequence[Path] = ()) -> PrometheusServer:
        binary = tool("prometheus")
        directory.mkdir(parents=True, exist_ok=True)
        config = directory / "prometheus.yml"
        config.write_text(yaml.safe_dump({
            "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
            "rule_files": [str(p) for p in rule_files],
            "scrape_configs": list(jobs),
        }), encoding="utf-8")
        port = free_port()
        log = directory / "prometheus.log"
        with log.open("wb") as out:
            process = subprocess.Popen(
                [binary, f"--config.file={config}", f"--storage.tsdb.path={directory / 'data'}",
                 f"--web.listen-address=127.0.0.1:{port}", "--log.level=warn"],
                stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            )
        server = cls(process, port, log)
        try:
            server._wait(lambda: server.client.get("/-/ready").status_code == 200, "ready")
        except BaseException:
            server.stop()
            raise
        return server

    def __enter__(self) -> PrometheusServer:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()

    def stop(self) -> None:
        self.client.close()
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=15)

    def _wait(self, ready: Callable[[], bool], what: str) -> None:
        deadline = time.monotonic() + WAIT
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise AssertionError(f"prometheus exited ({self.process.returncode}): "
                                     f"{_tail(self.log)}")
            with contextlib.suppress(httpx.HTTPError):
                if ready():
                    return
            time.sleep(POLL)
        raise AssertionError(f"prometheus not {what} within {WAIT:.0f}s: {_tail(self.log)}")

    def query(self, promql: str) -> dict[str, Any]:
        """``/api/v1/query``'s ``data`` (fails on an error answer)."""
        answer = self.client.get("/api/v1/query", params={"query": promql}).json()
        assert answer.get("status") == "success", (promql, answer)
        data: dict[str, Any] = answer["data"]
        return data

    def wait_for(self, promql: str, *, minimum: int = 1) -> list[dict[str, Any]]:
        """The query's vector once it has at least ``minimum`` samples."""
        found: list[dict[str, Any]] = []

        def enough() -> bool:
            nonlocal found
            found = list(self.query(promql)["result"])
            return len(found) >= minimum

        self._wait(enough, f"answering {promql!r} with {minimum} samples")
        return found

    def targets(self) -> list[dict[str, Any]]:
        data = self.client.get("/api/v1/targets").json()["data"]
        return list(data["activeTargets"])

    def wait_for_targets_up(self, count: int) -> list[dict[str, Any]]:
        """The active targets once ``count`` of them are up (their last scrape worked)."""
        found: list[dict[str, Any]] = []

        def up() -> bool:
            nonlocal found
            found = self.targets()
            return sum(t["health"] == "up" for t in found) >= count

        try:
            self._wait(up, f"scraping {count} targets")
        except AssertionError as exc:
            errors = [(t["scrapeUrl"], t.get("lastError")) for t in found]
            raise AssertionError(f"{exc}; targets: {errors}") from None
        return found


class MetricsListener:
    """A real HTTP listener (uvicorn, in a thread) answering ``GET /metrics`` with
    :func:`~chainwatch.service.metrics.exposition` of a database."""

    def __init__(self, db: Database, inventory: Inventory | None = None) -> None:
        app = FastAPI(docs_url=None, redoc_url=None, openapi_url=None)

        @app.get("/metrics")
        def metrics() -> Response:
            body, content_type = exposition(db, inventory)
            return Response(content=body, media_type=content_type)

        self.port = free_port()
        self.address = f"127.0.0.1:{self.port}"
        self.server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=self.port,
                                                    log_level="warning", access_log=False))
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def __enter__(self) -> MetricsListener:
        self.thread.start()
        deadline = time.monotonic() + WAIT
        while not self.server.started:
            if time.monotonic() > deadline or not self.thread.is_alive():
                raise AssertionError("the /metrics listener did not start")
            time.sleep(0.05)
        return self

    def __exit__(self, *_: object) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=15)


@contextlib.contextmanager
def exporter_process(cli: Sequence[str], config: Path | None) -> Iterator[str]:
    """A real ``chainwatch exporter`` process on a free loopback port; yields its
    ``host:port`` once it answers, and stops it at the end."""
    port = free_port()
    args = [*cli, "exporter", "--listen", f"127.0.0.1:{port}"]
    if config is not None:
        args += ["--config", str(config)]
    process = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                               stdin=subprocess.DEVNULL)
    address = f"127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + WAIT
        while True:
            if process.poll() is not None:
                err = process.stderr.read().decode(errors="replace") if process.stderr else ""
                raise AssertionError(f"chainwatch exporter exited ({process.returncode}): {err}")
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"http://{address}/-/healthy", timeout=2).status_code == 200:
                    break
            if time.monotonic() > deadline:
                raise AssertionError("chainwatch exporter did not answer within "
                                     f"{WAIT:.0f}s")
            time.sleep(POLL)
        yield address
    finally:
        if process.poll() is None:
            process.terminate()
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=15)
        if process.stderr is not None:
            process.stderr.close()
