"""``chainwatch check`` without Typer (:func:`chainwatch.cli.endpoint.parse_check`) answers
exactly as the Typer command does: the same output, errors and exit statuses on a range of
argument lists, good and bad; what the plain parser does not read goes to Typer (help,
errors); its option table is the Typer command's; and a fresh ``chainwatch check`` imports
neither Typer nor pydantic."""

from __future__ import annotations

import datetime as dt
import inspect
import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from chainwatch.cli import run
from chainwatch.cli.endpoint import CHECK_OPTIONS, check_endpoint, parse_check

from .pki import PKI, at, pem_of
from .servers import ServerLoop, closed_port, server_context, tls_handler

NOW = at("2026-03-01T12:00:00Z")
WHEN = "2026-03-01T12:00:00Z"


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    tmp = tmp_path_factory.mktemp("fast")
    pki = PKI(now=NOW)
    root = pki.root("Fast Root")
    inter = root.intermediate("Fast CA")
    leaf = inter.leaf("www.example.com", expires=NOW + dt.timedelta(days=60))
    trust = tmp / "root.pem"
    trust.write_bytes(pem_of(root.cert))
    other = tmp / "other.pem"
    other.write_bytes(pem_of(PKI(now=NOW).root("Other Root").cert))
    with ServerLoop() as lab, closed_port() as refused:
        ep = lab.serve(tls_handler(server_context(leaf.chain(inter), leaf.key, tmp)))
        yield {"hostport": ep.hostport, "port": ep.port, "trust": f"file:{trust}",
               "other": f"file:{other}", "refused": refused}


def both(capsys: pytest.CaptureFixture[str], args: list[str]) -> tuple[Any, Any]:
    """(exit status, stdout, stderr) of ``chainwatch check ARGS`` without Typer (when
    the plain parser reads them) and through the Typer command."""
    plain = run(["check", *args])
    plain_out = capsys.readouterr()
    typer = run(["check", *args], fast_check=False)
    typer_out = capsys.readouterr()
    return (plain, plain_out.out, plain_out.err), (typer, typer_out.out, typer_out.err)


def good_arguments(site: dict[str, Any]) -> list[list[str]]:
    hp, trust = site["hostport"], site["trust"]
    sni = ["--sni", "www.example.com"]
    return [
        [hp, *sni, "--profile", trust, "--at", WHEN],
        [hp, *sni, "--profile", trust, "--at", WHEN, "--format", "json"],
        ["--format=json", f"--profile={trust}", f"--at={WHEN}", "--sni=www.example.com", hp],
        [f"localhost:{site['port']}", "--ip", "127.0.0.1", *sni, "--profile", trust,
         "--at", WHEN, "--format", "json", "--timeout", "5"],
        [hp, *sni, "--profile", trust, "--at", WHEN, "--warn-days", "90"],  # warning
        [hp, *sni, "--profile", trust, "--at", WHEN, "--warn-days", "090", "--crit-days",
         "070", "--format", "json"],  # critical
        [hp, *sni, "--profile", trust, "--profile", site["other"], "--at", WHEN,
         "--timeout", "2.5"],
        [hp, "--profile", trust, "--at", WHEN],  # the leaf does not cover 127.0.0.1
        [f"127.0.0.1:{site['refused']}", "--profile", trust, "--at", WHEN],  # unknown
        [hp, *sni, "--profile", trust, "--at", WHEN, "--timeout", "0"],
        [hp, *sni, "--profile", trust, "--at", "yesterday"],
        [hp, "--ip", "not-an-address", "--profile", trust],
        [hp, "--starttls", "gopher", "--profile", trust],
        [hp, "--sni", "", "--profile", trust, "--at", WHEN, "--format", "json"],
        ["[::1", "--profile", trust],
        [hp, *sni, "--profile", "nosuch-profile"],
        [hp, *sni, "--profile", trust, "--warn-days", "5", "--crit-days", "9", "--at", WHEN],
        [hp, *sni, "--allow-private", "not-a-cidr", "--profile", trust],
    ]


BAD_ARGUMENTS: list[list[str]] = [
    [], ["--help"], ["h", "--help"], ["-h"], ["h", "--bogus", "x"], ["h", "--timeout", "abc"],
    ["h", "--timeout", "-5"], ["h", "--timeout", "1e1", "--ip", "x"],
    ["h", "--timeout", "inf", "--ip", "x"], ["h", "--warn-days", "1.5"],
    ["h", "--warn-days", "-1"], ["h", "--warn-days", "+7", "--ip", "x"],
    ["h", "--warn-days", " 7", "--ip", "x"], ["h", "--warn-days", "1_0", "--ip", "x"],
    ["h", "--format", "xml"], ["h", "--format", "JSON"], ["h", "--aia=1"], ["h", "--sni"],
    ["h", "--profile"], ["a", "b"], ["h", "--no-aia"], ["h", "--aia", "--aia", "--ip", "x"],
    ["h", "--sni", "a", "--sni", "b", "--ip", "x"], ["--", "h"], ["h", "-"],
    ["-x"], ["h", "--sni", "--ip"], ["h", "--ip=", "--sni=x"],
]


