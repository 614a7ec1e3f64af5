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
