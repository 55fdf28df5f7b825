"""Events and notifications: subscriptions through the API, real HTTP deliveries to a local receiver that
verifies Standard Webhooks signatures, retries, dead letters, listeners, and expiry notices once per item
and window (across a restart).  SQLite and PostgreSQL."""

from __future__ import annotations

import base64
import hashlib
import hmac
import io
import json
import secrets
import socket
import threading
import time
from datetime import timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import jsonschema
import pytest
from standardwebhooks.webhooks import Webhook, WebhookVerificationError

from tests.conftest import bearer, new_token
from tfregistry import hookimpl
from tfregistry.events import EVENTS, example, schema
from tfregistry.interfaces import Delivery, DeliveryError, Notifier
from tfregistry.models import NotificationDelivery, NotificationSubscription, utcnow
from tfregistry.testing.plugin import build_module_archive

# --- a webhook receiver, verifying as the Standard Webhooks spec says ---------------------------------
# https://github.com/standard-webhooks/standard-webhooks/blob/main/spec/standard-webhooks.md


def verify_standard_webhook(secret: str, headers: Any, body: bytes, tolerance: int = 300) -> dict[str, Any]:
    """Verify like a receiver: the timestamp within ``tolerance`` seconds, one ``v1`` signature matching."""
    msg_id, timestamp = headers["webhook-id"], headers["webhook-timestamp"]
    if abs(time.time() - int(timestamp)) > tolerance:
        raise ValueError("timestamp outside the tolerance")
    key = base64.b64decode(secret.split("_", 1)[1])
    expected = base64.b64encode(hmac.new(key, f"{msg_id}.{timestamp}.{body.decode()}".encode(),
                                        hashlib.sha256).digest()).decode()
    for candidate in headers["webhook-signature"].split(" "):
        version, _, signature = candidate.partition(",")
        if version == "v1" and hmac.compare_digest(signature, expected):
            return json.loads(body)
    raise ValueError("no valid signature")


class Receiver:
    """A local HTTP server: answers ``statuses`` in turn (then 200), records what it got."""

    def __init__(self, secret: str | None = None, statuses: list[int] | None = None, hang_first: bool = False) -> None:
        self.secret, self.statuses, self.requests = secret, list(statuses or []), []
        #: with ``hang_first``, the first request is held (never answered) until this is set
        self.release = threading.Event()
        self.hang_first = hang_first
        self.seen_ids: set[str] = set()
        self.verified: list[dict[str, Any]] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                outer.requests.append((dict(self.headers), body))
                if outer.hang_first and len(outer.requests) == 1:
                    outer.release.wait(60)  # the sender dies meanwhile
                    return
                status = outer.statuses.pop(0) if outer.statuses else 200
                if status == 200 and outer.secret:
                    try:
                        event = verify_standard_webhook(outer.secret, self.headers, body)
                        # and the Standard Webhooks project's own verifier agrees
                        assert Webhook(outer.secret).verify(body, dict(self.headers)) == event
                    except (ValueError, KeyError, WebhookVerificationError, AssertionError):
                        status = 401
                    else:
                        if self.headers["webhook-id"] not in outer.seen_ids:  # deduplicate, as receivers do
                            outer.seen_ids.add(self.headers["webhook-id"])
                            outer.verified.append(event)
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}/hook"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.release.set()
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver_factory():
    made: list[Receiver] = []

    def make(**kwargs: Any) -> Receiver:
        made.append(Receiver(**kwargs))
        return made[-1]

    yield make
    for r in made:
        r.close()


def new_secret() -> str:
    return "whsec_" + base64.b64encode(secrets.token_bytes(32)).decode()


