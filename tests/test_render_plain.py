"""The text output written without Rich (:mod:`chainwatch.render.plain`, what ``chainwatch
check`` writes to a pipe) is byte for byte what Rich prints there: for reports that are ok,
warning, critical and unknown, with long and non-ASCII names, markup and emoji codes in
them, at several widths; for random tables and lines; and where the plain writer declines,
the command prints with Rich. Rich's own assumptions that the port relies on are held too
(which characters are one cell wide, which names are emoji codes, the width of a pipe)."""

from __future__ import annotations

import datetime as dt
import io
import os
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from rich.console import Console

from chainwatch.analysis.engine import analyze
from chainwatch.cli.endpoint import _print_text
from chainwatch.model import Report, Target
from chainwatch.probe import FailureReason, Observation
from chainwatch.render import plain
from chainwatch.render.blocks import Block, Cell, Line, Table, report_blocks
from chainwatch.render.text import print_blocks
from chainwatch.service.observe import report_for
from chainwatch.stores import resolve_profile

from .pki import PKI, at, pem_of

NOW = at("2026-03-01T12:00:00Z")
RICH_ENV = ("FORCE_COLOR", "TTY_COMPATIBLE", "TTY_INTERACTIVE", "NO_COLOR", "COLUMNS", "LINES")


@pytest.fixture(autouse=True)
def pipe_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """Rich's view of the output comes from these: none set, as under a monitoring daemon."""
    for name in RICH_ENV:
        monkeypatch.delenv(name, raising=False)


def rich_text(blocks: list[Block], width: int) -> str:
    buffer = io.StringIO()
    print_blocks(blocks, Console(file=buffer, width=width))
    return buffer.getvalue()


def same(blocks: list[Block], width: int = 80) -> str:
    """The plain text of ``blocks``, checked against Rich's (the plain writer must not
    decline these)."""
    written = plain.render(blocks, width)
    assert written is not None
    assert written == rich_text(blocks, width)
    return written


@pytest.fixture(scope="module")
def reports(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Report]:
    tmp = tmp_path_factory.mktemp("plain")
    pki = PKI(now=NOW)
    root = pki.root("Plain Root")
    inter = root.intermediate("Plain Issuing CA 2026 with a name long enough to wrap twice")
    trust = tmp / "root.pem"
    trust.write_bytes(pem_of(root.cert))
    profiles = [resolve_profile(f"file:{trust}"), resolve_profile(f"legacy:file:{trust}")]
    other = tmp / "other.pem"
    other.write_bytes(pem_of(PKI(now=NOW).root("Other Root").cert))
    stranger = [resolve_profile(f"file:{other}")]
    days = dt.timedelta(days=1)

    def report(leaf_names: tuple[str, ...], expires: dt.timedelta, host: str,
               trusted: bool = True, common_name: str | None = None) -> Report:
        leaf = inter.leaf(*leaf_names, expires=NOW + expires, common_name=common_name,
                          not_before=NOW + expires - 90 * days)
        return analyze(leaf.chain(inter), profiles if trusted else stranger, at=NOW,
                       host=host, warn_days=30, crit_days=7)

    long_name = "a-rather-long-label-for-a-service." + "x" * 70 + ".example.com"
    failed = Observation(
        target=Target(host="down.example.com", port=443, ip="192.0.2.7"), observed_at=NOW,
        failure=FailureReason.REFUSED,
        message="down.example.com:443 [192.0.2.7]: connection refused")
    return {
        "ok": report(("www.example.com",), 60 * days, "www.example.com"),
        "warning": report(("soon.example.com",), 20 * days, "soon.example.com"),
        "critical": report(("www.example.com",), 60 * days, "wrong.example.com",
                           trusted=False),
        "expired": report(("old.example.com",), -3 * days, "old.example.com"),
        "unknown": report_for(failed, profiles, at=NOW, host="down.example.com"),
        "long": report((long_name,), 60 * days, long_name,
                       common_name=("one-word-far-wider-than-its-column-" + "x" * 64)[:64]),
        "latin": report(("muller.example.com",), 20 * days, "muller.example.com",
                        common_name="Müller & Söhne Zertifikat Ελληνικά Кириллица"),
        "markup": report(("m.example.com",), 60 * days, "m.example.com",
                         common_name="[bold]not bold[/bold] [x] [/] [link=x] inside"),
        "times": report(("t.example.com",), 60 * days, "t.example.com",
                        common_name="at 12:30:45 and ::1 and [::1]:443"),
    }


@pytest.mark.parametrize("name", ["ok", "warning", "critical", "expired", "unknown", "long",
                                  "latin", "markup", "times"])
@pytest.mark.parametrize("width", [80, 120, 60, 200])
def test_reports_are_written_as_rich_prints_them(
    reports: dict[str, Report], name: str, width: int
) -> None:
    text = same(report_blocks(reports[name], 30, 7), width)
    assert text.startswith(f"CHAINWATCH {reports[name].status.value.upper()} - ")


