"""``chainwatch check HOST[:PORT]`` end to end against real servers on loopback: the JSON
report with its ``target``, exit statuses 0/1/2/3, ``--ip``/``--sni``/``--starttls``, every
address of a name, and bad input that ends in one line on stderr and exit 3."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import socket
import ssl
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from chainwatch.cli.common import endpoint_arg
from chainwatch.errors import InputError

from . import servers as srv
from .pki import PKI, at, pem_of
from .servers import ServerLoop, server_context

Cli = Callable[..., tuple[int, str, str]]
NOW = at("2026-03-01T12:00:00Z")
WHEN = "2026-03-01T12:00:00Z"
CONTRACT = {"schema", "status", "evaluated_at", "host", "breaks_at", "days_left", "chain",
            "profiles", "findings", "target"}


@pytest.fixture(scope="module")
def pki() -> dict[str, Any]:
    p = PKI(now=NOW)
    root = p.root("Check Root")
    inter = root.intermediate("Check CA")
    return {
        "root": root,
        "inter": inter,
        "leaf": inter.leaf("www.example.com", expires=NOW + dt.timedelta(days=90)),
        "soon": inter.leaf("www.example.com", expires=NOW + dt.timedelta(days=20)),
    }


@pytest.fixture
def lab() -> Iterator[ServerLoop]:
    with ServerLoop() as servers:
        yield servers


@pytest.fixture
def trust(pki: dict[str, Any], tmp_path: Path) -> str:
    path = tmp_path / "trust.pem"
    path.write_bytes(pem_of(pki["root"].cert))
    return f"file:{path}"


@pytest.fixture
def no_dns(monkeypatch: pytest.MonkeyPatch) -> dict[str, list[str]]:
    """Name resolution from a table the test fills (never the real resolver)."""
    table: dict[str, list[str]] = {}

    async def getaddrinfo(self: object, host: str, port: int, **_: object) -> list[Any]:
        if host not in table:
            raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
        return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", (ip, port)) for ip in table[host]]

    monkeypatch.setattr(asyncio.base_events.BaseEventLoop, "getaddrinfo", getaddrinfo)
    return table


def serve(lab: ServerLoop, pki: dict[str, Any], tmp: Path, leaf: str = "leaf",
          host: str = "127.0.0.1", port: int = 0, **kw: Any) -> srv.Endpoint:
    chosen = pki[leaf]
    ctx = server_context(chosen.chain(pki["inter"]), chosen.key, tmp, **kw)
    return lab.serve(srv.tls_handler(ctx), host=host, port=port)


def check_json(cli: Cli, *args: str) -> tuple[int, dict[str, Any], str]:
    code, out, err = cli("check", *args, "--at", WHEN, "--format", "json")
    assert out, f"no JSON on stdout; stderr: {err}"
    return code, json.loads(out), err


def test_ok_report_has_the_target(
    cli: Cli, lab: ServerLoop, pki: dict[str, Any], tmp_path: Path, trust: str
) -> None:
    ep = serve(lab, pki, tmp_path)
    code, report, err = check_json(cli, ep.hostport, "--sni", "www.example.com",
                                   "--profile", trust)
    assert (code, err) == (0, "")
    assert set(report) == CONTRACT
    assert report["status"] == "ok"
    assert report["host"] == "www.example.com"
    assert report["days_left"] == 90
    assert report["target"] == {"host": "127.0.0.1", "port": ep.port, "ip": "127.0.0.1",
                                "sni": "www.example.com", "starttls": None}
    assert [c["sha256"] for c in report["chain"]] == [
        pki["leaf"].cert.sha256, pki["inter"].cert.sha256
    ]
    assert report["profiles"][0]["trusted"] is True


def test_ip_and_sni_skip_resolution(
    cli: Cli, lab: ServerLoop, pki: dict[str, Any], tmp_path: Path, trust: str,
    no_dns: dict[str, list[str]],
) -> None:
    ep = serve(lab, pki, tmp_path, sni=["www.example.com"])
    code, report, _ = check_json(cli, f"www.example.com:{ep.port}", "--ip", "127.0.0.1",
                                 "--sni", "www.example.com", "--profile", trust)
    assert code == 0
    assert report["target"]["ip"] == "127.0.0.1"
    assert report["target"]["host"] == "www.example.com"
    assert report["target"]["sni"] == "www.example.com"


def test_warning_is_exit_1(
    cli: Cli, lab: ServerLoop, pki: dict[str, Any], tmp_path: Path, trust: str
) -> None:
    ep = serve(lab, pki, tmp_path, leaf="soon")
    code, report, _ = check_json(cli, ep.hostport, "--sni", "www.example.com",
                                 "--profile", trust)
    assert code == 1
    assert report["status"] == "warning"
    assert report["days_left"] == 20
    assert "EXPIRES_SOON" in {f["code"] for f in report["findings"]}


def test_critical_is_exit_2(
    cli: Cli, lab: ServerLoop, pki: dict[str, Any], tmp_path: Path, trust: str
) -> None:
    ep = serve(lab, pki, tmp_path)
    code, report, _ = check_json(cli, ep.hostport, "--sni", "other.example.com",
                                 "--profile", trust)
    assert code == 2
    assert report["status"] == "critical"
    assert "HOSTNAME_MISMATCH" in {f["code"] for f in report["findings"]}
    # The same server judged by the default profile (mozilla): our test root is unknown.
    code, report, _ = check_json(cli, ep.hostport, "--sni", "www.example.com")
    assert code == 2
    assert report["profiles"][0]["trusted"] is False


def test_refused_port_is_exit_3_with_a_probe_failed_report(cli: Cli) -> None:
    with srv.closed_port() as port:
        code, report, _ = check_json(cli, f"127.0.0.1:{port}")
    assert code == 3
    assert set(report) == CONTRACT
    assert report["status"] == "unknown"
    assert report["chain"] == [] and report["profiles"] == []
    assert report["breaks_at"] is None and report["days_left"] is None
    (finding,) = report["findings"]
    assert finding["code"] == "PROBE_FAILED"
    assert finding["message"] == f"127.0.0.1:{port}: refused: connection refused"
    assert report["target"]["port"] == port


def test_text_output_starts_with_the_plugin_summary(
    cli: Cli, lab: ServerLoop, pki: dict[str, Any], tmp_path: Path, trust: str
) -> None:
    ep = serve(lab, pki, tmp_path, maximum=ssl.TLSVersion.TLSv1_2)
    code, out, _ = cli("check", f"www.example.com:{ep.port}", "--ip", "127.0.0.1",
                       "--at", WHEN, "--profile", trust)
    assert code == 0
    first = out.splitlines()[0]
    assert first.startswith(f"CHAINWATCH OK - www.example.com:{ep.port} [127.0.0.1]: ")
    assert "days_left=90;30;7" in first
    assert "TLSv1.2" in out


def test_starttls(
    cli: Cli, lab: ServerLoop, pki: dict[str, Any], tmp_path: Path, trust: str
) -> None:
    ctx = server_context(pki["leaf"].chain(pki["inter"]), pki["leaf"].key, tmp_path)
    ep = lab.serve(srv.smtp_handler(ctx))
    code, report, _ = check_json(cli, ep.hostport, "--starttls", "SMTP", "--sni",
                                 "www.example.com", "--profile", trust)
    assert code == 0
    assert report["target"]["starttls"] == "smtp"
    refusing = lab.serve(srv.smtp_handler(ctx, answer=454))
    code, report, _ = check_json(cli, refusing.hostport, "--starttls", "smtp")
    assert code == 3
    assert "starttls_refused" in report["findings"][0]["message"]


def test_silent_server_times_out_with_exit_3(cli: Cli, lab: ServerLoop) -> None:
    ep = lab.serve(srv.silent)
    code, report, _ = check_json(cli, ep.hostport, "--timeout", "1")
    assert code == 3
    assert "timeout" in report["findings"][0]["message"]


def _two_addresses(lab: ServerLoop, pki: dict[str, Any], tmp: Path,
                   second: str | None) -> tuple[srv.Endpoint, int]:
    first = serve(lab, pki, tmp)
    if second is not None:
        try:
            serve(lab, pki, tmp, leaf=second, host="127.0.0.2", port=first.port)
        except OSError as exc:
            pytest.skip(f"127.0.0.2:{first.port} is not available here ({exc})")
    return first, first.port


def test_every_address_is_probed_and_the_worst_reported(
    cli: Cli, lab: ServerLoop, pki: dict[str, Any], tmp_path: Path, trust: str,
    no_dns: dict[str, list[str]],
) -> None:
    no_dns["www.example.com"] = ["127.0.0.1", "127.0.0.2"]
    _, port = _two_addresses(lab, pki, tmp_path, second="soon")
    code, report, _ = check_json(cli, f"www.example.com:{port}", "--profile", trust)
    assert code == 1
    assert report["status"] == "warning"
    assert report["target"]["ip"] == "127.0.0.2"
    assert report["addresses"] == [
        {"ip": "127.0.0.1", "status": "ok", "leaf_sha256": pki["leaf"].cert.sha256,
         "breaks_at": "2026-05-30T12:00:01Z"},
        {"ip": "127.0.0.2", "status": "warning", "leaf_sha256": pki["soon"].cert.sha256,
         "breaks_at": "2026-03-21T12:00:01Z"},
    ]
    code, out, _ = cli("check", f"www.example.com:{port}", "--profile", trust, "--at", WHEN)
    lines = out.splitlines()
    assert code == 1
    assert lines[0].startswith(f"CHAINWATCH WARNING - www.example.com:{port} [127.0.0.2]")
    assert "address 1 of 2: 127.0.0.1" in out and "address 2 of 2: 127.0.0.2" in out


def test_an_address_that_refuses_makes_it_unknown(
    cli: Cli, lab: ServerLoop, pki: dict[str, Any], tmp_path: Path, trust: str,
    no_dns: dict[str, list[str]],
) -> None:
    no_dns["www.example.com"] = ["127.0.0.1", "127.0.0.2"]
    _, port = _two_addresses(lab, pki, tmp_path, second=None)
    code, report, _ = check_json(cli, f"www.example.com:{port}", "--profile", trust)
    assert code == 3
    assert report["status"] == "unknown"
    assert [a["status"] for a in report["addresses"]] == ["ok", "unknown"]
    assert report["addresses"][1]["leaf_sha256"] is None
    assert "[127.0.0.2]: refused" in report["findings"][0]["message"]


def test_unresolvable_name_is_exit_3(cli: Cli, no_dns: dict[str, list[str]]) -> None:
    code, report, _ = check_json(cli, "nowhere.test")
    assert code == 3
    assert report["target"]["ip"] is None and report["target"]["port"] == 443
    assert report["findings"][0]["message"] == (
        "nowhere.test:443: resolve: Name or service not known"
    )


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (["127.0.0.1:443", "--starttls", "gopher"], "--starttls 'gopher'"),
        (["127.0.0.1:99999"], "port must be a number from 1 to 65535"),
        (["127.0.0.1:https"], "port must be"),
        (["[::1"], "expected [IPV6]:PORT"),
        (["127.0.0.1", "--ip", "not-an-ip"], "--ip 'not-an-ip'"),
        (["127.0.0.1", "--timeout", "0"], "--timeout 0"),
        (["127.0.0.1", "--at", "yesterday"], "--at 'yesterday'"),
        (["127.0.0.1", "--profile", "nosuchstore"], "nosuchstore"),
    ],
)
def test_bad_input_is_one_line_and_exit_3(cli: Cli, args: list[str], words: str) -> None:
    code, out, err = cli("check", *args)
    assert code == 3
    assert out == ""
    assert err.startswith("chainwatch: error: ") and err.count("\n") == 1
    assert words in err


@pytest.mark.parametrize(
    ("text", "starttls", "expected"),
    [
        ("www.example.com", None, ("www.example.com", 443)),
        ("www.example.com:8443", None, ("www.example.com", 8443)),
        ("mail.example.com", "smtp", ("mail.example.com", 25)),
        ("mail.example.com:587", "smtp", ("mail.example.com", 587)),
        ("db.example.com", "postgres", ("db.example.com", 5432)),
        ("ldap.example.com", "ldap", ("ldap.example.com", 389)),
        ("[::1]:8443", None, ("::1", 8443)),
        ("[2001:db8::1]", "imap", ("2001:db8::1", 143)),
        ("2001:db8::1", None, ("2001:db8::1", 443)),
        ("127.0.0.1:5222", "xmpp", ("127.0.0.1", 5222)),
    ],
)
def test_endpoint_argument(text: str, starttls: str | None, expected: tuple[str, int]) -> None:
    assert endpoint_arg(text, starttls) == expected


def test_endpoint_argument_rejects_empty_host() -> None:
    with pytest.raises(InputError):
        endpoint_arg(":443", None)
