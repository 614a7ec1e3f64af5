"""The text of :mod:`chainwatch.render.blocks` exactly as Rich prints it where the output
is not a terminal, without importing Rich.

``chainwatch check`` runs as a monitoring plugin thousands of times per interval, and
its output goes to a pipe: importing Rich and laying out its tables was a fifth of the
command's time. Where Rich would print no colours and no control codes (the output is
not a terminal by Rich's own rules, below), this module writes the same characters:
the same column widths, wrapping, folding and box drawing, ported from Rich's ``Table``,
``Text.wrap`` and ``divide_line`` for the case chainwatch's reports use (every column
``overflow="fold"``, left-justified, the ``HEAVY_HEAD`` box, padding ``(0, 1)``).

It declines (:func:`render` returns ``None``, and the caller prints with Rich) whatever
it does not reproduce exactly: a character whose width on a terminal is not one cell
(CJK, emoji, combining marks; Rich measures those with its own Unicode tables), a text
Rich would turn into an emoji (``:name:``), markup or a backslash in a cell, an output
narrower than a table needs. tests/test_render_plain.py holds the two to each other, byte for byte.
"""

from __future__ import annotations

import os
import re
import sys
from collections.abc import Iterable, Sequence
from functools import cache
from itertools import pairwise

from chainwatch.render.blocks import Block, Line, Table

_RANGES = ((0x20, 0x7E), (0xA0, 0xAC), (0xAE, 0x2FF), (0x370, 0x482), (0x2500, 0x25FC),
           (0x2800, 0x28FF))


@cache
def _single() -> re.Pattern[str]:
    """Text of characters one cell wide in every Unicode version Rich knows (Rich's own
    fast path for Western text, and the arrow of certification paths): for such text,
    Rich's cell length is the number of characters. Compiled for the first text that is
    not printable ASCII."""
    return re.compile("[" + "".join(f"{chr(a)}-{chr(b)}" for a, b in _RANGES) + "→]*")


def _one_cell(text: str) -> bool:
    if text.isascii():
        return text.isprintable()  # 0x20 to 0x7E
    return _single().fullmatch(text) is not None

_EMOJI_CODE = re.compile(r"(:(\S*?)(?:(?:\-)(emoji|text))?:)")  # Rich's
_DIGITS = re.compile(r"[0-9]*")
_DIGIT_EMOJI = frozenset({"100", "1234"})
"""The emoji codes that are digits only. Other names between colons that are nothing or
digits (a time of day, ``host:port:``, an IPv6 address's ``::``) are no emoji code; any
other name (``legacy:file:...``) is looked up in Rich's table of emoji codes, as Rich
does before it replaces one."""
_WORD = re.compile(r"\s*\S+\s*")  # Rich's words: a word with the whitespace around it
_TRAILING_SPACE = re.compile(r"\s+$")

_TOP = ("┏", "━", "┳", "┓")
_HEAD_ROW = ("┡", "━", "╇", "┩")
_BOTTOM = ("└", "─", "┴", "┘")
_HEAD_SIDES = ("┃", "┃", "┃")
_BODY_SIDES = ("│", "│", "│")
_PADDING = 1  # each side of a cell


def width() -> int | None:
    """The width Rich gives standard output when it is not a terminal, or ``None`` where
    Rich would print colours or control codes there, or this module cannot tell.

    Rich's rules (``rich.console.Console``): ``TTY_COMPATIBLE=1``, a non-empty
    ``FORCE_COLOR`` or a terminal make it a terminal (``TTY_COMPATIBLE=0`` never); the
    width is ``COLUMNS`` when that is digits, else the size of the first of standard
    input, output and error that is a terminal, else 80."""
    if sys.platform == "win32" or "IPython" in sys.modules or "idlelib" in sys.modules:
        return None
    stdout = sys.stdout
    if stdout is None or not (getattr(stdout, "encoding", None) or "utf-8").lower().startswith(
            "utf"):
        return None
    env = os.environ
    compatible = env.get("TTY_COMPATIBLE", "")
    force = env.get("FORCE_COLOR")
    if compatible == "1" or (compatible != "0" and force is not None and force != ""):
        return None
    if compatible != "0" and force is None:
        try:
            if stdout.isatty():
                return None
        except (AttributeError, ValueError):
            pass
    columns = env.get("COLUMNS")
    if columns is not None and columns.isdigit():
        return int(columns) if columns.isascii() else None
    size = 0
    for fd in (0, 1, 2):
        try:
            size = os.get_terminal_size(fd).columns
        except (AttributeError, ValueError, OSError):
            continue
        break
    return size or 80


