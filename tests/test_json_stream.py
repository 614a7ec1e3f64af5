"""``render.codec.write_json``: a scan's JSON report written piece by piece is, byte for
byte, what encoding it whole gives (``dumps`` and a newline), whatever the values."""

from __future__ import annotations

import io
import json
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from chainwatch.render.codec import dumps, write_json

scalars = st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text()
values = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
    max_leaves=20,
)


def written(obj: Any) -> str:
    out = io.StringIO()
    write_json(obj, out.write)
    return out.getvalue()


@settings(max_examples=300, deadline=None)
@given(st.dictionaries(st.text(), values, max_size=6))
def test_written_piece_by_piece_is_the_whole_encoding(obj: dict[str, Any]) -> None:
    assert written(obj) == dumps(obj) + "\n"


def test_lists_iterators_and_empty_values() -> None:
    report = {"schema": 1, "host": "bücher.example", "chain": [{"n": "a\nb", "x": []}, {}],
              "note": "line\r\nbreaks \\ \"quoted\"", "t": (1, 2)}
    obj = {"schema": 1, "reports": [report, report], "empty": [], "none": {},
           "names": ["a", "b"], "nested": {"k": [1, {"j": [2, 3]}]}}
    assert written(obj) == dumps(obj) + "\n"
    lazy = dict(obj, reports=(r for r in [report, report]), empty=iter(()))
    assert written(lazy) == dumps(obj) + "\n"
    assert written({}) == "{}\n"
    json.loads(written(obj))
