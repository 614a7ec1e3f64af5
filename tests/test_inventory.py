"""The inventory contract (DESIGN.md, Inventory and Alerts): a valid file becomes frozen
values with defaults applied and profiles resolved; an invalid one yields exactly one
``file:line: field: reason`` error, never a traceback."""

from __future__ import annotations

import dataclasses
import datetime as dt
import textwrap
from pathlib import Path

import pytest

from chainwatch.analysis.engine import analyze
from chainwatch.config.inventory import (
    DEFAULT_SHORT_LIVED,
    DEFAULT_STEPS,
    Action,
    AppriseChannel,
    GitHubChannel,
    Inventory,
    JiraChannel,
    PagerDutyChannel,
    Secret,
    StartTLS,
    WebhookChannel,
    load_inventory,
    parse_duration,
)
from chainwatch.errors import EXIT_UNKNOWN, InputError, InventoryError
from chainwatch.model import Building, Target

from .pki import PKI, at, pem_of

NOW = at("2024-03-01T12:00:00Z")


def write(directory: Path, text: str, name: str = "inv.yaml") -> Path:
    path = directory / name
    path.write_text(textwrap.dedent(text).lstrip("\n"), encoding="utf-8")
    return path


@pytest.fixture
def pki_files(tmp_path: Path) -> dict[str, object]:
    """Two unrelated roots in three PEM files under ``ca/``; a leaf under each root."""
    pki = PKI(now=NOW)
    corp = pki.root("Corp Root")
    partner = pki.root("Partner Root")
    (tmp_path / "ca").mkdir()
    (tmp_path / "ca" / "corp.pem").write_bytes(pem_of(corp.cert))
    (tmp_path / "ca" / "partner.pem").write_bytes(pem_of(partner.cert))
    (tmp_path / "ca" / "both.pem").write_bytes(pem_of(corp.cert, partner.cert))
    return {
        "corp": corp,
        "partner": partner,
        "corp_leaf": corp.intermediate("Corp CA").leaf("api.example.com"),
        "partner_leaf": partner.leaf("api.example.com"),
    }


FULL = """
defaults: {profiles: [mozilla], warn_days: 21, crit_days: 5, interval: 30m, timeout: 5s}
profiles:
  backend:     {trust: ["file:ca/corp.pem", "file:ca/partner.pem", "file:ca/both.pem"]}
  old-backend: {trust: ["file:ca/corp.pem"], building: legacy}
endpoints:
  - www.example.com
  - {host: mail.example.com, starttls: smtp}
  - {host: api.example.com, ip: 127.0.0.1, sni: api.example.com, profiles: [mozilla, backend],
     tags: [api, prod], owner: team-api, zone: dc-east, warn_days: 40}
  - host: "Legacy.Example.COM:8443"
    profiles: [old-backend, "legacy:file:ca/partner.pem"]
    interval: 1h30m
  - {host: "[2001:db8::1]:993", sni: imap.example.com, crit_days: 1}
files:
  - "certs/*.pem"
  - {path: "/etc/ssl/private/**/*.crt", profiles: [backend], host: intranet.example.com}
"""


def test_full_inventory(tmp_path: Path, pki_files: dict[str, object],
                        monkeypatch: pytest.MonkeyPatch) -> None:
    path = write(tmp_path, FULL)
    monkeypatch.chdir(tmp_path.parent)  # relative paths follow the file, not the cwd
    inv = load_inventory(path)

    assert isinstance(inv, Inventory)
    assert inv.path == path.resolve()
    assert inv.defaults.warn_days == 21 and inv.defaults.crit_days == 5
    assert inv.defaults.interval == dt.timedelta(minutes=30)
    assert inv.defaults.timeout == dt.timedelta(seconds=5)
    assert [p.spec for p in inv.defaults.profiles] == ["mozilla"]

    www, mail, api, legacy, v6 = inv.endpoints
    assert www.target == Target("www.example.com", 443)
    assert www.server_name == "www.example.com"
    assert [p.spec for p in www.profiles] == ["mozilla"]
    assert (www.warn_days, www.crit_days, www.interval) == (21, 5, dt.timedelta(minutes=30))
    assert www.line == 6

    assert mail.starttls is StartTLS.SMTP and mail.port == 25
    assert mail.target == Target("mail.example.com", 25, starttls="smtp")

    assert api.target == Target("api.example.com", 443, ip="127.0.0.1")  # SNI = host: implied
    assert [p.spec for p in api.profiles] == ["mozilla", "backend"]
    assert api.tags == ("api", "prod") and api.owner == "team-api" and api.zone == "dc-east"
    assert (api.warn_days, api.crit_days) == (40, 5)

    assert (legacy.host, legacy.port) == ("legacy.example.com", 8443)
    assert legacy.interval == dt.timedelta(hours=1, minutes=30)
    assert [(p.spec, p.building) for p in legacy.profiles] == [
        ("old-backend", Building.LEGACY),
        ("legacy:file:ca/partner.pem", Building.LEGACY),
    ]

    assert (v6.host, v6.port, v6.sni, v6.server_name) == (
        "2001:db8::1", 993, "imap.example.com", "imap.example.com"
    )
    assert v6.crit_days == 1

    certs, private = inv.files
    assert certs.pattern == str(tmp_path.resolve() / "certs" / "*.pem")
    assert [p.spec for p in certs.profiles] == ["mozilla"]
    assert private.pattern == "/etc/ssl/private/**/*.crt"
    assert private.host == "intranet.example.com"
    assert inv.alerts is None