def test_a_check_of_several_addresses_is_written_as_rich_prints_it(
    reports: dict[str, Report]
) -> None:
    blocks: list[Block] = [Line("CHAINWATCH CRITICAL - www.example.com:443: broken now")]
    for n, name in enumerate(("ok", "critical")):
        blocks.append(Line(f"\n-- address {n + 1} of 2: 2001:db8::{n + 1}", markup=True,
                           wrap=True))
        blocks.extend(report_blocks(reports[name], 30, 7))
        blocks.append(Line("TLSv1.3, TLS_AES_256_GCM_SHA384, no OCSP staple", markup=True,
                           wrap=True))
        blocks.append(Line("revocation: good, according to http://ocsp.example.com/"))
    same(blocks, 80)


@pytest.mark.parametrize("text", [
    "CN=証明書テスト",  # two cells a character
    "e\u0301 combining",  # a combining mark
    "an emoji code :smile: in a name",
    "a figure :100: that is an emoji code",
    "an em dash \u2014 Rich measures with its tables",
    "a last backslash, which Rich shows twice \\",
    "a backslash before a bracket \\[, which Rich's markup takes",
])
def test_what_the_plain_writer_declines_rich_prints(
    reports: dict[str, Report], text: str, capsys: pytest.CaptureFixture[str]
) -> None:
    blocks: list[Block] = [*report_blocks(reports["ok"], 30, 7),
                           Table("Findings", ("code", "message"), ((Cell("X"), Cell(text)),))]
    assert plain.render(blocks, 80) is None
    width = Console().width  # what Rich gives the captured output, as plain.width() does
    assert plain.width() == width
    _print_text(blocks)
    assert capsys.readouterr().out == rich_text(blocks, width)


def test_the_command_writes_without_rich_on_a_pipe(
    reports: dict[str, Report], capsys: pytest.CaptureFixture[str]
) -> None:
    blocks = report_blocks(reports["long"], 30, 7)
    _print_text(blocks)
    assert capsys.readouterr().out == rich_text(blocks, Console().width)


_ALPHABET = st.sampled_from([*"abcdefghij ABC  0123456789:[]/\\-_.,()@=*", "→", "é", "Ж",
                             "λ", "ß", "x" * 30, ":14:", "[red]", "[/]"])
_TEXT = st.lists(_ALPHABET, max_size=40).map("".join)


@settings(max_examples=300, deadline=None)
@given(
    headers=st.lists(st.text(alphabet="abcdefgh /#", min_size=1, max_size=12), min_size=1,
                     max_size=6),
    data=st.data(),
    width=st.integers(min_value=20, max_value=160),
)
def test_random_tables_are_written_as_rich_prints_them(
    headers: list[str], data: st.DataObject, width: int
) -> None:
    rows = data.draw(st.lists(st.tuples(*(st.tuples(_TEXT, st.sampled_from(
        [None, "red", "bold red"])) for _ in headers)), min_size=1, max_size=5))
    title = data.draw(st.sampled_from(["Served chain", "Client profiles", "Findings"]))
    table = Table(title, tuple(headers),
                  tuple(tuple(Cell(text, style) for text, style in row) for row in rows))
    lines = data.draw(st.lists(st.builds(Line, _TEXT, st.sampled_from([None, "green"]),
                                         st.booleans(), st.booleans()), max_size=3))
    blocks: list[Block] = [*lines, table]
    written = plain.render(blocks, width)
    if written is not None:
        assert written == rich_text(blocks, width)


def test_every_character_taken_as_one_cell_is_one_cell_to_rich() -> None:
    from rich.cells import cell_len

    single = [chr(c) for c in range(0x30000) if plain._one_cell(chr(c))]
    assert len(single) > 1000 and "→" in single and "é" in single and "証" not in single
    assert all(cell_len(c) == 1 for c in single)


def test_the_emoji_codes_of_digits_only_are_known() -> None:
    from rich._emoji_codes import EMOJI

    assert {name for name in EMOJI if plain._DIGITS.fullmatch(name)} == plain._DIGIT_EMOJI


@pytest.fixture
def clean_env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if k not in RICH_ENV}


@pytest.mark.parametrize("extra", [
    {}, {"COLUMNS": "100"}, {"COLUMNS": "abc"}, {"COLUMNS": "0"}, {"FORCE_COLOR": "1"},
    {"FORCE_COLOR": ""}, {"TTY_COMPATIBLE": "1"}, {"TTY_COMPATIBLE": "0", "FORCE_COLOR": "1"},
    {"PYTHONIOENCODING": "latin-1"}, {"TERM": "dumb"},
])
def test_the_width_of_a_pipe_is_rich_s(clean_env: dict[str, str], extra: dict[str, str],
                                       tmp_path: Path) -> None:
    """On a pipe (no terminal anywhere), the plain writer's width is Rich's, and it steps
    aside wherever Rich would see a terminal or could not draw its boxes."""
    script = ("from rich.console import Console; from chainwatch.render import plain; "
              "c = Console(); ok = c.color_system is None and c.encoding.startswith('utf'); "
              "print(plain.width(), c.width if ok else None)")
    out = subprocess.run([sys.executable, "-c", script], env={**clean_env, **extra},
                         stdin=subprocess.DEVNULL, capture_output=True, text=True,
                         timeout=60, check=True, cwd=tmp_path)
    mine, rich_width = out.stdout.split()
    assert mine == rich_width