def test_both_paths_answer_alike(site: dict[str, Any],
                                 capsys: pytest.CaptureFixture[str]) -> None:
    statuses = set()
    for args in good_arguments(site) + BAD_ARGUMENTS:
        plain, typer = both(capsys, args)
        assert plain == typer, args
        assert plain[0] in (0, 1, 2, 3), args
        assert plain[1] or plain[2], args
        statuses.add(plain[0])
    assert statuses == {0, 1, 2, 3}


def test_the_plain_parser_reads_only_what_it_is_sure_of(site: dict[str, Any]) -> None:
    for args in good_arguments(site):
        assert parse_check(args) is not None, args
    for args in BAD_ARGUMENTS:
        if args == ["h", "--ip=", "--sni=x"]:
            assert parse_check(args) == {"ip": "", "sni": "x", "endpoint": "h"}
            continue
        assert parse_check(args) is None, args
    assert parse_check(["h", "--warn-days", "007", "--timeout", "2.5", "--aia",
                        "--profile", "a", "--profile", "b"]) == {
        "endpoint": "h", "warn_days": 7, "timeout": 2.5, "aia": True, "profile": ["a", "b"]}


def test_the_option_table_is_the_typer_commands() -> None:
    import typer.main

    from chainwatch.cli import build_app
    from chainwatch.cli.check import check_endpoint as typer_command

    group: Any = typer.main.get_command(build_app("check"))
    command = group.commands["check"]  # Typer's own click
    options = {p.opts[0]: p for p in command.params if p.param_type_name == "option"}
    assert set(options) == set(CHECK_OPTIONS)  # and --help, added when parsing
    for name, (parameter, kind) in CHECK_OPTIONS.items():
        option = options[name]
        assert option.name == parameter, name
        assert option.opts == [name] and not option.secondary_opts, name
        assert option.is_flag == (kind == "flag"), name
        assert option.multiple == (kind == "list"), name
    arguments = [p for p in command.params if p.param_type_name == "argument"]
    assert [a.name for a in arguments] == ["endpoint"]
    typer_defaults = {n: p.default for n, p in inspect.signature(typer_command).parameters.items()}
    plain_defaults = {n: p.default for n, p in inspect.signature(check_endpoint).parameters.items()}
    assert typer_defaults == plain_defaults


def test_a_fresh_check_imports_neither_typer_nor_pydantic(site: dict[str, Any]) -> None:
    program = ("import json, sys\nfrom chainwatch.cli import run\ncode = run(sys.argv[1:])\n"
               "print(json.dumps({'code': code, 'modules': sorted(sys.modules)}), "
               "file=sys.stderr)\n")
    done = subprocess.run(
        [sys.executable, "-c", program, "check", site["hostport"], "--sni", "www.example.com",
         "--profile", site["trust"], "--at", WHEN],
        capture_output=True, text=True, timeout=120)
    assert done.stdout.startswith("CHAINWATCH OK - "), done.stderr
    seen = json.loads(done.stderr.strip().splitlines()[-1])
    assert seen["code"] == 0
    heavy = {m.split(".")[0] for m in seen["modules"]} & {"typer", "pydantic", "click", "rich",
                                                          "multiprocessing"}
    assert heavy == set()  # rich: its text goes to a pipe, written without Rich


@pytest.mark.parametrize(("trust", "output", "status"), [
    ("trust", "text", 0), ("other", "text", 2), ("trust", "json", 0), ("other", "json", 2),
])
def test_a_reader_that_closes_the_pipe_early_gets_the_verdict(
    site: dict[str, Any], trust: str, output: str, status: int
) -> None:
    """``chainwatch check ... | head -1``: the monitor reads the exit status, and a reader
    gone before the text is written must not turn it into 1."""
    child = subprocess.Popen(
        [sys.executable, "-c", "import sys\nfrom chainwatch.cli import main\nmain()",
         "check", site["hostport"], "--sni", "www.example.com", "--profile", site[trust],
         "--at", WHEN, "--format", output],
        stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert child.stdout is not None and child.stderr is not None
    child.stdout.close()  # long before the child has imported what it needs to probe
    try:
        err = child.stderr.read()
        assert child.wait(timeout=120) == status, err
    finally:
        child.stderr.close()
        if child.poll() is None:
            child.kill()
            child.wait()
    assert err == b""


def test_help_still_comes_from_typer(tmp_path: Path) -> None:
    done = subprocess.run([sys.executable, "-c", "from chainwatch.cli import main; main()",
                           "check", "--help"], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0
    assert "Usage: " in done.stdout and "--allow-private" in done.stdout
    assert "--warn-days" in done.stdout and "[default: 30]" in done.stdout