def render(blocks: Iterable[Block], columns: int) -> str | None:
    """What Rich prints for ``blocks`` on a non-terminal ``columns`` wide, or ``None``
    where this module does not reproduce it exactly."""
    out: list[str] = []
    for block in blocks:
        text = _line(block, columns) if isinstance(block, Line) else _table(block, columns)
        if text is None:
            return None
        out.append(text)
    return "".join(out)


def _plain(text: str) -> bool:
    """Rich shows ``text`` as it is (no emoji code in it)."""
    names = [m.group(2) for m in _EMOJI_CODE.finditer(text)]
    if any(name in _DIGIT_EMOJI for name in names):
        return False
    names = [name for name in names if not _DIGITS.fullmatch(name)]
    if not names:
        return True
    try:
        from rich._emoji_codes import EMOJI  # a table alone, not Rich's console
    except ImportError:  # not where this Rich keeps it: Rich decides
        return False
    return not any(name.lower() in EMOJI for name in names)


def _measurable(text: str) -> bool:
    return _one_cell(text) and _plain(text)


def _line(line: Line, columns: int) -> str | None:
    if line.markup and ("[" in line.text or "\\" in line.text):
        return None
    if not line.wrap:  # Rich's soft_wrap: the text as it is, one line
        return line.text + "\n" if _plain(line.text) else None
    if not _measurable(line.text.replace("\n", " ")) or columns < 1:
        return None
    return "".join(piece + "\n" for part in line.text.split("\n")
                   for piece in _wrap(part, columns, pad=False))


def _table(table: Table, columns: int) -> str | None:
    texts = [*table.headers, table.title, *(c.text for row in table.rows for c in row)]
    if not all(_measurable(t) for t in texts):
        return None
    if any("\\" in c.text for row in table.rows for c in row):
        return None  # escaped for Rich's markup, backslashes do not always come out as such
    count = len(table.headers)
    grid = [list(table.headers), *([c.text for c in row] for row in table.rows)]
    extra = 2 + (count - 1)  # the edges and the dividers
    widths = _column_widths(grid, columns - extra)
    table_width = sum(widths) + extra
    if min(widths) < 2 * _PADDING + 1 or table_width > columns:
        return None
    out = [piece + "\n" for piece in _wrap(table.title, table_width, pad=True)]
    out.append(_rule(_TOP, widths))
    for n, row in enumerate(grid):
        header = n == 0
        cells = [_wrap(text, w - 2 * _PADDING, pad=True) for text, w in zip(row, widths,
                                                                               strict=True)]
        height = max(len(c) for c in cells)
        left, divider, right = _HEAD_SIDES if header else _BODY_SIDES
        shaped = []
        for lines, w in zip(cells, widths, strict=True):
            framed = [" " * _PADDING + line + " " * _PADDING for line in lines]
            blank = [" " * w] * (height - len(framed))
            shaped.append(blank + framed if header else framed + blank)  # headers sit low
        for k in range(height):
            out.append(left + divider.join(c[k] for c in shaped) + right + "\n")
        if header:
            out.append(_rule(_HEAD_ROW, widths))
    out.append(_rule(_BOTTOM, widths))
    return "".join(out)


def _rule(parts: tuple[str, str, str, str], widths: Sequence[int]) -> str:
    left, horizontal, cross, right = parts
    return left + cross.join(horizontal * w for w in widths) + right + "\n"


# -- Rich's layout, for text whose every character is one cell wide ----------------------