def test_named_profile_combines_stores(tmp_path: Path, pki_files: dict[str, object]) -> None:
    inv = load_inventory(write(tmp_path, FULL))
    corp, partner = pki_files["corp"], pki_files["partner"]
    backend = inv.profiles["backend"]
    assert backend.spec == "backend" and backend.building is Building.MODERN
    # the union of the three files, each anchor once, in first-seen order
    assert [c.sha256 for c in backend.store.anchors] == [
        corp.cert.sha256, partner.cert.sha256  # type: ignore[attr-defined]
    ]
    assert "file:ca/corp.pem" in backend.store.source

    old = inv.profiles["old-backend"]
    assert old.building is Building.LEGACY
    assert old.store.anchors == (corp.cert,)  # type: ignore[attr-defined]

    # Negative control: the combined profile trusts both hierarchies, the single one not.
    partner_chain = pki_files["partner_leaf"].chain()  # type: ignore[attr-defined]
    combined = analyze(partner_chain, [backend], at=NOW, host="api.example.com")
    single = analyze(partner_chain, [old], at=NOW, host="api.example.com")
    assert combined.profiles[0].trusted
    assert not single.profiles[0].trusted


def test_minimal_and_empty_inventories(tmp_path: Path) -> None:
    inv = load_inventory(write(tmp_path, "endpoints:\n  - example.org\n"))
    assert [e.target for e in inv.endpoints] == [Target("example.org", 443)]
    assert [p.spec for p in inv.defaults.profiles] == ["mozilla"]
    assert (inv.defaults.warn_days, inv.defaults.crit_days) == (30, 7)
    assert inv.defaults.interval == dt.timedelta(hours=1)
    assert inv.defaults.timeout == dt.timedelta(seconds=10)

    empty = load_inventory(write(tmp_path, "", name="empty.yaml"))
    assert empty.endpoints == () and empty.files == () and empty.alerts is None
    blank = load_inventory(write(tmp_path, "endpoints:\nfiles:\n", name="blank.yaml"))
    assert blank.endpoints == () and blank.files == ()


def test_starttls_default_ports_and_ip_hosts(tmp_path: Path) -> None:
    text = "endpoints:\n" + "".join(
        f"  - {{host: h.example.com, starttls: {p.value}}}\n" for p in StartTLS
    ) + "  - 192.0.2.7\n  - {host: '::1', port: 8443}\n  - bücher.example\n"
    inv = load_inventory(write(tmp_path, text))
    ports = {e.starttls: e.port for e in inv.endpoints if e.starttls}
    assert ports == {
        StartTLS.SMTP: 25, StartTLS.IMAP: 143, StartTLS.POP3: 110, StartTLS.FTP: 21,
        StartTLS.LDAP: 389, StartTLS.XMPP: 5222, StartTLS.POSTGRES: 5432,
    }
    ip4, ip6, idn = inv.endpoints[-3:]
    assert ip4.server_name is None and ip6.host == "::1" and ip6.port == 8443
    assert idn.host == "xn--bcher-kva.example"


def test_file_sources_glob_relative_to_inventory(tmp_path: Path) -> None:
    (tmp_path / "certs" / "sub").mkdir(parents=True)
    for name in ("a.pem", "b.pem", "sub/c.pem", "notes.txt"):
        (tmp_path / "certs" / name).write_text("x")
    inv = load_inventory(write(tmp_path, "files:\n  - certs/*.pem\n  - certs/**/*.pem\n"))
    flat, deep = inv.files
    assert [p.name for p in flat.paths()] == ["a.pem", "b.pem"]
    assert [p.name for p in deep.paths()] == ["a.pem", "b.pem", "c.pem"]


