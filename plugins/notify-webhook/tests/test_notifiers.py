"""The webhook, Slack and Teams notifiers: signatures, retry rules against a local HTTP server, payloads."""

from __future__ import annotations

import base64
import json
import threading
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from standardwebhooks.webhooks import Webhook
from tfregistry_notify_webhook import plugin
from tfregistry_notify_webhook.notifiers import SlackNotifier, TeamsNotifier, WebhookNotifier, sign

from tfregistry.interfaces import Delivery, DeliveryError, Event
from tfregistry.testing.plugin import BackendCollector, plugin_manager, plugin_settings

SECRET = "whsec_" + base64.b64encode(b"0123456789abcdef0123456789abcdef").decode()
EVENT = Event("evt_1", "provider.published", datetime(2026, 12, 4, 10, 30, tzinfo=UTC), "acme-corp", "acme",
              "alice@example.com", "req-1", {"namespace": "acme", "type": "dns", "version": "1.0.0", "hostname": "",
                                             "platforms": ["linux_amd64"]})


@pytest.fixture
def server():
    """A local HTTP server answering each path's status (``/status/503``), recording requests."""
    got: list[tuple[str, dict[str, str], bytes]] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers["Content-Length"]))
            got.append((self.path, dict(self.headers), body))
            self.send_response(int(self.path.rsplit("/", 1)[1]))
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args: Any) -> None:
            pass

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{httpd.server_port}/status/", got
    httpd.shutdown()
    httpd.server_close()


def test_signature_is_what_the_standard_webhooks_library_verifies(server):
    base, got = server
    n = WebhookNotifier(timeout=5)
    target = n.validate({"url": base + "200", "secret": SECRET})
    n.send(Delivery("msg_42", 3, EVENT, target))
    [(_, headers, body)] = got
    assert headers["webhook-id"] == "msg_42"
    assert headers["webhook-signature"] == sign(SECRET, "msg_42", int(headers["webhook-timestamp"]), body)
    assert Webhook(SECRET).verify(body, headers) == EVENT.to_dict() == json.loads(body)


def test_the_spec_example_signature():
    """The example of the Standard Webhooks spec (its README's test vector)."""
    secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
    body = b'{"test": 2432232314}'
    assert sign(secret, "msg_p5jXN8AQM9LWM0D4loKWxJek", 1614265330, body) == \
        "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="


@pytest.mark.parametrize(("status", "permanent"), [(500, False), (503, False), (429, False), (408, False),
                                                   (404, True), (400, True), (301, True)])
def test_failures_retryable_or_permanent(server, status, permanent):
    base, _ = server
    with pytest.raises(DeliveryError, match=f"HTTP {status}") as exc:
        WebhookNotifier(timeout=5).send(Delivery("msg_1", 1, EVENT, {"url": base + str(status), "secret": SECRET}))
    assert exc.value.permanent is permanent and "127.0.0.1" in str(exc.value)


def test_slack_and_teams_never_name_their_secret_url(server):
    base, _ = server
    for cls in (SlackNotifier, TeamsNotifier):
        with pytest.raises(DeliveryError) as exc:
            cls(timeout=5).send(Delivery("msg_1", 1, EVENT, {"url": base + "500"}))
        assert "127.0.0.1" not in str(exc.value) and str(exc.value) == "the webhook URL answered HTTP 500"


def test_slack_payload(server):
    base, got = server
    SlackNotifier(timeout=5).send(Delivery("msg_1", 1, EVENT, {"url": base + "200"}))
    payload = json.loads(got[0][2])
    assert payload["text"] == "[provider.published] provider acme/dns 1.0.0"
    assert [b["type"] for b in payload["blocks"]] == ["section", "section", "context"]
    assert {"type": "mrkdwn", "text": "*Namespace*\nacme"} in payload["blocks"][1]["fields"]


def test_teams_payload_is_an_adaptive_card(server):
    base, got = server
    TeamsNotifier(timeout=5).send(Delivery("msg_1", 1, EVENT, {"url": base + "202"}))
    payload = json.loads(got[0][2])
    assert payload["type"] == "message"
    [attachment] = payload["attachments"]
    assert attachment["contentType"] == "application/vnd.microsoft.card.adaptive"
    card = attachment["content"]
    assert card["type"] == "AdaptiveCard" and card["version"] == "1.4"
    assert card["body"][0]["text"] == "[provider.published] provider acme/dns 1.0.0"
    assert {"title": "Organization", "value": "acme-corp"} in card["body"][1]["facts"]


def test_validation():
    n = WebhookNotifier(timeout=1)
    for bad, message in [({"url": "https://x.example"}, "secret is required"),
                         ({"url": "https://x.example", "secret": "whsec_short"}, "base64|24 to 64"),
                         ({"url": "ftp://x.example", "secret": SECRET}, "http"),
                         ({"url": "https://x.example", "secret": SECRET, "extra": 1}, "unknown settings")]:
        with pytest.raises(ValueError, match=message) as exc:
            n.validate(bad)
        assert SECRET not in str(exc.value)
    assert SlackNotifier(timeout=1).validate({"url": "https://hooks.slack.com/services/T/B/X"})


def test_plugin_offers_three_notifiers_with_the_timeout_setting():
    register = BackendCollector()
    plugin_manager(plugin).hook.tfr_register_notifiers(register=register)
    assert sorted(register.added) == ["slack", "teams", "webhook"]
    built = register.added["webhook"][0](plugin_settings(plugin, "plugins.tfregistry-notify-webhook", timeout=3))
    assert isinstance(built, WebhookNotifier) and built.timeout == 3 and built.secret_fields == ("secret",)