def _measure(text: str, limit: int) -> int:
    """The maximum of Rich's measurement of a padded cell holding ``text``."""
    if limit - 2 * _PADDING < 1:
        return limit
    longest = len(text)  # one line, every character one cell
    shortest = max((len(w) for w in text.split()), default=longest)
    shortest = min(max(0, shortest), longest)  # Measurement.normalize
    longest = min(max(0, max(shortest, longest)), limit)  # ... .with_maximum(limit)
    if longest < 1:
        longest = 0
    return min(longest + 2 * _PADDING, limit)


def _column_widths(grid: list[list[str]], limit: int) -> list[int]:
    """Rich's ``Table._calculate_column_widths`` (not expanded, no fixed widths)."""
    count = len(grid[0])

    def measure(column: int, at_most: int) -> int:
        if at_most < 1:
            return 0
        return min(max(_measure(row[column], at_most) for row in grid), at_most)

    widths = [measure(c, limit) or 1 for c in range(count)]
    if sum(widths) > limit:
        widths = _collapse(widths, limit)
        if sum(widths) > limit:
            widths = _ratio_reduce(sum(widths) - limit, [1] * count, widths, widths)
        widths = [measure(c, w) or 0 for c, w in enumerate(widths)]
    return widths


def _collapse(widths: list[int], limit: int) -> list[int]:
    """Rich's ``Table._collapse_widths``, every column wrappable."""
    total = sum(widths)
    excess = total - limit
    while total and excess > 0:
        widest = max(widths)
        second = max((w if w != widest else 0) for w in widths)
        difference = widest - second
        ratios = [1 if w == widest else 0 for w in widths]
        if not any(ratios) or not difference:
            break
        widths = _ratio_reduce(excess, ratios, [min(excess, difference)] * len(widths), widths)
        total = sum(widths)
        excess = total - limit
    return widths


def _ratio_reduce(total: int, ratios: list[int], maximums: list[int], values: list[int]
                  ) -> list[int]:
    """Rich's ``_ratio.ratio_reduce``."""
    ratios = [ratio if top else 0 for ratio, top in zip(ratios, maximums, strict=True)]
    total_ratio = sum(ratios)
    if not total_ratio:
        return values[:]
    remaining = total
    result: list[int] = []
    for ratio, top, value in zip(ratios, maximums, values, strict=True):
        if ratio and total_ratio > 0:
            distributed = min(top, round(ratio * remaining / total_ratio))
            result.append(value - distributed)
            remaining -= distributed
            total_ratio -= ratio
        else:
            result.append(value)
    return result


def _wrap(text: str, width: int, *, pad: bool) -> list[str]:
    """Rich's ``Text.wrap`` of one line with ``overflow="fold"``: left-justified
    (``pad``: each line filled with spaces to ``width``) or as it is."""
    offsets = _divide_line(text, width)
    bounds = [0, *offsets, len(text)]
    lines = []
    for start, end in pairwise(bounds):
        piece = text[start:end]
        if len(piece) > width:  # Text.rstrip_end: whitespace beyond the width goes
            space = _TRAILING_SPACE.search(piece)
            if space is not None:
                piece = piece[:len(piece) - min(len(space.group(0)), len(piece) - width)]
        length = len(piece)
        piece = piece[:width]  # Text.truncate
        if pad and length < width:
            piece += " " * (width - length)
        lines.append(piece)
    return lines


def _divide_line(text: str, width: int) -> list[int]:
    """Rich's ``_wrap.divide_line`` with ``fold=True``: where ``text`` breaks."""
    breaks: list[int] = []
    offset = 0
    for match in _WORD.finditer(text):
        start = match.start()
        word = match.group(0)
        length = len(word.rstrip())
        if width - offset >= length:
            offset += len(word)
        elif length > width:
            pieces = [word[i:i + width] for i in range(0, len(word), width)]
            for n, piece in enumerate(pieces):
                if start:
                    breaks.append(start)
                if n == len(pieces) - 1:
                    offset = len(piece)
                else:
                    start += len(piece)
        elif offset and start:
            breaks.append(start)
            offset = len(word)
    return breaks
