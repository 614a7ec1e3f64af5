"""Step 1 of inventory loading composes with libyaml when PyYAML has it: the data and the
line of every path are exactly those of PyYAML's pure-Python composer."""

from __future__ import annotations

import pytest
import yaml

from chainwatch.config import yaml as step1

INVENTORY = """\
defaults: &d {profiles: [mozilla], interval: 1h, timeout: 10s}
profiles:
  inner:
    trust: [mozilla]
    building: modern
endpoints:
  - {host: a.example, port: 443, ip: 127.0.0.1}
  - host: b.example
    tags:
      - web
      - "quoted: yes"
    <<: *d
  - c.example
  - {host: d.example,
     port: 8443}
files:
  - path: ./certs/*.pem
    warn_days: 30
"""


@pytest.mark.skipif(not getattr(yaml, "__with_libyaml__", False),
                    reason="PyYAML was built without libyaml")
def test_libyaml_gives_the_pure_python_data_and_lines() -> None:
    assert step1._Fast is not None
    fast = step1._read_with(step1._Fast, INVENTORY, "inv.yaml")
    slow = step1._read_with(step1._Loader, INVENTORY, "inv.yaml")
    assert fast.data == slow.data
    assert fast.lines == slow.lines
    assert fast.line(("endpoints", 3, "port")) == 15
    assert fast.line(("endpoints", 1, "tags", 1)) == 11


def test_a_text_libyaml_refuses_gets_the_pure_python_message() -> None:
    with pytest.raises(step1.InventoryError) as caught:
        step1._read_yaml("endpoints: [a.example,\n", "inv.yaml")
    assert str(caught.value) == (
        "inv.yaml:2: invalid YAML: expected the node content, but found '<stream end>'")


SCALARS = """\
a: 443
b: '443'
c: "443"
d: [443, '443', yes, 'yes', ~, '~', 1.5, '1.5', 2026-03-01, '2026-03-01', 0x1bb, 1_000]
e: {443: x, 'no': y, yes: z}
f: &anchor {x: 1}
g: *anchor
h: !!str 443
i: !!int "443"
"""


@pytest.mark.skipif(not getattr(yaml, "__with_libyaml__", False),
                    reason="PyYAML was built without libyaml")
def test_remembered_tags_keep_every_scalar_type() -> None:
    """libyaml's loader remembers each scalar's tag by its text and style: a quoted
    ``'443'`` stays a string beside a plain ``443``, an explicit tag wins."""
    assert step1._Fast is not None
    fast = step1._read_with(step1._Fast, SCALARS, "inv.yaml")
    slow = step1._read_with(step1._Loader, SCALARS, "inv.yaml")
    assert fast.data == slow.data
    assert fast.data["d"] == yaml.safe_load(SCALARS)["d"]
    assert fast.lines == slow.lines
    assert [type(v) for v in fast.data["d"]] == [type(v) for v in yaml.safe_load(SCALARS)["d"]]
    assert fast.data["h"] == "443" and fast.data["i"] == 443


def test_the_quick_address_and_name_checks_agree_with_the_long_ones() -> None:
    import ipaddress

    from chainwatch.config.build import _canonical_ip, _is_ip
    from chainwatch.config.schema import _HOST_NAME, _LABEL

    texts = ["127.0.0.1", "0.0.0.0", "255.255.255.255", "256.1.1.1", "01.2.3.4", "1.2.3",
             "1.2.3.4.5", "1.2.3.04", "10.0.0.255", "192.168.1.1 ", "::1", "::ffff:1.2.3.4",
             "2001:db8::1", "2001:DB8:0:0::1", "1.2.3.4/32", "", "a.b", "1e1.1.1.1", "٣.1.1.1"]
    for text in texts:
        try:
            expected: str | None = str(ipaddress.ip_address(text))
        except ValueError:
            expected = None
        try:
            got: str | None = _canonical_ip(text)
        except ValueError:
            got = None
        assert got == expected, text
        assert _is_ip(text) == (expected is not None), text
    names = ["a.example", "e0.bench.test", "a..b", ".a", "a.", "-a.b", "a-.b", "a_b.c",
             "x" * 63 + ".c", "x" * 64 + ".c", "a.b-c.d", "", "1.2.3.4", "a.b\n", "a b.c"]
    for name in names:
        long = all(_LABEL.fullmatch(label) for label in name.split("."))
        assert bool(_HOST_NAME.fullmatch(name)) == long, name