ALERTS = """
alerts:
  channels:
    hook:    {type: webhook, url: "https://hooks.example.net/cw/t0ps3cret?key=abc"}
    oncall:  {type: pagerduty, routing_key_env: PD_ROUTING_KEY}
    chat:    {type: apprise, url_file: secrets/chat.url}
    tickets: {type: github, repo: acme/ops, token_env: GH_TOKEN, labels: [certs]}
    jira:    {type: jira, url: "https://acme.atlassian.net", project: OPS, user: bot@acme.io,
              token_env: JIRA_TOKEN}
  steps:
    - {days: 7,  action: page, repeat: 24h, channels: [oncall]}
    - {days: 30, action: ticket, channels: [tickets, jira]}
    - {days: 14, action: notify, channels: [chat]}
    - {days: 2,  action: page, repeat: 4h, ackable: false, channels: [oncall]}
  broken: {action: page, repeat: 1h, channels: [oncall, hook]}
  short_lived:
    max_lifetime: 100d
    steps:
      - {remaining: 3%, action: page, repeat: 4h, ackable: false, channels: [oncall]}
      - {overdue: true, action: notify, channels: [chat]}
      - {remaining: 10%, action: page, repeat: 24h, channels: [oncall]}
"""


def test_alerts_section(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    inv = load_inventory(write(tmp_path, ALERTS))
    alerts = inv.alerts
    assert alerts is not None
    hook, oncall, chat, tickets, jira = alerts.channels.values()
    assert isinstance(hook, WebhookChannel) and isinstance(oncall, PagerDutyChannel)
    assert isinstance(chat, AppriseChannel) and isinstance(tickets, GitHubChannel)
    assert isinstance(jira, JiraChannel)
    assert tickets.repo == "acme/ops" and tickets.labels == ("certs",)
    assert (jira.project, jira.user, jira.issue_type) == ("OPS", "bot@acme.io", "Task")

    # Secrets: values kept, never shown.
    assert hook.url.reveal() == "https://hooks.example.net/cw/t0ps3cret?key=abc"
    for text in (repr(hook), str(hook.url), repr(alerts)):
        assert "t0ps3cret" not in text and "key=abc" not in text
    assert "hooks.example.net" in repr(hook.url)
    assert oncall.routing_key == Secret.env("PD_ROUTING_KEY")
    monkeypatch.setenv("PD_ROUTING_KEY", "R0UT1NG")
    assert oncall.routing_key.reveal() == "R0UT1NG"
    monkeypatch.delenv("PD_ROUTING_KEY")
    with pytest.raises(InputError, match="PD_ROUTING_KEY is not set"):
        oncall.routing_key.reveal()
    assert chat.url == Secret.file(tmp_path.resolve() / "secrets" / "chat.url")
    (tmp_path / "secrets").mkdir()
    (tmp_path / "secrets" / "chat.url").write_text("tgram://bot/chat\n")
    assert chat.url.reveal() == "tgram://bot/chat"

    # Steps sorted by days, largest first; short-lived steps: overdue, then by remaining.
    assert [(s.days, s.action, s.repeat, s.ackable, s.channels) for s in alerts.steps] == [
        (30, Action.TICKET, None, True, ("tickets", "jira")),
        (14, Action.NOTIFY, None, True, ("chat",)),
        (7, Action.PAGE, dt.timedelta(hours=24), True, ("oncall",)),
        (2, Action.PAGE, dt.timedelta(hours=4), False, ("oncall",)),
    ]
    assert alerts.broken.channels == ("oncall", "hook")
    assert alerts.broken.repeat == dt.timedelta(hours=1)
    short = alerts.short_lived
    assert short is not None and short.max_lifetime == dt.timedelta(days=100)
    assert [(s.overdue, s.remaining, s.ackable) for s in short.steps] == [
        (True, None, True), (False, 0.10, True), (False, 0.03, False)
    ]


def test_alert_defaults(tmp_path: Path) -> None:
    inv = load_inventory(write(tmp_path, "alerts:\n  channels:\n    hook: "
                                         "{type: webhook, url_env: HOOK}\n"))
    assert inv.alerts is not None
    assert inv.alerts.steps == DEFAULT_STEPS
    assert [s.days for s in DEFAULT_STEPS] == [30, 14, 7, 2]
    assert inv.alerts.short_lived == DEFAULT_SHORT_LIVED
    assert inv.alerts.broken.action is Action.PAGE
    off = load_inventory(write(tmp_path, "alerts:\n  short_lived: null\n", name="off.yaml"))
    assert off.alerts is not None and off.alerts.short_lived is None


def test_values_are_frozen(tmp_path: Path) -> None:
    inv = load_inventory(write(tmp_path, "endpoints: [a.example.com]\n"))
    with pytest.raises(dataclasses.FrozenInstanceError):
        inv.endpoints[0].port = 1  # type: ignore[misc]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("90s", dt.timedelta(seconds=90)),
        ("30m", dt.timedelta(minutes=30)),
        ("1h", dt.timedelta(hours=1)),
        ("100d", dt.timedelta(days=100)),
        ("2w", dt.timedelta(weeks=2)),
        ("1h30m", dt.timedelta(minutes=90)),
        ("1d 12h", dt.timedelta(hours=36)),
    ],
)
def test_durations(text: str, expected: dt.timedelta) -> None:
    assert parse_duration(text) == expected


