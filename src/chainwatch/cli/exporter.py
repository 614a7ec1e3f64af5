"""``chainwatch exporter``: a blackbox-style multi-target exporter for Prometheus."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from chainwatch.errors import InputError
from chainwatch.model.names import parse_ip, parse_port, split_host_port

DEFAULT_LISTEN = "127.0.0.1:9219"


def listen_arg(text: str, flag: str = "--listen") -> tuple[str, int]:
    """``HOST:PORT`` / ``[V6]:PORT`` to listen on; the host must be an IP address."""
    try:
        host, port = split_host_port(text)
    except ValueError as exc:
        raise InputError(f"{flag} {text[:80]!r}: {exc}") from None
    if port is None or parse_ip(host) is None:
        raise InputError(f"{flag} {text[:80]!r}: expected IP:PORT, e.g. {DEFAULT_LISTEN}")
    try:
        return str(parse_ip(host)), parse_port(port)
    except ValueError as exc:
        raise InputError(f"{flag} {text[:80]!r}: {exc}") from None


def exporter_command(
    config: Annotated[Path | None, typer.Option(
        "--config", help="Modules YAML (profiles, starttls, sni, timeout; named profiles; "
        "an allow list). Default: one module, 'default' (mozilla, 10s).")] = None,
    listen: Annotated[str, typer.Option(
        "--listen", help="Address and port to serve on.")] = DEFAULT_LISTEN,
) -> None:
    """Serve GET /probe?target=HOST:PORT&module=NAME for Prometheus (the blackbox pattern)."""
    from chainwatch.config.exporter import load_exporter_config
    from chainwatch.service.exporter import serve

    settings = load_exporter_config(config)
    host, port = listen_arg(listen)
    shown = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    Console(stderr=True).print(
        f"chainwatch exporter: http://{shown}/probe?target=HOST:PORT&module=NAME "
        f"(modules: {', '.join(sorted(settings.modules))}); Ctrl-C stops",
        highlight=False, soft_wrap=True)
    sys.stderr.flush()
    try:
        serve(settings, host, port)
    except OSError as exc:
        raise InputError(f"--listen {shown}: {exc.strerror or exc}") from None
