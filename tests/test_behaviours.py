"""Client behaviours as data: the registry, the ``BEHAVIOUR:STORE`` grammar, inventory
profiles, and ``chainwatch stores --behaviours``."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable
from pathlib import Path

import pytest

from chainwatch.config.inventory import load_inventory
from chainwatch.errors import InventoryError, ProfileError
from chainwatch.model import LEGACY, MODERN, Behaviour, Building, behaviours
from chainwatch.model.behaviours import ANDROID, BEHAVIOURS, JAVA, STORE_PREFIXES
from chainwatch.stores import resolve_profile, split_spec

from .pki import PKI, pem_of

Cli = Callable[..., tuple[int, str, str]]


def test_modern_and_legacy_keep_their_meaning() -> None:
    assert Building.MODERN is MODERN and Building.LEGACY is LEGACY
    assert MODERN.values() == {
        "backtracking": True, "anchor_expiry_checked": True,
        "intermediate_eku_enforced": True, "anchor_eku_enforced": True,
        "sha1_accepted": False, "weak_keys_accepted": False, "aia_fetching": False,
        "max_depth": 10,
    }
    assert LEGACY.values() == {
        "backtracking": False, "anchor_expiry_checked": True,
        "intermediate_eku_enforced": True, "anchor_eku_enforced": False,
        "sha1_accepted": True, "weak_keys_accepted": True, "aia_fetching": False,
        "max_depth": 101,
    }


def test_registry_names_values_and_sources() -> None:
    assert list(BEHAVIOURS) == ["modern", "legacy", "android", "java"]
    assert BEHAVIOURS["android"] is ANDROID and BEHAVIOURS["java"] is JAVA
    assert not ANDROID.anchor_expiry_checked and ANDROID.backtracking
    assert not JAVA.anchor_expiry_checked and JAVA.max_depth == 11
    for b in BEHAVIOURS.values():
        assert b.summary and b.sources, b.name
    # Android's anchor rule cites Let's Encrypt's announcement.
    assert any("Extending Android Device Compatibility" in s and "2020-12-21" in s
               for s in ANDROID.sources)
    # A behaviour named like a store prefix would make "NAME:..." ambiguous.
    assert not STORE_PREFIXES & set(BEHAVIOURS)


def test_behaviours_are_frozen_values() -> None:
    with pytest.raises(dataclasses.FrozenInstanceError):
        MODERN.backtracking = False  # type: ignore[misc]
    twin = dataclasses.replace(MODERN, summary="same values", sources=())
    assert twin == MODERN and hash(twin) == hash(MODERN)
    assert dataclasses.replace(MODERN, max_depth=5) != MODERN
    with pytest.raises(ValueError, match="max_depth"):
        dataclasses.replace(MODERN, name="broken", max_depth=0)


def test_behaviours_survive_pickling_into_another_process() -> None:
    """Profiles travel to probe processes: a behaviour rebuilt there must hash like the
    one built there (string hashes are salted per process)."""
    import pickle
    import subprocess
    import sys

    blob = pickle.dumps(ANDROID)
    assert pickle.loads(blob) == ANDROID and hash(pickle.loads(blob)) == hash(ANDROID)
    code = (
        "import pickle, sys; from chainwatch.model.behaviours import ANDROID; "
        "b = pickle.loads(sys.stdin.buffer.read()); "
        "print(b == ANDROID and hash(b) == hash(ANDROID) and {b: 1}.get(ANDROID) == 1)"
    )
    out = subprocess.run([sys.executable, "-c", code], input=blob, capture_output=True,
                         timeout=60, check=True)
    assert out.stdout.strip() == b"True"


def test_lookup_by_name() -> None:
    assert behaviours.behaviour("Android") is ANDROID
    with pytest.raises(ProfileError, match="modern, legacy, android, java"):
        behaviours.behaviour("ancient")


@pytest.mark.parametrize(
    ("spec", "behaviour", "store"),
    [
        ("mozilla", MODERN, "mozilla"),
        ("modern:mozilla", MODERN, "mozilla"),
        ("legacy:mozilla@2016-06-01", LEGACY, "mozilla@2016-06-01"),
        ("android:mozilla", ANDROID, "mozilla"),
        ("android:android@7.0", ANDROID, "android@7.0"),
        ("java:file:ca/trust.pem", JAVA, "file:ca/trust.pem"),
        ("file:C:/ca.pem", MODERN, "file:C:/ca.pem"),
        ("android@7.0", MODERN, "android@7.0"),
    ],
)
def test_split_spec(spec: str, behaviour: Behaviour, store: str) -> None:
    assert split_spec(spec) == (behaviour, store)


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("legacy:legacy:mozilla", "'legacy' given twice"),
        ("android:legacy:mozilla", "one behaviour per profile, 'android' and 'legacy' given"),
        ("android:", "android: needs a store"),
        ("ancient:mozilla", "BEHAVIOUR:STORE (modern, legacy, android, java)"),
    ],
)
def test_bad_specs(spec: str, message: str) -> None:
    with pytest.raises(ProfileError, match=message.replace("(", r"\(").replace(")", r"\)")):
        resolve_profile(spec)


def test_resolved_profiles_carry_the_behaviour() -> None:
    android = resolve_profile("android:mozilla")
    assert android.spec == "android:mozilla" and android.building is ANDROID
    assert android.store == resolve_profile("mozilla").store
    old = resolve_profile("legacy:mozilla@2016-06-01")
    assert old.building is LEGACY and old.legacy and old.store.name == "mozilla@2016-06-01"
    assert not resolve_profile("java:mozilla").legacy


def test_inventory_profiles_accept_the_new_names(tmp_path: Path) -> None:
    root = PKI().root("Inventory Root")
    (tmp_path / "ca.pem").write_bytes(pem_of(root.cert))
    (tmp_path / "inv.yaml").write_text(
        "profiles:\n"
        "  phones: {trust: [\"file:ca.pem\"], building: android}\n"
        "  apps:   {trust: [\"file:ca.pem\"], building: Java}\n"
        "endpoints:\n"
        "  - {host: www.example.com, profiles: [phones, apps, \"android:file:ca.pem\"]}\n",
        encoding="utf-8",
    )
    inv = load_inventory(tmp_path / "inv.yaml")
    assert inv.profiles["phones"].building is ANDROID
    assert inv.profiles["apps"].building is JAVA
    (endpoint,) = inv.endpoints
    assert [p.building for p in endpoint.profiles] == [ANDROID, JAVA, ANDROID]
    (tmp_path / "bad.yaml").write_text(
        "profiles:\n  phones: {trust: [\"file:ca.pem\"], building: ios}\n", encoding="utf-8"
    )
    with pytest.raises(InventoryError, match="building: must be one of modern, legacy, "
                                             "android, java, got 'ios'"):
        load_inventory(tmp_path / "bad.yaml")


def test_stores_behaviours_text(cli: Cli) -> None:
    code, out, err = cli("stores", "--behaviours")
    assert (code, err) == (0, "")
    lines = out.splitlines()
    assert lines[0].startswith("Client behaviours, use as BEHAVIOUR:STORE")
    header = lines[1].split()
    assert header[0] == "name" and "depth" in header
    rows = {line.split()[0]: line.split()[1:] for line in lines[2:6]}
    assert rows["android"][:2] == ["yes", "no"]  # backtracking, anchor expiry not checked
    assert rows["legacy"][-1] == "101"
    assert "https://letsencrypt.org/2020/12/21/extending-android-compatibility.html" in out


def test_stores_behaviours_json(cli: Cli) -> None:
    code, out, _ = cli("stores", "--behaviours", "--format", "json")
    assert code == 0
    data = json.loads(out)["behaviours"]
    assert [b["name"] for b in data] == list(BEHAVIOURS)
    java = next(b for b in data if b["name"] == "java")
    assert java["anchor_expiry_checked"] is False and java["max_depth"] == 11
    assert all(isinstance(s, str) for s in java["sources"]) and java["sources"]