@pytest.mark.parametrize("bad", ["", "1", "h", "1x", "-1h", "0s", "1.5h", "1 hour"])
def test_bad_durations(bad: str) -> None:
    with pytest.raises(ValueError, match=r"duration|longer than zero"):
        parse_duration(bad)


# -- malformed inventories: one precise error each -------------------------------------------

BAD = [
    pytest.param(
        "endpoints:\n  - host: a.example.com\n    port: [443, 8443\n",
        "inv.yaml:4: invalid YAML: expected ',' or ']', but got '<stream end>' "
        "(while parsing a flow sequence on line 3)",
        id="yaml-syntax-unclosed",
    ),
    pytest.param(
        "endpoints:\n  - host: a.example.com\n     port: 443\n",
        "inv.yaml:3: invalid YAML: mapping values are not allowed here",
        id="yaml-syntax-indent",
    ),
    pytest.param(
        "endpoints:\n  - host: a.example.com\n    prot: 443\n",
        "inv.yaml:3: endpoints[0].prot: unknown key; did you mean 'port'? (allowed: host, "
        "port, ip, sni, starttls, profiles, tags, owner, zone, interval, timeout, warn_days, "
        "crit_days, renew_at, grace, acme, revocation)",
        id="unknown-key",
    ),
    pytest.param(
        "defaults: {warn_days: 30}\nendpointz: []\n",
        "inv.yaml:2: endpointz: unknown key; did you mean 'endpoints'? (allowed: defaults, fetch, "
        "profiles, renewals, endpoints, files, zones, alerts, metrics)",
        id="unknown-top-level-key",
    ),
    pytest.param(
        "endpoints:\n  - host: a.example.com\n    port: https\n",
        "inv.yaml:3: endpoints[0].port: expected an integer, got 'https'",
        id="wrong-type-port",
    ),
    pytest.param(
        "endpoints:\n  - {host: a.example.com, tags: api}\n",
        "inv.yaml:2: endpoints[0].tags: expected a list, got 'api'",
        id="wrong-type-tags",
    ),
    pytest.param(
        "defaults:\n  warn_days: 30\n  crit_days: 7\nendpoints:\n  - a.example.com\n"
        "  - b.example.com\n  - {host: c.example.com, port: 70000}\n",
        "inv.yaml:7: endpoints[2].port: must be 1-65535, got 70000",
        id="bad-port",
    ),
    pytest.param(
        "endpoints:\n  - host: a.example.com:0\n",
        "inv.yaml:2: endpoints[0].host: the port after ':' must be 1-65535, got '0'",
        id="bad-port-in-host",
    ),
    pytest.param(
        "endpoints:\n  - {host: mail.example.com, starttls: smtps}\n",
        "inv.yaml:2: endpoints[0].starttls: must be one of smtp, imap, pop3, ftp, ldap, xmpp, "
        "postgres, got 'smtps'",
        id="unknown-starttls",
    ),
    pytest.param(
        "profiles:\n  backend: {trust: [mozilla]}\nendpoints:\n  - host: a.example.com\n"
        "    profiles:\n      - mozilla\n      - backedn\n",
        "inv.yaml:7: endpoints[0].profiles[1]: unknown profile 'backedn': not a name under "
        "profiles (backend) nor a spec (mozilla, mozilla@YYYY-MM-DD, system, file:PATH, "
        "jks:PATH, pkcs12:PATH, dir:PATH, BEHAVIOUR:STORE, a preset)",
        id="unknown-profile-name",
    ),
    pytest.param(
        "defaults:\n  profiles: [mozilla@2016-13-01]\n",
        "inv.yaml:2: defaults.profiles[0]: profile store 'mozilla@2016-13-01': 2016-13-01 is "
        "not a calendar date",
        id="bad-profile-spec",
    ),
    pytest.param(
        "defaults:\n  interval: 1 hour\n",
        "inv.yaml:2: defaults.interval: must be a duration like 90s, 30m, 1h or 100d, "
        "got '1 hour'",
        id="bad-duration",
    ),
    pytest.param(
        "endpoints:\n  - {host: a.example.com, timeout: 10}\n",
        "inv.yaml:2: endpoints[0].timeout: must be a duration like 90s, 30m, 1h or 100d, "
        "got 10",
        id="duration-without-unit",
    ),
    pytest.param(
        "endpoints:\n  - a.example.com\n  - port: 443\n    starttls: smtp\n",
        "inv.yaml:3: endpoints[1].host: is required",
        id="missing-host",
    ),
    pytest.param(
        "endpoints:\n  -\n",
        "inv.yaml:2: endpoints[0]: expected a host name or a mapping, got null",
        id="empty-endpoint",
    ),
    pytest.param(
        "profiles:\n  backend:\n    trust:\n      - file:ca/missing.pem\n",
        "inv.yaml:4: profiles.backend.trust[0]: profile store 'file:ca/missing.pem': "
        "{dir}/ca/missing.pem: no such file",
        id="bad-file-spec-path",
    ),
    pytest.param(
        "endpoints:\n  - host: a.example.com\n    profiles: ['legacy:file:nope.pem']\n",
        "inv.yaml:3: endpoints[0].profiles[0]: profile store 'file:nope.pem': "
        "{dir}/nope.pem: no such file",
        id="bad-file-spec-path-endpoint",
    ),
    pytest.param(
        "profiles:\n  backend: {trust: ['file:inv.yaml']}\n",
        "inv.yaml:2: profiles.backend.trust[0]: {dir}/inv.yaml: not a certificate: neither "
        "PEM, DER nor PKCS#12",
        id="file-spec-not-certificates",
    ),
    pytest.param(
        "profiles:\n  backend: {trust: ['legacy:mozilla']}\n",
        "inv.yaml:2: profiles.backend.trust[0]: trust lists stores; say building: legacy "
        "instead of the legacy: prefix",
        id="legacy-prefix-in-trust",
    ),
    pytest.param(
        "profiles:\n  backend: {trust: [mozilla], building: ancient}\n",
        "inv.yaml:2: profiles.backend.building: must be one of modern, legacy, android, java, "
        "got 'ancient'",
        id="bad-building",
    ),
    pytest.param(
        "profiles:\n  mozilla: {trust: [system]}\n",
        "inv.yaml:2: profiles.mozilla: profile name 'mozilla' looks like a profile spec; "
        "choose a name without ':' or '@' that is not a built-in",
        id="profile-name-shadows-spec",
    ),
    pytest.param(
        "endpoints:\n  - a.example.com\n  - b.example.com\n  - {host: A.example.com., "
        "port: 443}\n",
        "inv.yaml:4: endpoints[2]: duplicate endpoint a.example.com:443: same host, port, ip, "
        "sni and starttls as endpoints[0] (line 2)",
        id="duplicate-endpoint",
    ),
    pytest.param(
        "endpoints:\n  - host: a.example.com\n    port: 443\n    host: b.example.com\n",
        "inv.yaml:4: endpoints[0].host: duplicate key (first given on line 2)",
        id="duplicate-key",
    ),
    pytest.param(
        "endpoints:\n  - https://www.example.com/\n",
        "inv.yaml:2: endpoints[0].host: expected a host name (optionally host:port), not "
        "'https://www.example.com/'",
        id="url-as-host",
    ),
    pytest.param(
        "endpoints:\n  - {host: a.example.com, ip: 10.0.0.300}\n",
        "inv.yaml:2: endpoints[0].ip: must be an IP address, got '10.0.0.300'",
        id="bad-ip",
    ),
    pytest.param(
        "defaults: {warn_days: 5}\n",
        "inv.yaml:1: defaults.warn_days: crit_days (7) must not exceed warn_days (5)",
        id="crit-above-warn",
    ),
    pytest.param(
        "- a.example.com\n",
        "inv.yaml:1: expected a mapping (defaults, fetch, profiles, renewals, endpoints, files, "
        "zones, alerts, metrics), got a list",
        id="not-a-mapping",
    ),
    pytest.param(
        "alerts:\n  channels:\n    chat: {type: slack, url: x}\n",
        "inv.yaml:3: alerts.channels.chat.type: must be one of webhook, pagerduty, apprise, "
        "github, gitlab, jira, file, got 'slack'",
        id="unknown-channel-type",
    ),
    pytest.param(
        "alerts:\n  channels:\n    chat:\n      type: apprise\n      url: tgram://t0k3n/1\n",
        "inv.yaml:5: alerts.channels.chat.url: Apprise URLs carry credentials: give url_env "
        "or url_file instead",
        id="inline-secret-refused",
    ),
    pytest.param(
        "alerts:\n  channels:\n    oncall: {type: pagerduty}\n",
        "inv.yaml:3: alerts.channels.oncall: the routing key is required: give one of "
        "routing_key_env, routing_key_file",
        id="missing-secret",
    ),
    pytest.param(
        "alerts:\n  channels:\n    gh: {type: github, repo: ops, token_env: GH}\n",
        "inv.yaml:3: alerts.channels.gh.repo: must be owner/name, got 'ops'",
        id="bad-github-repo",
    ),
    pytest.param(
        "alerts:\n  channels:\n    hook: {type: webhook, url_env: HOOK}\n  steps:\n"
        "    - {days: 30, action: ticket, channels: [hook]}\n"
        "    - {days: 7, action: page, channels: [hook, oncall]}\n",
        "inv.yaml:6: alerts.steps[1].channels[1]: unknown channel 'oncall' "
        "(alerts.channels: hook)",
        id="unknown-step-channel",
    ),
    pytest.param(
        "alerts:\n  steps:\n    - {days: 7, action: call}\n",
        "inv.yaml:3: alerts.steps[0].action: must be one of ticket, notify, page, got 'call'",
        id="bad-action",
    ),
    pytest.param(
        "alerts:\n  steps:\n    - {days: 7, action: page}\n    - {days: 7, action: notify}\n",
        "inv.yaml:4: alerts.steps[1].days: steps[0] already has days: 7",
        id="duplicate-step-days",
    ),
    pytest.param(
        "alerts:\n  short_lived:\n    steps:\n      - {remaining: 120%, action: page}\n",
        "inv.yaml:4: alerts.short_lived.steps[0].remaining: must be more than 0% and at most "
        "100%, got 120%",
        id="bad-percentage",
    ),
    pytest.param(
        "alerts:\n  short_lived:\n    steps:\n      - {action: page}\n",
        "inv.yaml:4: alerts.short_lived.steps[0]: the trigger is required: give one of "
        "overdue, remaining",
        id="short-lived-step-without-trigger",
    ),
    pytest.param(
        "endpoints:\n  - {host: a.example.com, port: 0}\n  - {host: b.example.com, port: -1}\n",
        "inv.yaml:2: endpoints[0].port: must be 1-65535, got 0 (and 1 more problem)",
        id="first-of-several",
    ),
    pytest.param(
        "zones:\n  dc-east: {concurrency: 0}\n",
        "inv.yaml:2: zones.dc-east.concurrency: must be 1-10000, got 0",
        id="zone-concurrency",
    ),
    pytest.param(
        "zones:\n  dc-east: {queue: 'has space'}\n",
        "inv.yaml:2: zones.dc-east.queue: a zone name is letters, digits, '.', '_' and '-' "
        "(at most 64), got 'has space'",
        id="zone-queue-name",
    ),
    pytest.param(
        "zones:\n  a: {queue: q}\n  b: {queue: q}\n",
        "inv.yaml:3: zones.b.queue: queue 'q' is zone 'a''s already",
        id="zone-queue-shared",
    ),
    pytest.param(
        "zones:\n  dc-east:\nendpoints:\n  - {host: a.example.com, zone: dc-east}\n"
        "  - {host: b.example.com, zone: dc-west}\n",
        "inv.yaml:5: endpoints[1].zone: zone 'dc-west' is not in zones (dc-east)",
        id="zone-not-listed",
    ),
    pytest.param(
        "zones:\n  dc-east:\nendpoints:\n  - b.example.com\n",
        "inv.yaml:4: endpoints[0]: zone 'default' is not in zones (dc-east)",
        id="default-zone-not-listed",
    ),
]


