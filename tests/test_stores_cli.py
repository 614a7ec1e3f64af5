"""`chainwatch stores`, profile presets and the mozilla@DATE grammar at the edges."""

from __future__ import annotations

import json
from collections.abc import Callable

import pytest

from chainwatch.errors import ProfileError, StoreError
from chainwatch.model import Building
from chainwatch.stores import _BARE_STORES, resolve_profile
from chainwatch.stores.presets import PRESETS

Cli = Callable[..., tuple[int, str, str]]


def test_stores_lists_snapshots_and_presets(cli: Cli) -> None:
    code, out, _ = cli("stores", "--format", "json")
    assert code == 0
    data = json.loads(out)
    dates = [s["date"] for s in data["snapshots"]]
    assert dates == sorted(dates)
    assert dates[0] == "2015-04-28"
    assert {p["name"] for p in data["presets"]} == set(PRESETS)
    assert all(p["source"] for p in data["presets"])
    assert {"android-7.0", "android-7.1.1", "android-9", "android-10"} <= set(PRESETS)
    # resolve_profile looks for presets only among names like these
    assert not [n for n in PRESETS if ":" in n or n in _BARE_STORES]


def test_stores_root_history(cli: Cli) -> None:
    code, out, _ = cli("stores", "--root", "AddTrust External", "--format", "json")
    assert code == 0
    (root,) = json.loads(out)["roots"]
    assert root["sha256"].startswith("687fa451")
    assert root["in_store"][-1]["removed_in_release"] == "2020.6.20"
    code, out, _ = cli("stores", "--root", "96bcec06")
    assert "ISRG Root X1" in out
    assert "2016-08-08" in out and "still present" in out


def test_stores_unknown_root_is_exit_3(cli: Cli) -> None:
    code, _, err = cli("stores", "--root", "No Such Root CA")
    assert code == 3
    assert "No Such Root CA" in err


def test_presets_resolve_to_their_specs() -> None:
    node8 = resolve_profile("nodejs-8")
    assert node8.spec == "nodejs-8"
    assert node8.building is Building.LEGACY
    assert node8.store.name == "mozilla@2017-05-30"
    assert resolve_profile("nodejs-10").building is Building.MODERN
    assert resolve_profile("openssl-1.0").building is Building.LEGACY


def test_historic_store_resolution_and_errors() -> None:
    store = resolve_profile("mozilla@2020-05-01").store
    assert store.source == "certifi 2020.4.5.2 (2020-04-05)"  # the last release that day
    with pytest.raises(StoreError, match="2015-04-28"):
        resolve_profile("mozilla@2010-01-01")
    with pytest.raises(ProfileError, match="YYYY-MM-DD"):
        resolve_profile("mozilla@last-year")
    with pytest.raises(ProfileError, match="given twice"):
        resolve_profile("legacy:legacy:mozilla")


def test_android_presets_are_android_behaviour_on_their_release(cli: Cli) -> None:
    for version in ("7.0", "7.1.1", "9", "10"):
        profile = resolve_profile(f"android-{version}")
        assert profile.spec == f"android-{version}"
        assert profile.building.name == "android"
        assert not profile.building.anchor_expiry_checked
        assert profile.store.name == f"android@{version}"
        assert f"android-{version}" in PRESETS[f"android-{version}"].source
    code, out, _ = cli("stores")
    assert code == 0
    assert "android-7.0    = android:android@7.0" in out
    assert "source: store: AOSP platform/system/ca-certificates at tag android-7.0.0_r1" in out
    assert "java:jks:" in out  # Java is documented as the user's own cacerts, not a preset
