"""The smtp notifier against a real SMTP server (aiosmtpd) with a throwaway CA: STARTTLS, implicit TLS,
login, TLS 1.2 minimum, templates a site overrides, errors that say what failed without secrets."""

from __future__ import annotations

import ssl
from datetime import UTC, datetime
from pathlib import Path

import pytest
from tfregistry_notify_smtp import plugin
from tfregistry_notify_smtp.notifier import SmtpNotifier
from tfregistry_notify_smtp.testing import SmtpServer, make_ca_and_server_cert

from tfregistry.interfaces import Delivery, DeliveryError, Event
from tfregistry.testing.plugin import BackendCollector, plugin_manager, plugin_settings

pytest_plugins = ["tfregistry.testing.plugin"]


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, Path]:
    return make_ca_and_server_cert(tmp_path_factory.mktemp("pki"))


@pytest.fixture
def server_factory(pki):
    servers: list[SmtpServer] = []

    def make(**kwargs) -> SmtpServer:
        servers.append(SmtpServer(pki[1], pki[2], **kwargs))
        return servers[-1]

    yield make
    for s in servers:
        s.stop()


def event(type_: str = "module.published", **data) -> Event:
    values = {"namespace": "acme", "name": "network", "system": "aws", "version": "1.2.0", "sha256": "ab" * 32,
              "size": 1234}
    return Event("evt_1", type_, datetime(2026, 12, 4, 10, 30, tzinfo=UTC), "acme-corp", "acme", "alice@example.com",
                 "req-1", {**values, **data} if type_ == "module.published" else data)


def notifier(pki, server: SmtpServer, **kwargs) -> SmtpNotifier:
    return SmtpNotifier(host="127.0.0.1", port=server.port, security=server.mode, sender="registry@example.com",
                        ca_file=str(pki[0]), timeout=5, **kwargs)


def test_starttls_delivers_plain_text_and_html(pki, server_factory):
    server = server_factory(mode="starttls")
    n = notifier(pki, server)
    target = n.validate({"to": ["ops@example.com", "dev@example.com"]})
    n.send(Delivery("msg_abc", 1, event(), target, "https://registry.example.com"))
    [(sender, rcpts, mail)] = server.received.messages
    assert sender == "registry@example.com" and rcpts == ["ops@example.com", "dev@example.com"]
    assert mail["Subject"] == "[module.published] module acme/network/aws 1.2.0"
    assert mail["Message-ID"] == "<msg_abc@example.com>"
    parts = {p.get_content_type(): p.get_payload(decode=True).decode() for p in mail.walk() if not p.is_multipart()}
    assert set(parts) == {"text/plain", "text/html"}
    assert "version: 1.2.0" in parts["text/plain"] and "https://registry.example.com" in parts["text/plain"]
    assert "<td>acme-corp</td>" in parts["text/html"]


def test_implicit_tls_with_login(pki, server_factory):
    server = server_factory(mode="tls", users={"mailer": "p4ss"})
    n = notifier(pki, server, username="mailer", password="p4ss")
    n.send(Delivery("msg_1", 1, event(), {"to": ["ops@example.com"]}))
    assert server.received.logins == ["mailer"] and len(server.received.messages) == 1
    wrong = notifier(pki, server, username="mailer", password="nope")
    with pytest.raises(DeliveryError, match="SMTP server 127.0.0.1") as exc:
        wrong.send(Delivery("msg_2", 1, event(), {"to": ["ops@example.com"]}))
    assert "nope" not in str(exc.value) and len(server.received.messages) == 1


def test_a_server_not_signed_by_the_ca_is_refused(pki, server_factory, tmp_path):
    other_ca, _, _ = make_ca_and_server_cert(tmp_path / "other")
    server = server_factory(mode="starttls")
    n = SmtpNotifier(host="127.0.0.1", port=server.port, security="starttls", sender="r@example.com",
                     ca_file=str(other_ca), timeout=5)
    with pytest.raises(DeliveryError, match="TLS with SMTP server"):
        n.send(Delivery("msg_1", 1, event(), {"to": ["ops@example.com"]}))
    assert server.received.messages == []


def test_tls_older_than_1_2_is_never_offered(pki, server_factory):
    """The client context refuses anything below TLS 1.2 (this OpenSSL cannot even serve TLS 1.1 to show it)."""
    for security in ("starttls", "tls"):
        n = SmtpNotifier(host="h", port=1, security=security, sender="r@example.com", ca_file=str(pki[0]))
        assert n.context.minimum_version == ssl.TLSVersion.TLSv1_2
        assert n.context.verify_mode == ssl.CERT_REQUIRED and n.context.check_hostname


def test_site_templates_override_the_built_in_ones(pki, server_factory, tmp_path):
    (tmp_path / "module.published.txt").write_text("Published {{ event.data.name }} {{ event.data.version }}\n")
    server = server_factory(mode="starttls")
    notifier(pki, server, templates_dir=str(tmp_path)).send(
        Delivery("msg_1", 1, event(), {"to": ["ops@example.com"]}))
    mail = server.received.messages[0][2]
    parts = {p.get_content_type(): p.get_payload(decode=True).decode() for p in mail.walk() if not p.is_multipart()}
    assert parts["text/plain"].strip() == "Published network 1.2.0"
    assert "<h1>" in parts["text/html"]  # the HTML one is still the built-in


def test_html_escapes_event_values(pki, server_factory):
    server = server_factory(mode="starttls")
    notifier(pki, server).send(Delivery("msg_1", 1, event(system="<script>x</script>"), {"to": ["a@example.com"]}))
    html = [p for p in server.received.messages[0][2].walk() if p.get_content_type() == "text/html"][0]
    assert "<script>" not in html.get_payload(decode=True).decode()


def test_unreachable_server_is_a_retryable_failure(pki):
    n = SmtpNotifier(host="127.0.0.1", port=1, security="starttls", sender="r@example.com", ca_file=str(pki[0]),
                     timeout=2)
    with pytest.raises(DeliveryError, match="could not deliver") as exc:
        n.send(Delivery("msg_1", 1, event(), {"to": ["ops@example.com"]}))
    assert exc.value.permanent is False


def test_target_validation():
    n = SmtpNotifier(host="h", port=587, security="starttls", sender="r@example.com")
    assert n.validate({"to": "ops@example.com"}) == {"to": ["ops@example.com"]}
    for bad in ({}, {"to": []}, {"to": ["not an address"]}, {"to": ["a@example.com"], "cc": "x"}):
        with pytest.raises(ValueError):
            n.validate(bad)


def test_plugin_offers_smtp_and_refuses_subscriptions_until_configured():
    register = BackendCollector()
    plugin_manager(plugin).hook.tfr_register_notifiers(register=register)
    [(name, factory)] = [(n, b[0]) for n, b in register.added.items()]
    assert name == "smtp"
    unconfigured = factory(plugin_settings(plugin, "plugins.tfregistry-notify-smtp"))
    with pytest.raises(ValueError, match="no SMTP server is configured"):
        unconfigured.validate({"to": ["a@example.com"]})
    configured = factory(plugin_settings(plugin, "plugins.tfregistry-notify-smtp", host="mail.example.com",
                                         sender="r@example.com"))
    assert configured.validate({"to": ["a@example.com"]}) == {"to": ["a@example.com"]}