@pytest.mark.parametrize(("text", "message"), BAD)
def test_malformed_inventory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, text: str, message: str
) -> None:
    (tmp_path / "inv.yaml").write_text(text, encoding="utf-8")
    monkeypatch.chdir(tmp_path)
    with pytest.raises(InventoryError) as caught:
        load_inventory("inv.yaml")
    assert str(caught.value) == message.format(dir=tmp_path.resolve())
    assert caught.value.path == "inv.yaml"
    assert caught.value.exit_status == EXIT_UNKNOWN


def test_error_carries_line_and_field(tmp_path: Path) -> None:
    path = write(tmp_path, "endpoints:\n  - a.example.com\n  - {host: b.example.com, "
                           "starttls: gopher}\n")
    with pytest.raises(InventoryError) as caught:
        load_inventory(path)
    assert (caught.value.line, caught.value.field) == (3, "endpoints[1].starttls")
    assert str(caught.value).startswith(f"{path}:3: endpoints[1].starttls: ")


def test_unreadable_inventories(tmp_path: Path) -> None:
    with pytest.raises(InventoryError, match=r"missing\.yaml: no such file$"):
        load_inventory(tmp_path / "missing.yaml")
    with pytest.raises(InventoryError, match="is a directory"):
        load_inventory(tmp_path)
    (tmp_path / "latin1.yaml").write_bytes(b"endpoints: [caf\xe9.example]\n")
    with pytest.raises(InventoryError, match="not UTF-8"):
        load_inventory(tmp_path / "latin1.yaml")