def dead_url() -> str:
    """A URL nothing listens on (a port just closed)."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()
    return f"http://127.0.0.1:{port}/hook"


import tfregistry_notify_webhook.plugin as webhook_plugin  # noqa: E402


@pytest.fixture
def notify_app(app_factory):
    def make(config: dict[str, Any] | None = None, plugins: tuple[Any, ...] = ()) -> Any:
        return app_factory({"notify.backoff_seconds": 0, **(config or {})}, plugins=(webhook_plugin, *plugins))

    return make


@pytest.fixture
def publish_with():
    """``publish_with(client, token, version=..., headers=..., archive=...)``: POST a module version."""

    def do(client: Any, token: str, version: str = "1.0.0", headers: dict[str, str] | None = None,
           archive: bytes | None = None) -> Any:
        data = {"namespace": "acme", "name": "network", "system": "aws", "version": version,
                "archive": (io.BytesIO(archive if archive is not None else build_module_archive()), "m.tar.gz")}
        return client.post("/api/v1/modules", data=data, headers={**bearer(token), **(headers or {})},
                           content_type="multipart/form-data")

    return do


def subscribe(client: Any, token: str, **fields: Any) -> Any:
    body = {"name": "test", "events": ["module.published"], "notifier": "webhook", **fields}
    return client.post("/api/v1/notifications/subscriptions", json=body, headers=bearer(token))


def deliveries(client: Any, token: str, **query: Any) -> list[dict[str, Any]]:
    qs = "&".join(f"{k}={v}" for k, v in query.items())
    response = client.get(f"/api/v1/notifications/deliveries?{qs}", headers=bearer(token))
    assert response.status_code == 200, response.get_json()
    return response.get_json()


def test_published_module_reaches_a_verifying_webhook_receiver(notify_app, receiver_factory, publish_with):
    app = notify_app({"proxy.trusted": ["127.0.0.1/32"]})  # the test client: a proxy whose X-Request-ID is kept
    client, admin = app.test_client(), new_token(app, "admin")
    secret = new_secret()
    receiver = receiver_factory(secret=secret)
    created = subscribe(client, admin, target={"url": receiver.url, "secret": secret})
    assert created.status_code == 201, created.get_json()
    sub = created.get_json()
    assert sub["target"] == {"url": receiver.url, "secret": "********"}  # the secret is never shown again
    with app.extensions["tfregistry"].db.session() as session:
        stored = session.get(NotificationSubscription, sub["id"])
        assert secret not in json.dumps(stored.target) and secret not in (stored.secrets_encrypted or "")

    assert publish_with(client, admin, version="1.0.0", headers={"X-Request-ID": "req-publish-1"}).status_code == 201
    app.extensions["tfregistry"].jobs.wait()

    assert len(receiver.verified) == 1
    event = receiver.verified[0]
    jsonschema.validate(event, schema("module.published"))
    assert event["data"]["version"] == "1.0.0" and event["namespace"] == "acme"
    assert event["request_id"] == "req-publish-1"
    log = deliveries(client, admin)
    assert [(d["status"], d["attempts"], d["id"]) for d in log] == [
        ("delivered", 1, receiver.requests[0][0]["webhook-id"])]


def test_receiver_failing_three_times_gets_the_event_once_after_retries(notify_app, receiver_factory, publish_with):
    app = notify_app()
    client, admin = app.test_client(), new_token(app, "admin")
    secret = new_secret()
    receiver = receiver_factory(secret=secret, statuses=[500, 500, 500])
    assert subscribe(client, admin, target={"url": receiver.url, "secret": secret}).status_code == 201
    assert publish_with(client, admin).status_code == 201
    app.extensions["tfregistry"].jobs.wait()

    assert len(receiver.requests) == 4
    assert len({headers["webhook-id"] for headers, _ in receiver.requests}) == 1  # one id on every attempt
    assert len(receiver.verified) == 1
    [d] = deliveries(client, admin)
    assert (d["status"], d["attempts"], d["last_error"]) == ("delivered", 4, None)


def test_dead_target_goes_to_the_dead_letters_and_is_redelivered_with_the_same_id(
        notify_app, receiver_factory, publish_with):
    app = notify_app({"notify.max_attempts": 3})
    client, admin = app.test_client(), new_token(app, "admin")
    secret = new_secret()
    receiver = receiver_factory(secret=secret, statuses=[503, 503, 503])
    assert subscribe(client, admin, target={"url": receiver.url, "secret": secret}).status_code == 201
    assert publish_with(client, admin).status_code == 201
    registry = app.extensions["tfregistry"]
    registry.jobs.wait()

    [dead] = deliveries(client, admin, status="dead")
    assert dead["attempts"] == 3 and "HTTP 503" in dead["last_error"] and not receiver.verified
    again = client.post(f"/api/v1/notifications/deliveries/{dead['id']}/redeliver", headers=bearer(admin))
    assert again.status_code == 202, again.get_json()
    registry.jobs.wait()
    [done] = deliveries(client, admin)
    assert done["id"] == dead["id"] and done["status"] == "delivered"
    assert receiver.requests[-1][0]["webhook-id"] == dead["id"] and len(receiver.verified) == 1
    assert client.post(f"/api/v1/notifications/deliveries/{dead['id']}/redeliver",
                       headers=bearer(admin)).status_code == 409


def test_a_4xx_answer_is_not_retried(notify_app, receiver_factory, publish_with):
    app = notify_app()
    client, admin = app.test_client(), new_token(app, "admin")
    receiver = receiver_factory(statuses=[410])
    assert subscribe(client, admin, target={"url": receiver.url, "secret": new_secret()}).status_code == 201
    assert publish_with(client, admin).status_code == 201
    app.extensions["tfregistry"].jobs.wait()
    [d] = deliveries(client, admin)
    assert (d["status"], d["attempts"], len(receiver.requests)) == ("dead", 1, 1)
    assert "HTTP 410" in d["last_error"]


def test_dead_receiver_never_fails_a_publish(notify_app, publish_with):
    app = notify_app({"notify.max_attempts": 2})
    client, admin = app.test_client(), new_token(app, "admin")
    assert subscribe(client, admin, target={"url": dead_url(), "secret": new_secret()}).status_code == 201
    response = publish_with(client, admin)
    assert response.status_code == 201, response.get_json()
    assert client.get("/v1/modules/acme/network/aws/versions", headers=bearer(admin)).status_code == 200
    app.extensions["tfregistry"].jobs.wait()
    [d] = deliveries(client, admin)
    assert d["status"] == "dead" and d["attempts"] == 2 and "could not reach 127.0.0.1" in d["last_error"]


def test_subscription_validation_and_filters(notify_app, receiver_factory, publish_with):
    app = notify_app()
    client, admin = app.test_client(), new_token(app, "admin")
    receiver = receiver_factory()
    bad = subscribe(client, admin, target={"url": receiver.url, "secret": "not-a-secret"})
    assert bad.status_code == 400 and "whsec_" in bad.get_json()["message"]
    unknown = subscribe(client, admin, notifier="pigeon", target={})
    assert unknown.status_code == 400 and "no notifier 'pigeon'" in unknown.get_json()["message"]
    wrong_event = subscribe(client, admin, events=["module.exploded"], target={"url": receiver.url})
    assert wrong_event.status_code == 422
    # only namespace "other": a publish to "acme" is not delivered
    sub = subscribe(client, admin, namespace="other", target={"url": receiver.url, "secret": new_secret()})
    assert sub.status_code == 201
    assert publish_with(client, admin).status_code == 201
    app.extensions["tfregistry"].jobs.wait()
    assert deliveries(client, admin) == [] and receiver.requests == []
    # patch: the namespace filter off, the secret kept when left out
    sub_id = sub.get_json()["id"]
    patched = client.patch(f"/api/v1/notifications/subscriptions/{sub_id}", headers=bearer(admin),
                           json={"namespace": None, "target": {"url": receiver.url}})
    assert patched.status_code == 200, patched.get_json()
    assert patched.get_json()["target"]["secret"] == "********"
    assert publish_with(client, admin, version="1.1.0").status_code == 201
    app.extensions["tfregistry"].jobs.wait()
    assert [d["status"] for d in deliveries(client, admin)] == ["delivered"]
    assert client.delete(f"/api/v1/notifications/subscriptions/{sub_id}", headers=bearer(admin)).status_code == 204
    assert client.get(f"/api/v1/notifications/subscriptions/{sub_id}", headers=bearer(admin)).status_code == 404


def test_test_notification_and_permissions(notify_app, receiver_factory):
    app = notify_app()
    client, admin = app.test_client(), new_token(app, "admin")
    secret = new_secret()
    receiver = receiver_factory(secret=secret)
    sub = subscribe(client, admin, target={"url": receiver.url, "secret": secret}).get_json()
    sent = client.post(f"/api/v1/notifications/subscriptions/{sub['id']}/test", headers=bearer(admin))
    assert sent.get_json() == {"delivered": True, "error": None}
    assert receiver.verified[0]["type"] == "notification.test"
    jsonschema.validate(receiver.verified[0], schema("notification.test"))
    receiver.statuses = [500]
    failed = client.post(f"/api/v1/notifications/subscriptions/{sub['id']}/test", headers=bearer(admin)).get_json()
    assert failed["delivered"] is False and "HTTP 500" in failed["error"]

    reader = new_token(app, "read")
    assert client.get("/api/v1/notifications/subscriptions", headers=bearer(reader)).status_code == 403
    assert client.get("/api/v1/notifications/subscriptions").status_code == 401


# --- listeners and notifiers as plugins -----------------------------------------------------------------


class Recorder:
    """A test plugin: listens to every event and offers a ``memory`` notifier that keeps what it is sent."""

    def __init__(self) -> None:
        self.events: list[Any] = []
        self.sent: list[Delivery] = []
        self.fail = False
        outer = self

        class Memory(Notifier):
            secret_fields = ("token",)

            def validate(self, target: dict[str, Any]) -> dict[str, Any]:
                return dict(target)

            def send(self, delivery: Delivery) -> None:
                if outer.fail:
                    raise DeliveryError("memory notifier told to fail")
                outer.sent.append(delivery)

        self.memory = Memory

    @hookimpl
    def tfr_event(self, registry: Any, event: Any) -> None:
        self.events.append(event)

    @hookimpl
    def tfr_register_notifiers(self, register: Any) -> None:
        register.add("memory", lambda settings: self.memory(), description="test")


def test_hook_tfr_event_sees_every_event_of_the_module_flows_and_each_validates(notify_app, publish_with):
    recorder = Recorder()
    app = notify_app(plugins=(recorder,))
    client, admin = app.test_client(), new_token(app, "admin")
    assert publish_with(client, admin, version="1.0.0").status_code == 201
    assert client.patch("/api/v1/modules/acme/network/aws/1.0.0", json={"deprecated": True, "reason": "use 2.x"},
                        headers=bearer(admin)).status_code == 200
    assert client.delete("/api/v1/modules/acme/network/aws/1.0.0", headers=bearer(admin)).status_code == 204
    # a failed publish (bad archive) raises nothing
    assert publish_with(client, admin, version="2.0.0", archive=b"not a tarball").status_code == 400
    types = [e.type for e in recorder.events]
    assert types == ["module.published", "module.deprecated", "module.deleted"]
    for event in recorder.events:
        jsonschema.validate(event.to_dict(), schema(event.type))
        assert event.actor and event.namespace == "acme" and event.request_id


def test_hook_tfr_register_notifiers_delivers_with_secrets_decrypted(notify_app, publish_with):
    recorder = Recorder()
    app = notify_app(plugins=(recorder,))
    client, admin = app.test_client(), new_token(app, "admin")
    listed = client.get("/api/v1/notifications/notifiers", headers=bearer(admin)).get_json()
    assert {"name": "memory", "secret_fields": ["token"]} in listed
    sub = subscribe(client, admin, notifier="memory", events=["*"], target={"room": "ops", "token": "s3cr3t"})
    assert sub.status_code == 201 and sub.get_json()["target"] == {"room": "ops", "token": "********"}
    assert publish_with(client, admin).status_code == 201
    app.extensions["tfregistry"].jobs.wait()
    [delivery] = recorder.sent
    assert delivery.target == {"room": "ops", "token": "s3cr3t"} and delivery.attempt == 1
    assert delivery.event.type == "module.published"


def test_every_event_has_a_schema_and_a_valid_example():
    for name in EVENTS:
        jsonschema.Draft202012Validator.check_schema(schema(name))
        jsonschema.validate(example(name), schema(name))


def test_failed_job_raises_job_failed(notify_app):
    recorder = Recorder()
    app = notify_app({"jobs.retries": 0}, plugins=(recorder,))
    registry = app.extensions["tfregistry"]
    registry.jobs.enqueue("tests.integration.test_notifications:always_fails")
    registry.jobs.wait()
    [event] = [e for e in recorder.events if e.type == "job.failed"]
    jsonschema.validate(event.to_dict(), schema("job.failed"))
    assert event.data["job"] == "tests.integration.test_notifications:always_fails"
    assert "on purpose" in event.data["error"]


def always_fails(registry: Any) -> None:
    raise RuntimeError("failing on purpose")


# --- expiry notices ---------------------------------------------------------------------------------------


def test_expiry_notices_once_per_item_and_window_across_a_restart(notify_app, signer):
    from tfregistry.services.notifications import expiry_notices

    recorder = Recorder()
    app = notify_app(plugins=(recorder,))
    registry = app.extensions["tfregistry"]
    client, admin = app.test_client(), new_token(app, "admin")
    assert subscribe(client, admin, notifier="memory", events=["token.expiring", "gpg_key.expiring"],
                     target={}).status_code == 201
    new_token(app, "read", name="ci-token", expires_in=timedelta(days=5))
    new_token(app, "read", name="far-token", expires_in=timedelta(days=90))
    key = client.post("/api/v1/gpg-keys", json={"namespace": "acme", "ascii_armor": signer.public_armor},
                      headers=bearer(admin))
    assert key.status_code == 201, key.get_json()
    from tfregistry.models import GpgKey

    with registry.db.session() as session:  # the key (real, made by gpg) expires in 20 days
        row = session.query(GpgKey).one()
        row.expires_at = utcnow() + timedelta(days=20)
        session.commit()

    first = expiry_notices(registry)
    assert sorted(n.rsplit(":", 1)[1] for n in first) == ["30", "7"]
    assert expiry_notices(registry) == []
    registry.jobs.wait()
    assert sorted((d.event.type, d.event.data["days"]) for d in recorder.sent) == [
        ("gpg_key.expiring", 30), ("token.expiring", 7)]
    for d in recorder.sent:
        jsonschema.validate(d.event.to_dict(), schema(d.event.type))

    # a restart: a new application on the same database sends nothing again
    again = Recorder()
    app2 = notify_app(plugins=(again,))
    assert expiry_notices(app2.extensions["tfregistry"]) == []
    app2.extensions["tfregistry"].jobs.wait()
    assert again.sent == [] and again.events == []

    # the key moves into the 7-day window: one more notice, for that window only
    with registry.db.session() as session:
        session.query(GpgKey).one().expires_at = utcnow() + timedelta(days=6)
        session.commit()
    # (a new expiry time is a new item: a key renewed later is noticed afresh)
    second = expiry_notices(app2.extensions["tfregistry"])
    assert [n.rsplit(":", 1)[1] for n in second] == ["7"]


def test_delivery_log_survives_a_restart_and_pending_ones_are_requeued(notify_app, publish_with):
    """A delivery left pending (its process died before its job ran) is queued again by the tick."""
    from tfregistry.services.notifications import requeue_pending

    recorder = Recorder()
    app = notify_app(plugins=(recorder,))
    registry = app.extensions["tfregistry"]
    client, admin = app.test_client(), new_token(app, "admin")
    sub = subscribe(client, admin, notifier="memory", target={}).get_json()
    with registry.db.session() as session:  # what a process dying between commit and job leaves behind
        session.add(NotificationDelivery(id="msg_left_behind", subscription_id=sub["id"], event_id="evt_1",
                                         event_type="module.published", event=example("module.published"),
                                         status="pending", attempts=1,
                                         created_at=utcnow() - timedelta(minutes=10),
                                         last_attempt_at=utcnow() - timedelta(minutes=10)))
        session.commit()
    app2 = notify_app(plugins=(recorder,))
    assert requeue_pending(app2.extensions["tfregistry"], timedelta(minutes=5)) == ["msg_left_behind"]
    app2.extensions["tfregistry"].jobs.wait()
    assert [d.id for d in recorder.sent] == ["msg_left_behind"] and recorder.sent[0].attempt == 2
    assert requeue_pending(app2.extensions["tfregistry"], timedelta(minutes=5)) == []


# --- e-mail: the whole way, through a real SMTP server with STARTTLS and a throwaway CA -------------------


def test_mail_for_module_published_and_token_expiring_through_starttls(notify_app, publish_with, tmp_path):
    import tfregistry_notify_smtp.plugin as smtp_plugin
    from tfregistry_notify_smtp.testing import SmtpServer, make_ca_and_server_cert

    from tfregistry.services.notifications import expiry_notices

    ca, cert, key = make_ca_and_server_cert(tmp_path / "pki")
    server = SmtpServer(cert, key, mode="starttls")
    try:
        settings = {f"plugins.tfregistry-notify-smtp.{k}": v for k, v in {
            "host": "127.0.0.1", "port": server.port, "security": "starttls", "sender": "registry@example.com",
            "ca_file": str(ca), "timeout": 5}.items()}
        app = notify_app(settings, plugins=(smtp_plugin,))
        registry = app.extensions["tfregistry"]
        client, admin = app.test_client(), new_token(app, "admin")
        sub = subscribe(client, admin, notifier="smtp", events=["module.published", "token.expiring"],
                        target={"to": ["ops@example.com"]})
        assert sub.status_code == 201, sub.get_json()
        assert publish_with(client, admin, version="3.1.0").status_code == 201
        new_token(app, "read", name="deploy-bot", expires_in=timedelta(hours=20))
        assert len(expiry_notices(registry)) == 1
        registry.jobs.wait()

        mails = {m["X-Tfregistry-Event"]: m for _, _, m in server.received.messages}
        assert set(mails) == {"module.published", "token.expiring"}
        assert mails["module.published"]["Subject"] == "[module.published] module acme/network/aws 3.1.0"
        expiring = mails["token.expiring"]
        text = next(p for p in expiring.walk() if p.get_content_type() == "text/plain").get_payload(decode=True)
        assert b'"deploy-bot"' in text and b"in 1 day(s)" in text and b"tfr token rotate" in text
        assert all(m["To"] == "ops@example.com" for m in mails.values())
        assert [d["status"] for d in deliveries(client, admin)] == ["delivered", "delivered"]
        # across a restart the notice is not sent again
        app2 = notify_app(settings, plugins=(smtp_plugin,))
        assert expiry_notices(app2.extensions["tfregistry"]) == []
        app2.extensions["tfregistry"].jobs.wait()
        assert len(server.received.messages) == 2
    finally:
        server.stop()


# --- a worker killed in the middle of a delivery (RQ, a real `tfr worker` process) ---------------------------


def test_worker_killed_mid_delivery_redelivers_with_the_same_webhook_id(
        notify_app, receiver_factory, publish_with, redis_db, tmp_path, database_url):
    import os
    import signal
    import subprocess
    import sys

    from tests.conftest import REDIS_URL
    from tfregistry.jobs import notify_tick

    app = notify_app({"redis_url": REDIS_URL, "jobs.heartbeat_seconds": 1, "notify.requeue_after": 1})
    registry = app.extensions["tfregistry"]
    client, admin = app.test_client(), new_token(app, "admin")
    secret = new_secret()
    receiver = receiver_factory(secret=secret, hang_first=True)
    assert subscribe(client, admin, target={"url": receiver.url, "secret": secret}).status_code == 201
    assert publish_with(client, admin).status_code == 201
    [queued] = deliveries(client, admin)
    assert queued["status"] == "pending"

    env = {**{k: v for k, v in os.environ.items() if not k.startswith("TFR_")},
           "TFR_DATA_DIR": str(tmp_path / "data"), "TFR_DATABASE_URL": database_url, "TFR_REDIS_URL": REDIS_URL,
           "TFR_JOBS__HEARTBEAT_SECONDS": "1", "TFR_NOTIFY__BACKOFF_SECONDS": "0",
           "TFR_PLUGINS": "tfregistry-storage-local,tfregistry-notify-webhook", "PYTHONPATH": os.getcwd()}
    worker = [sys.executable, "-m", "tfregistry", "worker", "--queues", "notify"]
    first = subprocess.Popen(worker, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                             start_new_session=True)
    try:
        deadline = time.monotonic() + 90  # a worker starts slowly on a busy machine
        while not receiver.requests and time.monotonic() < deadline:
            time.sleep(0.05)
        assert receiver.requests, "the worker never started the delivery"
        os.killpg(first.pid, signal.SIGKILL)  # dies while the receiver holds the request
        first.wait(timeout=10)
    finally:
        if first.poll() is None:
            os.killpg(first.pid, signal.SIGKILL)
    [cut] = deliveries(client, admin)
    assert (cut["status"], cut["attempts"]) == ("pending", 1)

    # the periodic tick requeues it once the dead worker's heartbeat is gone (RQ: 10 s after the start)
    time.sleep(11)
    notify_tick(registry)
    second = subprocess.run([*worker, "--burst"], env=env, capture_output=True, text=True, timeout=120)
    assert second.returncode == 0, second.stderr
    [done] = deliveries(client, admin)
    assert (done["status"], done["attempts"]) == ("delivered", 2)
    ids = [headers["webhook-id"] for headers, _ in receiver.requests]
    assert ids == [done["id"], done["id"]]  # the same webhook-id both times
    assert len(receiver.verified) == 1  # so the receiver, deduplicating, saw one event


def test_cli_notify_create_list_test_deliveries_redeliver(notify_app, receiver_factory, publish_with, tmp_path,
                                                          database_url):
    from click.testing import CliRunner

    from tfregistry.cli import Context, cli

    app = notify_app({"notify.max_attempts": 1})
    client, admin = app.test_client(), new_token(app, "admin")
    secret = new_secret()
    receiver = receiver_factory(secret=secret, statuses=[500])
    env = {"TFR_DATA_DIR": str(tmp_path / "data"), "TFR_DATABASE_URL": database_url,
           "TFR_PLUGINS": "tfregistry-storage-local,tfregistry-notify-webhook", "TFR_NOTIFY__BACKOFF_SECONDS": "0",
           "TFR_NOTIFY__MAX_ATTEMPTS": "1"}
    runner = CliRunner(env=env)

    def tfr(*args: str, input: str | None = None) -> Any:
        return runner.invoke(cli, list(args), obj=Context(None), input=input)

    target = tmp_path / "target.json"
    target.write_text(json.dumps({"url": receiver.url, "secret": secret}))
    made = tfr("notify", "create", "--name", "ops", "--event", "module.published", "--notifier", "webhook",
               "--target-file", str(target))
    assert made.exit_code == 0, made.output
    listed = tfr("notify", "list").output
    assert "ops\t(site)\t*\tmodule.published\twebhook" in listed and secret not in listed and "********" in listed
    bad = tfr("notify", "create", "--name", "x", "--event", "module.published", "--notifier", "webhook",
              "--target", "url=ftp://example.com", "--target", f"secret={secret}")
    assert bad.exit_code == 1 and "http(s) URL" in bad.output and secret not in bad.output

    assert publish_with(client, admin).status_code == 201  # the receiver answers 500: one attempt, then dead
    app.extensions["tfregistry"].jobs.wait()
    dead = tfr("notify", "deliveries", "--status", "dead").output.strip().split("\t")
    assert dead[2:5] == ["module.published", "dead", "1"] and "HTTP 500" in dead[-1]
    assert tfr("notify", "redeliver", dead[0]).exit_code == 0  # the command waits for its in-process job
    assert tfr("notify", "deliveries", "--status", "delivered").output.startswith(dead[0])
    assert receiver.requests[-1][0]["webhook-id"] == dead[0] and len(receiver.verified) == 1
    assert tfr("notify", "test", "1").output.strip() == "delivered"
    receiver.statuses = [502]
    failed = tfr("notify", "test", "1")
    assert failed.exit_code == 1 and "HTTP 502" in failed.output
    assert tfr("notify", "delete", "1").exit_code == 0 and tfr("notify", "list").output == ""


def test_docs_events_md_shows_every_event_with_its_example():
    from pathlib import Path

    text = (Path(__file__).resolve().parents[2] / "docs" / "events.md").read_text()
    for name in EVENTS:
        section = text.split(f"## `{name}`\n", 1)[1].split("\n## ", 1)[0]
        block = section.split("```json\n", 1)[1].split("\n```", 1)[0]
        assert json.loads(block) == example(name), f"docs/events.md: the example of {name} is out of date"
        for key in EVENTS[name][1]:
            assert f"| `{key}` |" in section, f"docs/events.md: {name} does not list {key}"


def test_provider_user_and_mirror_flows_raise_events_that_validate(notify_app, signer):
    from tests.integration.test_providers import add_key, publish_provider

    recorder = Recorder()
    app = notify_app({"mirror.require_approval": True}, plugins=(recorder,))
    client, admin = app.test_client(), new_token(app, "admin")
    assert add_key(client, admin, "acme", signer.public_armor).status_code == 201
    assert publish_provider(client, admin, key=signer).status_code == 201
    url = "/api/v1/providers/acme/foo/1.0.0"
    assert client.patch(url, json={"deprecated": True, "reason": "use 1.1"}, headers=bearer(admin)).status_code == 200
    assert client.delete(url, headers=bearer(admin)).status_code == 204
    user = client.post("/api/v1/users", json={"email": "bob@example.com", "name": "Bob"}, headers=bearer(admin))
    assert user.status_code == 201, user.get_json()
    assert client.patch(f"/api/v1/users/{user.get_json()['id']}", json={"disabled": True},
                        headers=bearer(admin)).status_code == 200
    # a mirror requested by someone who may not manage mirrors waits for approval
    requester = new_token(app, "mirrors:read", name="requester")
    asked = client.post("/api/v1/mirrors", json={"upstream_host": "registry.example.com", "namespace": "hashicorp",
                                                 "type": "random"}, headers=bearer(requester))
    assert asked.status_code == 201, asked.get_json()
    # and a sync of an upstream that is not there fails
    made = client.post("/api/v1/mirrors", json={"upstream_host": "127.0.0.1:1", "namespace": "hashicorp",
                                                "type": "random", "upstream_url": "http://127.0.0.1:1"},
                       headers=bearer(admin))
    assert made.status_code == 201, made.get_json()
    assert client.post(f"/api/v1/mirrors/{made.get_json()['id']}/sync", headers=bearer(admin)).status_code == 202
    app.extensions["tfregistry"].jobs.wait()

    types = [e.type for e in recorder.events]
    assert types == ["provider.published", "provider.deprecated", "provider.deleted", "user.disabled",
                     "mirror.request_pending", "mirror.sync_failed"]
    for event in recorder.events:
        jsonschema.validate(event.to_dict(), schema(event.type))
    assert recorder.events[0].data["platforms"] == ["darwin_arm64", "linux_amd64"]
    assert recorder.events[3].data["email"] == "bob@example.com"
    assert recorder.events[4].data["requested_by"] and recorder.events[4].organization is None
    assert recorder.events[5].data["errors"]
