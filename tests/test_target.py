"""One identity type for what is watched: :class:`chainwatch.model.values.Target`."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from chainwatch.alerts.outbox import target_json
from chainwatch.model.names import StartTLS
from chainwatch.model.values import Target

hosts = st.from_regex(r"[a-z0-9]([a-z0-9-]{0,20}[a-z0-9])?(\.[a-z0-9]{1,10}){0,3}", fullmatch=True)
addresses = st.one_of(st.none(), st.ip_addresses().map(str))
protocols = st.one_of(st.none(), st.sampled_from([p.value for p in StartTLS]))


@given(hosts, st.integers(1, 65535), addresses, st.one_of(st.none(), hosts), protocols)
def test_a_key_names_the_endpoint_of_every_address(host: str, port: int, ip: str | None,
                                                   sni: str | None, starttls: str | None) -> None:
    t = Target(host, port, ip, sni, starttls)
    back = Target.from_key(t.key)
    assert back is not None
    assert back.key == t.key
    assert back == t.endpoint or (sni == host and back == Target(host, port, None, None, starttls))
    assert t.endpoint.ip is None and t.endpoint.key == t.key


def test_keys_of_the_shapes_that_exist() -> None:
    mx = Target("mail.example.com", 25, "192.0.2.1", "mx.example.com", "smtp")
    assert mx.key == "mail.example.com:25/smtp#mx.example.com"
    assert Target("::1", 8443).key == "::1:8443"
    assert Target.from_key("::1:8443") == Target("::1", 8443)
    f = Target.file("/etc/ssl/a.pem")
    assert f.is_file and f.key == "file:/etc/ssl/a.pem" and f.path == "/etc/ssl/a.pem"
    assert Target.from_key(f.key) == f
    assert Target.from_key("watchdog:scan") is None
    assert Target.from_key("no port") is None
    assert not Target("file.example", 443).is_file


def test_alert_payload_target_is_the_report_target_without_address() -> None:
    assert target_json("mail.example.com:25/smtp#mx.example.com") == {
        "key": "mail.example.com:25/smtp#mx.example.com", "host": "mail.example.com",
        "port": 25, "ip": None, "sni": "mx.example.com", "starttls": "smtp"}
    assert target_json("file:/etc/ssl/a.pem") == {"key": "file:/etc/ssl/a.pem",
                                                  "file": "/etc/ssl/a.pem"}
    assert target_json("watchdog:channel:hook") == {"key": "watchdog:channel:hook"}