def test_alias_bomb_is_refused(tmp_path: Path) -> None:
    lines = ["a0: &a0 [x, x, x, x, x, x, x, x, x, x]"]
    lines += [f"a{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * 10) + "]" for i in range(1, 8)]
    path = write(tmp_path, "\n".join(lines) + "\n")
    with pytest.raises(InventoryError, match="more than 500000 values"):
        load_inventory(path)


def test_yaml_anchors_and_merge_keys(tmp_path: Path) -> None:
    inv = load_inventory(write(tmp_path, """
        endpoints:
          - &api {host: api.example.com, tags: [api], owner: team-api}
          - <<: *api
            host: api2.example.com
        """))
    assert [(e.host, e.tags, e.owner) for e in inv.endpoints] == [
        ("api.example.com", ("api",), "team-api"),
        ("api2.example.com", ("api",), "team-api"),
    ]


def test_deadman_switch(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    inline = load_inventory(write(tmp_path, """
        alerts:
          deadman: {url: "https://hc-ping.example.org/5e1f-s3cr3t"}
        """))
    assert inline.alerts is not None and inline.alerts.deadman is not None
    ping = inline.alerts.deadman
    assert ping.method == "get"
    assert ping.url.reveal() == "https://hc-ping.example.org/5e1f-s3cr3t"
    assert "s3cr3t" not in repr(inline.alerts) and "hc-ping.example.org" in repr(ping)

    by_env = load_inventory(write(tmp_path, "alerts:\n  deadman: {url_env: HC_URL, method: post}\n",
                                  name="env.yaml"))
    assert by_env.alerts is not None and by_env.alerts.deadman is not None
    assert by_env.alerts.deadman.url == Secret.env("HC_URL")
    assert by_env.alerts.deadman.method == "post"
    none = load_inventory(write(tmp_path, "alerts: {}\n", name="none.yaml"))
    assert none.alerts is not None and none.alerts.deadman is None


@pytest.mark.parametrize(("text", "message"), [
    ("alerts:\n  deadman: {}\n",
     "inv.yaml:2: alerts.deadman: the ping URL is required: give one of url, url_env, url_file"),
    ("alerts:\n  deadman: {url: ftp://x.example.org/ping}\n",
     "inv.yaml:2: alerts.deadman.url: must be an http:// or https:// URL, "
     "got 'ftp://x.example.org/ping'"),
    ("alerts:\n  deadman: {url_env: HC, method: put}\n",
     "inv.yaml:2: alerts.deadman.method: must be 'get' or 'post', got 'put'"),
])
def test_bad_deadman(tmp_path: Path, text: str, message: str) -> None:
    with pytest.raises(InventoryError) as caught:
        load_inventory(write(tmp_path, text))
    assert str(caught.value).replace(str(tmp_path) + "/", "") == message


def test_renewal_expectations(tmp_path: Path) -> None:
    from chainwatch.config.inventory import parse_inventory

    inv = parse_inventory(
        "defaults: {renew_at: 50%, grace: 5%}\n"
        "endpoints:\n"
        "  - www.example.com\n"
        "  - {host: api.example.com, renew_at: 30d}\n"
        "  - {host: acme.example.com, acme: 'https://acme.example.net/directory', grace: 20%}\n",
        path=tmp_path / "inv.yaml",
    )
    www, api, acme = inv.endpoints
    assert (www.renewal.fraction, www.renewal.grace, www.renewal.before) == (0.5, 0.05, None)
    assert api.renewal.before == dt.timedelta(days=30)
    assert api.renewal.grace == 0.05
    assert acme.acme == "https://acme.example.net/directory"
    assert acme.renewal.grace == 0.20
    with pytest.raises(InventoryError, match=r"inv.yaml:2: endpoints\[0\].renew_at: must be"):
        parse_inventory("endpoints:\n  - {host: a.example.com, renew_at: soon}\n",
                        path=tmp_path / "inv.yaml")


def test_named_profile_aia(tmp_path: Path, pki_files: dict[str, object]) -> None:
    inv = load_inventory(write(tmp_path, """
        profiles:
          browsers: {trust: ["file:ca/corp.pem"], aia: true}
          curl: {trust: ["file:ca/corp.pem"]}
        endpoints:
          - {host: api.example.com, profiles: [browsers, curl]}
        """))
    browsers, curl = inv.profiles["browsers"], inv.profiles["curl"]
    assert browsers.aia and browsers.building is Building.MODERN
    assert not curl.aia
    assert [(p.spec, p.aia) for p in inv.endpoints[0].profiles] == [
        ("browsers", True), ("curl", False)
    ]
    with pytest.raises(InventoryError) as caught:
        load_inventory(write(tmp_path, "profiles:\n  b: {trust: [mozilla], aia: sometimes}\n",
                             name="bad.yaml"))
    assert str(caught.value).replace(str(tmp_path) + "/", "") == (
        "bad.yaml:2: profiles.b.aia: expected true or false, got 'sometimes'"
    )


def test_renewal_expectations_by_tag(tmp_path: Path) -> None:
    from chainwatch.config.inventory import parse_inventory

    inv = parse_inventory(
        "defaults: {renew_at: 66%}\n"
        "renewals:\n"
        "  - {tags: [acme-6d], renew_at: 50%, grace: 5%}\n"
        "endpoints:\n"
        "  - {host: short.example.com, tags: [acme-6d]}\n"
        "  - {host: own.example.com, tags: [acme-6d], renew_at: 2d}\n"
        "  - {host: other.example.com}\n",
        path=tmp_path / "inv.yaml",
    )
    short, own, other = inv.endpoints
    assert (short.renewal.fraction, short.renewal.grace) == (0.5, 0.05)
    assert own.renewal.before == dt.timedelta(days=2)  # the endpoint's own setting wins
    assert own.renewal.grace == 0.05
    assert other.renewal.fraction == 0.66


def test_fetch_allow_private(tmp_path: Path) -> None:
    path = tmp_path / "inv.yaml"
    path.write_text("fetch: {allow_private: [10.0.0.0/8, '::1']}\nendpoints: [a.example]\n")
    inv = load_inventory(path)
    assert [str(n) for n in inv.allow_private] == ["10.0.0.0/8", "::1/128"]
    path.write_text("fetch:\n  allow_private: [10.0.0.0/8, not-a-net]\n")
    with pytest.raises(InventoryError) as caught:
        load_inventory(path)
    assert str(caught.value).startswith(f"{path}:2: fetch.allow_private[1]: 'not-a-net' is not")


def test_zones_section(tmp_path: Path) -> None:
    inv = load_inventory(write(tmp_path, (
        "zones:\n  dc-east: {queue: q-east, concurrency: 8}\n  dc-west:\n  default: {}\n"
        "endpoints:\n  - {host: a.example.com, zone: dc-east}\n"
        "  - {host: b.example.com, zone: dc-west}\n  - c.example.com\n")))
    assert [e.zone for e in inv.endpoints] == ["dc-east", "dc-west", "default"]
    assert inv.zone("dc-east").queue == "q-east" and inv.zone("dc-east").concurrency == 8
    assert inv.zone("dc-west").queue == "chainwatch.dc-west"
    assert [z.name for z in inv.used_zones()] == ["dc-east", "dc-west", "default"]
    # Without a zones section any zone name is accepted, with the defaults.
    free = load_inventory(write(tmp_path, "endpoints:\n  - {host: a.example.com, zone: x1}\n",
                                "free.yaml"))
    assert free.zone("x1").queue == "chainwatch.x1" and free.zone("x1").concurrency == 64
