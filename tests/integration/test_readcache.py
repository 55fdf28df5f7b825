"""The read cache: replayed protocol answers follow every change at once on the replica that made
it, and on every other replica within the documented bound (none on SQLite; on PostgreSQL, where
replicas learn of changes by NOTIFY, twice ``cache.generation_heartbeat``).

Two applications on one database and one storage directory stand for two replicas.  Each test
first makes both cache an answer (and checks that the second request was a replay), then
changes something through one of them (or straight in the database) and reads through both.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy import func, select, update

from tests.conftest import bearer, new_token, post_module
from tfregistry import hookimpl
from tfregistry.models import ApiToken, DownloadEvent, ModuleVersion, Namespace
from tfregistry.readcache import ReadCache
from tfregistry.services import identity as identity_svc
from tfregistry.services import tokens as token_svc
from tfregistry.services.audit import CLI_ACTOR
from tfregistry.services.modules import download_counts
from tfregistry.web import SHARED_ANSWERS_ENV

VERSIONS = "/v1/modules/acme/network/aws/versions"
TERRAFORM = {"User-Agent": "Terraform/1.15.5"}


def read_cache(app: Any) -> ReadCache:
    layer = app.wsgi_app
    while not isinstance(layer, ReadCache):
        layer = layer.wsgi_app
    return layer


class Replica:
    """One application and its test client."""

    def __init__(self, app: Any) -> None:
        self.app = app
        self.client = app.test_client()
        self.registry = app.extensions["tfregistry"]
        self.cache = read_cache(app)

    def get(self, path: str, token: str | None = None, **headers: str) -> Any:
        return self.client.get(path, headers={**(bearer(token) if token else {}), **headers})

    def versions(self, token: str | None = None) -> list[str]:
        response = self.get(VERSIONS, token)
        assert response.status_code == 200, response.get_json()
        return sorted(v["version"] for v in response.get_json()["modules"][0]["versions"])

    def sees(self, check: Callable[[], Any], *, made_here: bool = False) -> None:
        """``check()`` passes at once where the change was made (and on SQLite, where every request
        reads the generation); elsewhere within the staleness bound, and not later."""
        heartbeat = self.registry.settings["cache.generation_heartbeat"]
        if made_here or self.registry.db.engine.dialect.name != "postgresql" or not heartbeat:
            check()
            return
        deadline = time.monotonic() + 2 * heartbeat
        while True:
            try:
                check()
                return
            except AssertionError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.005)

    def replayed(self, path: str, token: str | None = None, **headers: str) -> Any:
        """GET twice; the second answer must be a replay, identical to the first."""
        first = self.get(path, token, **headers)
        hits = self.cache.hits
        second = self.get(path, token, **headers)
        assert self.cache.hits == hits + 1, f"{path} was not replayed"
        assert (second.status_code, second.data) == (first.status_code, first.data)
        assert second.headers["X-Request-Id"] != first.headers["X-Request-Id"]
        return second


def _equal(actual: Any, expected: Any) -> None:
    assert actual == expected


def _deprecation(body: dict[str, Any]) -> tuple[Any, Any]:
    return body["deprecated"], body["deprecation_reason"]


@pytest.fixture
def replicas(app_factory: Any) -> tuple[Replica, Replica, str]:
    """Two replicas of a single-tenant site with acme/network/aws 1.0.0, and an admin token."""
    a, b = Replica(app_factory()), Replica(app_factory())
    admin = new_token(a.app, "admin", name="admin")
    assert post_module(a.client, admin, version="1.0.0").status_code == 201
    return a, b, admin


def test_a_publish_is_seen_at_once_by_the_replica_that_made_it_and_the_other(replicas: Any) -> None:
    a, b, admin = replicas
    for replica in (a, b):
        replica.replayed(VERSIONS, admin)
        assert replica.versions(admin) == ["1.0.0"]
    assert post_module(b.client, admin, version="1.1.0").status_code == 201
    b.sees(lambda: _equal(b.versions(admin), ["1.0.0", "1.1.0"]), made_here=True)
    a.sees(lambda: _equal(a.versions(admin), ["1.0.0", "1.1.0"]))


def test_deprecation_and_deletion_are_seen_at_once(replicas: Any) -> None:
    a, b, admin = replicas
    assert post_module(a.client, admin, version="1.1.0").status_code == 201
    details = "/v1/modules/acme/network/aws/1.1.0"
    for replica in (a, b):
        assert replica.replayed(details, admin).get_json()["deprecated"] is False
    r = a.client.patch("/api/v1/modules/acme/network/aws/1.1.0", json={"deprecated": True, "reason": "use 2.x"},
                       headers=bearer(admin))
    assert r.status_code == 200, r.get_json()
    for replica in (a, b):
        replica.sees(lambda r=replica: _equal(_deprecation(r.get(details, admin).get_json()), (True, "use 2.x")),
                     made_here=replica is a)
        replica.replayed(VERSIONS, admin)
    assert a.client.delete("/api/v1/modules/acme/network/aws/1.1.0", headers=bearer(admin)).status_code == 204
    for replica in (a, b):
        replica.sees(lambda r=replica: _equal(r.versions(admin), ["1.0.0"]), made_here=replica is a)
        assert replica.get(details, admin).status_code == 404


def test_a_visibility_change_is_seen_at_once_by_anonymous_callers(replicas: Any) -> None:
    a, b, admin = replicas
    public = a.client.post("/api/v1/organizations/default/namespaces", json={"name": "acme", "visibility": "public"},
                           headers=bearer(admin))
    assert public.status_code == 201, public.get_json()
    for replica in (a, b):
        assert replica.replayed(VERSIONS).status_code == 200
    private = b.client.post("/api/v1/organizations/default/namespaces",
                            json={"name": "acme", "visibility": "private"}, headers=bearer(admin))
    assert private.status_code == 201, private.get_json()
    for replica in (b, a):
        replica.sees(lambda r=replica: _equal(r.get(VERSIONS).status_code, 401), made_here=replica is b)


def test_a_revoked_token_is_refused_at_once_on_every_replica(replicas: Any) -> None:
    a, b, admin = replicas
    reader = new_token(a.app, "read", name="reader")
    for replica in (a, b):
        replica.replayed(VERSIONS, reader)
    with a.registry.db.session() as session:
        token = session.scalar(select(ApiToken).where(ApiToken.name == "reader"))
        token_id = token.id
    assert a.client.delete(f"/api/v1/tokens/{token_id}", headers=bearer(admin)).status_code == 204
    for replica in (a, b):
        replica.sees(lambda r=replica: _equal(r.get(VERSIONS, reader).status_code, 401), made_here=replica is a)


def test_a_rotation_without_grace_ends_the_old_secret_at_once(replicas: Any) -> None:
    a, b, admin = replicas
    reader = new_token(a.app, "read", name="reader")
    b.replayed(VERSIONS, reader)
    with a.registry.db.session() as session:
        token = session.scalar(select(ApiToken).where(ApiToken.name == "reader"))
        token_svc.rotate_token(session, CLI_ACTOR, token)
        session.commit()
    b.sees(lambda: _equal(b.get(VERSIONS, reader).status_code, 401))


def test_a_disabled_user_and_a_lost_membership_are_refused_at_once(app_factory: Any) -> None:
    a, b = Replica(app_factory({"tenancy": "multi"})), Replica(app_factory({"tenancy": "multi"}))
    admin = new_token(a.app, "admin", name="admin")
    with a.registry.db.session() as s:
        org = identity_svc.create_organization(s, CLI_ACTOR, "blue")
        user = identity_svc.create_user(s, CLI_ACTOR, "dev@example.com", "dev")
        other = identity_svc.create_user(s, CLI_ACTOR, "ops@example.com", "ops")
        for who in (user, other):
            identity_svc.set_membership(s, CLI_ACTOR, who, org, identity_svc.get_role(s, "viewer"))
        _, dev = token_svc.create_token(s, CLI_ACTOR, name="p", scopes=["modules:read"], kind="personal", user=user)
        _, ops = token_svc.create_token(s, CLI_ACTOR, name="p", scopes=["modules:read"], kind="personal", user=other)
        s.commit()
        user_id, other_id = user.id, other.id
    made = a.client.post("/api/v1/organizations/blue/namespaces", json={"name": "acme"}, headers=bearer(admin))
    assert made.status_code == 201, made.get_json()
    assert post_module(a.client, admin).status_code == 201
    for token in (dev, ops):
        b.replayed(VERSIONS, token)
    assert a.client.patch(f"/api/v1/users/{user_id}", json={"disabled": True},
                          headers=bearer(admin)).status_code == 200
    b.sees(lambda: _equal(b.get(VERSIONS, dev).status_code, 401))
    with a.registry.db.session() as s:
        org = identity_svc.get_organization(s, "blue")
        member = identity_svc.membership(s, identity_svc.get_user(s, other_id), org)
        identity_svc.remove_membership(s, CLI_ACTOR, member)
        s.commit()
    b.sees(lambda: _equal(b.get(VERSIONS, ops).status_code, 404))  # another organization's namespace: hidden


def test_an_expired_token_is_refused_although_its_answer_was_cached(replicas: Any) -> None:
    a, b, _ = replicas
    reader = new_token(a.app, "read", name="short", expires_in=timedelta(seconds=2))
    b.replayed(VERSIONS, reader)
    # expiry is a moment, not a change in the database: the entry itself must not outlive the token
    with a.registry.db.session() as s:
        ends = s.scalar(select(ApiToken.expires_at).where(ApiToken.name == "short")).timestamp()
    time.sleep(max(0.0, ends - time.time()) + 0.05)
    assert b.get(VERSIONS, reader).status_code == 401


def test_answers_never_cross_tenants_or_permission_levels(app_factory: Any) -> None:
    site = Replica(app_factory({"tenancy": "multi"}))
    admin = new_token(site.app, "admin", name="admin")
    tokens = {}
    with site.registry.db.session() as s:
        for org in ("blue", "red"):
            identity_svc.create_organization(s, CLI_ACTOR, org)
        s.commit()
        for org in ("blue", "red"):
            _, tokens[org] = token_svc.create_token(
                s, CLI_ACTOR, name=f"ci-{org}", scopes=["modules:read"], kind="service",
                organization=identity_svc.get_organization(s, org))
        s.commit()
    assert site.client.post("/api/v1/organizations/blue/namespaces", json={"name": "acme"},
                            headers=bearer(admin)).status_code == 201
    assert post_module(site.client, admin).status_code == 201
    for path in (VERSIONS, "/v1/modules/acme/network/aws/1.0.0/download", "/v1/modules/acme",
                 "/v1/modules/search?q=network"):
        cached = site.replayed(path, tokens["blue"], **TERRAFORM)
        assert cached.status_code in (200, 204)
        if path.endswith(("versions", "download")):
            assert site.get(path, tokens["red"], **TERRAFORM).status_code == 404
            assert site.get(path, None, **TERRAFORM).status_code == 401
        else:  # lists: the other organization's caller sees nothing of it
            assert "acme" not in site.get(path, tokens["red"]).get_data(as_text=True)


def test_downloads_served_from_the_cache_are_counted_without_a_commit_per_request(replicas: Any) -> None:
    a, b, admin = replicas
    download = "/v1/modules/acme/network/aws/1.0.0/download"
    started = datetime.now(UTC)
    first = a.replayed(download, admin, **TERRAFORM)
    assert first.status_code == 204 and first.headers["X-Terraform-Get"]
    for _ in range(8):
        assert a.get(download, admin, **TERRAFORM).status_code == 204
    with a.registry.db.session() as s:
        written = s.scalar(select(func.count()).select_from(DownloadEvent))
    assert written == 0, "downloads are written in batches, not by the request"
    details = a.get("/v1/modules/acme/network/aws/1.0.0", admin).get_json()
    assert details["downloads"] == 10  # counted, though not written yet
    assert a.registry.downloads.flush() == 10
    with a.registry.db.session() as s:
        events = s.scalars(select(DownloadEvent)).all()
    assert len(events) == 10 and {e.token_id for e in events} == {events[0].token_id} and events[0].token_id
    with a.registry.db.session() as s:  # the version's running total was written with them
        assert download_counts(s, [events[0].module_version_id]) == {events[0].module_version_id: 10}
    assert {e.user_agent for e in events} == {"Terraform/1.15.5"}
    # written by the driver (COPY / executemany), read back through the ORM as the moment of each request
    assert all(e.at.tzinfo is not None and started - timedelta(seconds=1) <= e.at <= datetime.now(UTC)
               for e in events), [e.at for e in events]
    assert {e.client_ip for e in events} == {"127.0.0.1"}


def test_download_events_are_stored_as_given_whatever_their_text_and_number(app_factory: Any) -> None:
    """Events go to the database by the driver in pieces (``COPY`` text on PostgreSQL): agents with
    tabs, newlines and backslashes, missing tokens and addresses, and more events than one piece
    read back through the ORM as they were counted."""
    from tfregistry.services.modules import COPY_CHUNK, record_downloads

    app = app_factory()
    admin = new_token(app, "admin", name="admin")
    assert post_module(app.test_client(), admin).status_code == 201
    registry = app.extensions["tfregistry"]
    with registry.db.session() as s:
        version_id = s.scalars(select(ModuleVersion.id)).one()
    agents = ["Terraform/1.15.5", "tab\there", "line\nbreak\r", "back\\slash \\N", "é ünïcode", None]
    now = time.time()
    rows = [(version_id, None if n % 3 else n, None if n % 7 == 0 else f"10.0.{n % 256}.{n % 5}",
             agents[n % len(agents)], now - n * 0.123457) for n in range(COPY_CHUNK * 2 + 3)]
    rows.append((version_id, 1, "::1", "nul\0byte", now))
    with registry.db.session() as s:
        assert record_downloads(s, rows) == len(rows)
        s.commit()
    with registry.db.session() as s:
        stored = s.execute(select(DownloadEvent.token_id, DownloadEvent.client_ip, DownloadEvent.user_agent,
                                  DownloadEvent.at).order_by(DownloadEvent.id)).all()
        assert download_counts(s, [version_id]) == {version_id: len(rows)}
    assert len(stored) == len(rows)
    for (token, ip, agent, at), (_, token_id, client_ip, user_agent, moment) in zip(stored, rows, strict=True):
        assert (token, ip) == (token_id, client_ip)
        assert agent == (user_agent if user_agent != "nul\0byte" or registry.db.engine.dialect.name == "sqlite"
                         else "nulbyte")  # PostgreSQL text cannot hold NUL: dropped, not the event
        assert abs(at - datetime.fromtimestamp(moment, UTC)) <= timedelta(microseconds=1), (at, moment)


def test_workers_of_one_server_share_the_answers_they_build(app_factory: Any, tmp_path: Path,
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    """An answer one process built is replayed by another process of the same server (the directory
    gunicorn_conf makes per run) without running the view, and counts its download there; only for
    the same caller, and only while the catalog is unchanged."""
    shared = tmp_path / "answers"
    shared.mkdir()
    monkeypatch.setenv(SHARED_ANSWERS_ENV, str(shared))
    a, b = Replica(app_factory()), Replica(app_factory())
    admin = new_token(a.app, "admin", name="admin")
    reader = new_token(a.app, "read", name="reader")
    assert post_module(a.client, admin).status_code == 201
    download = "/v1/modules/acme/network/aws/1.0.0/download"
    statements: list[str] = []
    sa.event.listen(b.registry.db.engine, "before_cursor_execute", lambda *args: statements.append(args[2]))

    built = a.get(download, reader, **TERRAFORM)
    assert built.status_code == 204 and len(list(shared.glob("*.json"))) == 1
    answer = b.get(download, reader, **TERRAFORM)
    assert (answer.status_code, answer.headers["X-Terraform-Get"]) == (204, built.headers["X-Terraform-Get"])
    assert answer.headers["X-Request-Id"] != built.headers["X-Request-Id"]
    assert statements == [], "the view ran in the second process"
    assert sum(b.registry.downloads.pending_counts(list(range(1, 100))).values()) == 1
    assert b.cache.hits == 0 and b.get(download, reader, **TERRAFORM).status_code == 204 and b.cache.hits == 1

    assert b.get(download, admin, **TERRAFORM).status_code == 204 and statements, "another caller's answer"
    statements.clear()
    assert post_module(a.client, admin, version="1.1.0").status_code == 201  # the catalog changes
    changed = a.registry.generation.current()
    deadline = time.monotonic() + 5
    while b.registry.generation.current() != changed and time.monotonic() < deadline:
        time.sleep(0.01)
    assert b.get(download, reader, **TERRAFORM).status_code == 204 and statements, "an answer of the old catalog"
    assert all(p.name.startswith(f"{changed}-") for p in shared.glob("*.json"))  # older generations removed


def test_shared_answers_are_bounded_in_number_and_age(tmp_path: Path) -> None:
    from tfregistry.readcache import Entry, SharedAnswers

    def entry(generation: int, expires: float) -> Entry:
        return Entry(generation, expires, "200 OK", [("Content-Type", "application/json")], b"{}", None, None)

    later = time.time() + 60
    expired = SharedAnswers(str(tmp_path / "expired"), "sqlite:///one", max_age=60)
    (tmp_path / "expired").mkdir()
    expired.put(("", "/v1/x"), entry(7, time.time() - 1))
    assert expired.get(("", "/v1/x"), 7) is None

    (tmp_path / "shared").mkdir()
    store = SharedAnswers(str(tmp_path / "shared"), "sqlite:///one", max_age=0.5, max_files=3)
    for n in range(5):
        store.put(("", "/v1/x", n), entry(7, later))
    assert len(list((tmp_path / "shared").glob("7-*.json"))) == 3  # the rest are built where they are asked for
    assert store.get(("", "/v1/x", 0), 7) is not None and store.get(("", "/v1/x", 4), 7) is None
    assert store.get(("", "/v1/x", 0), 8) is None  # another generation
    assert SharedAnswers(str(tmp_path / "shared"), "sqlite:///two", 60).get(("", "/v1/x", 0), 7) is None  # another db
    store.put(("", "/v1/y"), entry(8, later))  # a newer generation sweeps the older ones
    assert [p.name.split("-")[0] for p in (tmp_path / "shared").glob("*.json")] == ["8"]
    time.sleep(0.6)
    store.put(("", "/v1/z"), entry(8, later))  # files older than max_age go too
    assert len(list((tmp_path / "shared").glob("*.json"))) == 1 and store.get(("", "/v1/z"), 8) is not None


def test_closing_the_application_writes_pending_downloads(app_factory: Any) -> None:
    app = app_factory()
    admin = new_token(app, "admin", name="admin")
    client = app.test_client()
    assert post_module(client, admin).status_code == 201
    for _ in range(5):
        assert client.get("/v1/modules/acme/network/aws/1.0.0/download", headers={**bearer(admin), **TERRAFORM}
                          ).status_code == 204
    registry = app.extensions["tfregistry"]
    registry.downloads.close()
    with registry.db.session() as s:
        assert s.scalar(select(func.count()).select_from(DownloadEvent)) == 5


def test_events_of_a_version_deleted_before_they_were_written_are_dropped(replicas: Any) -> None:
    a, _, admin = replicas
    assert post_module(a.client, admin, version="1.1.0").status_code == 201
    for version in ("1.0.0", "1.1.0"):
        assert a.get(f"/v1/modules/acme/network/aws/{version}/download", admin, **TERRAFORM).status_code == 204
    assert a.client.delete("/api/v1/modules/acme/network/aws/1.1.0", headers=bearer(admin)).status_code == 204
    assert a.registry.downloads.flush() == 1


def test_a_plugin_in_the_permission_decision_turns_replay_off(app_factory: Any) -> None:
    class OfficeHours:
        @hookimpl
        def tfr_permission_allowed(self, identity: Any, action: str, resource: Any) -> bool:
            return True

    app = app_factory(plugins=(OfficeHours(),))
    layer = app.wsgi_app
    while hasattr(layer, "wsgi_app"):
        assert not isinstance(layer, ReadCache)
        layer = layer.wsgi_app


def test_replay_can_be_switched_off(app_factory: Any) -> None:
    app = app_factory({"cache.enabled": False})
    admin = new_token(app, "admin", name="admin")
    client = app.test_client()
    assert post_module(client, admin).status_code == 201
    with app.extensions["tfregistry"].db.session() as s:
        s.execute(update(Namespace).values(visibility="public"))
        s.commit()
    assert client.get(VERSIONS).status_code == 200
    layer = app.wsgi_app
    while hasattr(layer, "wsgi_app"):
        assert not isinstance(layer, ReadCache)
        layer = layer.wsgi_app


def test_signed_files_are_served_without_flask_exactly_as_the_view_serves_them(app_factory: Any) -> None:
    fast, slow = Replica(app_factory()), app_factory({"cache.enabled": False}).test_client()
    admin = new_token(fast.app, "admin", name="admin")
    assert post_module(fast.client, admin).status_code == 201
    location = fast.get("/v1/modules/acme/network/aws/1.0.0/download", admin, **TERRAFORM).headers["X-Terraform-Get"]
    path = location.split("://", 1)[-1].split("/", 1)[1]
    answers = [fast.client.get("/" + path), slow.get("/" + path)]
    assert [a.status_code for a in answers] == [200, 200]
    assert answers[0].data == answers[1].data and answers[0].data[:2] == b"\x1f\x8b"
    for header in ("Content-Type", "Content-Length", "Content-Disposition", "Cache-Control", "Accept-Ranges"):
        assert answers[0].headers[header] == answers[1].headers[header], header
    heads = [fast.client.head("/" + path), slow.head("/" + path)]  # go-getter's first question
    assert [h.status_code for h in heads] == [200, 200] and heads[0].data == heads[1].data == b""
    for header in ("Content-Type", "Content-Length", "Content-Disposition", "Cache-Control", "Accept-Ranges"):
        assert heads[0].headers[header] == heads[1].headers[header] == answers[0].headers[header], header
    tampered = "/" + path.replace("signature=", "signature=x")
    assert fast.client.get(tampered).status_code == 403
    ranged = fast.client.get("/" + path, headers={"Range": "bytes=0-1"})
    assert (ranged.status_code, ranged.data) == (206, answers[0].data[:2])
    assert fast.client.get("/" + path.replace("1.0.0.tar.gz", "9.9.9.tar.gz")).status_code in (403, 404)


def test_a_thread_per_request_server_reuses_the_generation_connections(app: Any) -> None:
    """``tfr serve`` (Werkzeug) starts a thread per request: those threads share a few connections."""
    import threading

    generation = app.extensions["tfregistry"].generation
    seen: list[int | None] = []
    for _ in range(30):
        thread = threading.Thread(target=lambda: seen.append(generation.current()))
        thread.start()
        thread.join()
    assert len(set(seen)) == 1 and seen[0] is not None
    assert len(generation._free) == 1


@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
def test_after_a_commit_the_process_knows_the_generation_without_a_round_trip(replicas: Any) -> None:
    """The committing thread reads the generation before its request is answered, so the worker's event
    loop (``current(read=False)``, never a round trip) replays nothing older and declines nothing."""
    a, _b, admin = replicas
    generation = a.registry.generation
    with a.registry.db.engine.connect() as conn:
        before = conn.execute(sa.text("SELECT generation FROM catalog_state")).scalar_one()
    assert generation.current() == before  # a first direct read, as a pool thread makes
    deadline = time.monotonic() + 10
    while generation.current(read=False) != before and time.monotonic() < deadline:  # the listener proves itself
        time.sleep(0.05)
    assert generation.current(read=False) == before
    assert post_module(a.client, admin, version="1.1.0").status_code == 201
    assert generation.current(read=False) > before  # at once: no NOTIFY awaited, no direct read left to do
    with a.registry.db.engine.connect() as conn:
        now = conn.execute(sa.text("SELECT generation FROM catalog_state")).scalar_one()
    assert generation.current(read=False) == now


def _listener_holds(replica: Replica, expected: int) -> None:
    listener = replica.registry.generation._listener
    assert listener is not None and listener.value() == expected


def _bump_by_hand(replica: Replica) -> int:
    """A change made where no replica can see it coming: SQL on a connection of its own."""
    engine = sa.create_engine(replica.registry.db.engine.url)
    with engine.begin() as conn:
        conn.execute(sa.text("UPDATE namespaces SET visibility = 'public'"))
        value = conn.execute(sa.text("SELECT generation FROM catalog_state")).scalar_one()
    engine.dispose()
    return value


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_sqlite_reads_the_generation_only_after_a_commit(replicas: Any) -> None:
    """Between commits a SQLite process knows the generation from the WAL-index header, without a
    ``SELECT``; a commit by anyone (SQL by hand on a connection of its own here) is seen by the next call."""
    a, _b, admin = replicas
    generation = a.registry.generation
    first = generation.current()
    assert generation.current() == first and generation._wal is not None  # the header is kept from here on
    statements: list[str] = []
    for conn in generation._free:
        conn.set_trace_callback(statements.append)
    assert [generation.current() for _ in range(50)] == [first] * 50
    assert statements == []
    bumped = _bump_by_hand(a)
    assert bumped > first
    assert generation.current() == bumped and len(statements) == 1
    assert generation.current() == bumped and len(statements) == 1
    assert post_module(a.client, admin, version="1.1.0").status_code == 201  # a commit of this process
    assert generation.current() > bumped and len(statements) == 2


def test_a_sqlite_database_not_in_wal_mode_is_read_on_every_call(tmp_path: Path) -> None:
    from tfregistry.readcache import Generation

    engine = sa.create_engine(f"sqlite:///{tmp_path / 'plain.db'}")  # rollback journal: no -shm file
    with engine.begin() as conn:
        conn.execute(sa.text("CREATE TABLE catalog_state (id INTEGER PRIMARY KEY, generation INTEGER)"))
        conn.execute(sa.text("INSERT INTO catalog_state VALUES (1, 7)"))
    generation = Generation(engine)
    assert generation.current() == 7 and generation._wal is None and generation._wal_path is None
    with engine.begin() as conn:
        conn.execute(sa.text("UPDATE catalog_state SET generation = 8"))
    assert generation.current() == 8
    generation.close()
    engine.dispose()


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_sqlite_never_answers_a_generation_older_than_a_finished_commit(replicas: Any) -> None:
    """Commits on another connection, as fast as they go, while this process asks for the generation:
    no answer is older than a commit that had finished before the question was asked."""
    import sqlite3
    import threading

    a, _b, _admin = replicas
    generation = a.registry.generation
    generation.current()
    path = a.registry.db.engine.url.database
    committed = [generation.current()]
    stop = threading.Event()

    def write() -> None:
        conn = sqlite3.connect(path, isolation_level=None)
        try:
            while not stop.is_set():
                conn.execute("BEGIN IMMEDIATE")
                conn.execute("UPDATE namespaces SET visibility = CASE visibility WHEN 'public' THEN 'private' "
                             "ELSE 'public' END")
                value = conn.execute("SELECT generation FROM catalog_state").fetchone()[0]
                conn.execute("COMMIT")
                committed.append(value)
        finally:
            conn.close()

    writer = threading.Thread(target=write)
    writer.start()
    stale: list[tuple[int, int]] = []
    calls = 0
    try:
        deadline = time.monotonic() + 2
        while time.monotonic() < deadline:
            before = committed[-1]
            seen = generation.current()
            calls += 1
            if seen is None or seen < before:
                stale.append((before, seen))
    finally:
        stop.set()
        writer.join()
    assert len(committed) > 50 and calls > 50, (len(committed), calls)
    assert stale == []
    assert generation.current() == committed[-1]


@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
def test_postgresql_replicas_learn_of_changes_by_notification(replicas: Any) -> None:
    a, _, admin = replicas
    a.replayed(VERSIONS, admin)
    value = _bump_by_hand(a)
    a.sees(lambda: _listener_holds(a, value))
    a.sees(lambda: _equal(a.get(VERSIONS).status_code, 200))  # anonymous now that the namespace is public


@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
def test_a_replica_whose_listener_connection_dies_stays_correct_and_reconnects(replicas: Any) -> None:
    a, _, admin = replicas
    a.replayed(VERSIONS, admin)
    listener = a.registry.generation._listener
    assert listener is not None and listener._conn is not None
    first_connection = listener._conn
    engine = sa.create_engine(a.registry.db.engine.url)
    with engine.begin() as conn:
        killed = conn.execute(sa.text("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                                      "WHERE query LIKE 'LISTEN tfregistry_catalog%' OR "
                                      "(datname = current_database() AND pid <> pg_backend_pid() "
                                      "AND query LIKE 'SELECT generation%' AND state = 'idle')")).scalars().all()
    engine.dispose()
    assert killed and all(killed)
    value = _bump_by_hand(a)
    # seen within the bound whether the listener is back yet or the replica reads the generation itself
    a.sees(lambda: _equal(a.get(VERSIONS).status_code, 200))
    deadline = time.monotonic() + 30
    while (listener._conn in (None, first_connection) or listener.value() != value) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert listener._conn is not first_connection and listener.value() == value, "the listener did not reconnect"


def test_a_burst_of_the_same_miss_is_answered_from_one_build(app: Any) -> None:
    """Requests that miss together on the same answer wait for the first one's answer instead of
    each making it (the view runs once), and every one of them gets it."""
    import threading

    client = app.test_client()
    admin = new_token(app, "admin", name="admin")
    assert post_module(client, admin).status_code == 201
    cache = read_cache(app)
    inner, calls = cache.wsgi_app, []

    def slow_view(environ: dict[str, Any], start_response: Any) -> Any:
        if environ.get("PATH_INFO") == VERSIONS:
            calls.append(1)
            time.sleep(0.3)  # the first request is still making the answer when the others arrive
        return inner(environ, start_response)

    cache.wsgi_app = slow_view
    answers: list[Any] = []

    def read() -> None:
        answers.append(app.test_client().get(VERSIONS, headers=bearer(admin)))

    threads = [threading.Thread(target=read) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert len(answers) == 6 and {a.status_code for a in answers} == {200}
    assert len({a.data for a in answers}) == 1 and b'"1.0.0"' in answers[0].data
    assert len(calls) == 1
    refused = app.test_client().get(VERSIONS, headers=bearer("tfr_not-a-token"))
    assert refused.status_code == 401  # another credential never shares the answer


def test_a_large_answer_goes_out_compressed_to_a_client_that_accepts_gzip(replicas: Any) -> None:
    """Terraform (Go's HTTP client) asks for gzip; a kept answer of GZIP_MIN bytes or more is then sent
    compressed, built and replayed alike, with its own length and validator; small answers and
    clients that do not ask are sent as they are."""
    import gzip
    import json

    from tfregistry.readcache import GZIP_MIN

    a, b, admin = replicas
    for n in range(1, 40):
        assert post_module(a.client, admin, version=f"1.0.{n}").status_code == 201
    plain = b.get(VERSIONS, admin, **TERRAFORM)
    assert len(plain.data) >= GZIP_MIN and "Content-Encoding" not in plain.headers
    assert plain.headers["Vary"] == "Accept-Encoding"
    for replica in (a, b):  # a builds the compressed answer, b replays the one it built plainly
        first = replica.get(VERSIONS, admin, **TERRAFORM, **{"Accept-Encoding": "gzip"})
        hits = replica.cache.hits
        again = replica.get(VERSIONS, admin, **TERRAFORM, **{"Accept-Encoding": "br;q=1, gzip;q=0.5"})
        assert replica.cache.hits == hits + 1
        for answer in (first, again):
            assert answer.headers["Content-Encoding"] == "gzip" and answer.headers["Vary"] == "Accept-Encoding"
            assert int(answer.headers["Content-Length"]) == len(answer.data) < len(plain.data) / 2
            assert gzip.decompress(answer.data) == plain.data
            assert json.loads(gzip.decompress(answer.data))["modules"][0]["versions"]
            assert answer.headers["ETag"] == plain.headers["ETag"][:-1] + '-gzip"'
        # either validator stands for the same answer
        for tag in (plain.headers["ETag"], first.headers["ETag"]):
            unchanged = replica.get(VERSIONS, admin, **TERRAFORM, **{"Accept-Encoding": "gzip", "If-None-Match": tag})
            assert unchanged.status_code == 304 and unchanged.headers["ETag"] == first.headers["ETag"]
    refused = b.get(VERSIONS, admin, **TERRAFORM, **{"Accept-Encoding": "gzip;q=0, identity"})
    assert refused.data == plain.data and "Content-Encoding" not in refused.headers
    small = b.get("/.well-known/terraform.json", **{"Accept-Encoding": "gzip"})
    assert small.status_code == 200 and "Content-Encoding" not in small.headers and small.get_json()
