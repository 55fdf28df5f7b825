"""Publishing through /api/v1/modules: validation, immutability, deprecation, deletion, audit."""

from __future__ import annotations

import io
import tarfile

import pytest
import sqlalchemy as sa

from tests.conftest import bearer, new_token, post_module, tar_gz
from tfregistry.models import AuditEntry, ModuleVersion


def audit_actions(registry) -> list[str]:
    with registry.db.session() as session:
        return list(session.scalars(sa.select(AuditEntry.action).order_by(AuditEntry.id)))


def stored_keys(registry) -> list[str]:
    return [info.key for info in registry.storage.list("modules/")]


def test_publish_returns_201_with_version_json(publish, registry):
    r = publish(version="1.2.3", description="Network things")
    assert r.status_code == 201
    body = r.get_json()
    assert body["id"] == "acme/network/aws/1.2.3"
    assert body["created"] is True and len(body["sha256"]) == 64 and body["size"] > 0
    assert body["published_by"] == "token:admin"
    key = f"modules/acme/network/aws/1.2.3/{body['sha256'][:16]}/acme-network-aws-1.2.3.tar.gz"
    assert stored_keys(registry) == [key]
    assert audit_actions(registry)[-1] == "module.publish"


def test_identical_republish_is_200_and_different_bytes_409(publish, module_archive, registry):
    first = publish(version="1.0.0")
    assert first.status_code == 201
    again = publish(version="1.0.0")
    assert again.status_code == 200 and again.get_json()["created"] is False
    assert again.get_json()["sha256"] == first.get_json()["sha256"]
    other = publish(version="1.0.0", archive=module_archive(files={"x.tf": "# different\n"}))
    assert other.status_code == 409
    assert "immutable" in other.get_json()["message"]
    assert len(stored_keys(registry)) == 1  # the refused bytes were not kept


@pytest.mark.parametrize(("field", "value", "message"), [
    ("namespace", "-acme", "invalid module namespace"),
    ("namespace", "a" * 65, "invalid module namespace"),
    ("name", "net work", "invalid module name"),
    ("system", "AWS", "invalid module system"),
    ("system", "aws-east", "invalid module system"),
    ("version", "1.0", "not a valid semantic version"),
    ("version", "v1.0.0", "drop the leading 'v'"),
    ("version", "01.0.0", "not a valid semantic version"),
    ("version", "1.0.0-" + "a" * 100_000, "at most 128 characters"),
])
def test_bad_names_and_versions_are_422_naming_the_field(publish, registry, field, value, message):
    """The form schema (published in the OpenAPI document) refuses them before anything is stored."""
    r = publish(**{field: value})
    assert r.status_code == 422
    problems = r.get_json()["errors"]["form"]
    assert list(problems) == [field]
    assert message in " ".join(problems[field])
    assert stored_keys(registry) == []


def test_prerelease_and_build_versions_are_accepted(publish):
    assert publish(version="2.0.0-rc.1").status_code == 201
    assert publish(version="2.0.0+build.7").status_code == 201


def _tar_with(member: tarfile.TarInfo) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        main = tarfile.TarInfo("main.tf")
        main.size = 2
        tar.addfile(main, io.BytesIO(b"#\n"))
        tar.addfile(member, io.BytesIO(b"x" * member.size) if member.isfile() else None)
    return buf.getvalue()


def _member(name: str, kind: bytes = tarfile.REGTYPE, linkname: str = "") -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type = kind
    info.linkname = linkname
    info.size = 1 if kind == tarfile.REGTYPE else 0
    return info


@pytest.mark.parametrize(("archive", "message"), [
    (b"this is not gzip at all", "gzip"),
    (_tar_with(_member("/etc/passwd")), "absolute"),
    (_tar_with(_member("../escape.tf")), ".."),
    (_tar_with(_member("modules/../../escape.tf")), ".."),
    (_tar_with(_member("link", tarfile.SYMTYPE, "/etc/passwd")), "link"),
    (_tar_with(_member("link", tarfile.SYMTYPE, "../../outside")), "link"),
    (_tar_with(_member("hard", tarfile.LNKTYPE, "main.tf")), "link"),
    (_tar_with(_member("dev", tarfile.CHRTYPE)), "device"),
    (_tar_with(_member("fifo", tarfile.FIFOTYPE)), "fifo"),
])
def test_unsafe_archives_are_refused(publish, registry, archive, message):
    r = publish(archive=archive)
    assert r.status_code == 400, r.get_json()
    assert "invalid module archive" in r.get_json()["message"]
    assert message in r.get_json()["message"].lower()
    assert stored_keys(registry) == []
    with registry.db.session() as session:
        assert session.scalar(sa.select(sa.func.count()).select_from(ModuleVersion)) == 0


def test_in_tree_symlink_is_fine(publish):
    assert publish(archive=_tar_with(_member("modules/alias", tarfile.SYMTYPE, "../main.tf"))).status_code == 201


def test_size_limit_is_413(app_factory):
    app = app_factory({"limits.module_archive_max_bytes": "64KiB"})
    client = app.test_client()
    token = new_token(app, "admin")
    big = tar_gz({"main.tf": b"#\n", "blob.bin": __import__("os").urandom(200 * 1024)})
    r = post_module(client, token, archive=big)
    assert r.status_code == 413
    assert "limits.module_archive_max_bytes" in r.get_json()["message"]
    assert list(app.extensions["tfregistry"].storage.list("modules/")) == []


def test_bomb_and_file_count_caps(app_factory):
    app = app_factory({"limits.module_uncompressed_max_bytes": "1MiB", "limits.module_max_files": 5})
    client, token = app.test_client(), new_token(app, "admin")
    bomb = tar_gz({"main.tf": b"#\n", "zeros.bin": b"\0" * (4 * 1024 * 1024)})
    assert len(bomb) < 64 * 1024
    r = post_module(client, token, archive=bomb)
    assert r.status_code == 400 and "uncompressed" in r.get_json()["message"]
    many = tar_gz({f"f{i}.tf": b"#\n" for i in range(10)})
    r = post_module(client, token, archive=many)
    assert r.status_code == 400 and "more than 5 members" in r.get_json()["message"]


def test_missing_fields_are_422(client, admin_token):
    r = client.post("/api/v1/modules", headers=bearer(admin_token), data={"namespace": "acme"},
                    content_type="multipart/form-data")
    assert r.status_code == 422
    errors = r.get_json()["errors"]
    assert "name" in errors["form"] and "archive" in str(errors) or "form" in errors


def test_publish_permissions(client, publish, make_token):
    assert publish(token=make_token("read")).status_code == 403
    other_ns = make_token("publish", namespace="other")
    r = publish(token=other_ns)
    assert r.status_code == 403 and "acme" in r.get_json()["message"]
    assert publish(token=make_token("publish", namespace="acme")).status_code == 201
    assert publish(token=make_token("publish"), version="1.0.1").status_code == 201
    expired = make_token("publish", expires_in=__import__("datetime").timedelta(seconds=-1))
    assert publish(token=expired, version="1.0.2").status_code == 401


def test_deprecate_and_undeprecate(client, publish, make_token, registry, admin_token):
    publish(version="1.0.0")
    url = "/api/v1/modules/acme/network/aws/1.0.0"
    assert client.patch(url, json={"deprecated": True, "reason": "use 2.x"},
                        headers=bearer(make_token("read"))).status_code == 403
    r = client.patch(url, json={"deprecated": True, "reason": "use 2.x"}, headers=bearer(make_token("publish")))
    assert r.status_code == 200 and r.get_json()["deprecated"] is True
    detail = client.get("/v1/modules/acme/network/aws/1.0.0", headers=bearer(admin_token)).get_json()
    assert detail["deprecated"] is True and detail["deprecation_reason"] == "use 2.x"
    # still installable
    assert client.get(url.replace("/api/v1", "/v1") + "/download", headers=bearer(admin_token)).status_code == 200
    r = client.patch(url, json={"deprecated": False}, headers=bearer(admin_token))
    assert r.get_json()["deprecated"] is False and r.get_json()["deprecation_reason"] is None
    assert audit_actions(registry)[-2:] == ["module.deprecate", "module.undeprecate"]


def test_delete_needs_admin_and_removes_row_and_bytes(client, publish, make_token, registry, admin_token):
    publish(version="1.0.0")
    publish(version="1.1.0", archive=tar_gz({"main.tf": b"# 1.1\n"}))
    client.get("/v1/modules/acme/network/aws/1.0.0/download", headers=bearer(admin_token))
    url = "/api/v1/modules/acme/network/aws/1.0.0"
    assert client.delete(url, headers=bearer(make_token("publish"))).status_code == 403
    assert client.delete(url, headers=bearer(admin_token)).status_code == 204
    assert client.get(url, headers=bearer(admin_token)).status_code == 404
    assert len(stored_keys(registry)) == 1
    versions = client.get("/v1/modules/acme/network/aws/versions", headers=bearer(admin_token)).get_json()
    assert [v["version"] for v in versions["modules"][0]["versions"]] == ["1.1.0"]
    assert "module.delete" in audit_actions(registry)
    # deleting the last version removes the module
    assert client.delete(url.replace("1.0.0", "1.1.0"), headers=bearer(admin_token)).status_code == 204
    assert client.get("/v1/modules/acme/network/aws/versions", headers=bearer(admin_token)).status_code == 404
    assert stored_keys(registry) == []


def test_audit_log_is_append_only_in_the_database(publish, registry):
    publish(version="1.0.0")
    with registry.db.engine.connect() as conn:
        for statement in ("UPDATE audit_log SET actor = 'someone else'", "DELETE FROM audit_log"):
            with pytest.raises(sa.exc.DBAPIError, match="append-only"):
                conn.execute(sa.text(statement))
            conn.rollback()
    with registry.db.session() as session:
        entry = session.scalars(sa.select(AuditEntry).where(AuditEntry.action == "module.publish")).one()
        assert entry.actor == "token:admin" and entry.target == "acme/network/aws/1.0.0"
        assert entry.request_id and entry.details["size"] > 0


def test_storage_failure_leaves_no_version(app_factory, monkeypatch):
    app = app_factory()
    client, token = app.test_client(), new_token(app, "admin")
    registry = app.extensions["tfregistry"]

    def broken_put(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(registry.storage, "put", broken_put)
    with pytest.raises(OSError):
        post_module(client, token)
    monkeypatch.undo()
    with registry.db.session() as session:
        assert session.scalar(sa.select(sa.func.count()).select_from(ModuleVersion)) == 0
    assert post_module(client, token).status_code == 201


def test_failed_commit_removes_the_stored_bytes(app_factory, monkeypatch):
    import tfregistry.services.modules as svc

    app = app_factory()
    client, token = app.test_client(), new_token(app, "admin")
    registry = app.extensions["tfregistry"]

    def boom(*args, **kwargs):
        raise RuntimeError("database went away")

    monkeypatch.setattr(svc, "record", boom)
    with pytest.raises(RuntimeError):
        post_module(client, token)
    assert list(registry.storage.list("modules/")) == []
    with registry.db.session() as session:
        assert session.scalar(sa.select(sa.func.count()).select_from(ModuleVersion)) == 0


def test_openapi_document_describes_the_publish_endpoint(client):
    spec = client.get("/api/openapi.json").get_json()
    post = spec["paths"]["/api/v1/modules"]["post"]
    assert "multipart/form-data" in post["requestBody"]["content"]
    assert "201" in post["responses"] and "409" in post["responses"]


def test_storage_outage_is_503_and_leaves_nothing(app_factory, monkeypatch):
    from tfregistry.interfaces import StorageError

    app = app_factory()
    client, token = app.test_client(), new_token(app, "admin")
    registry = app.extensions["tfregistry"]

    def unavailable(*args, **kwargs):
        raise StorageError("example: cannot store object in bucket 'b': connection refused")

    monkeypatch.setattr(registry.storage, "put", unavailable)
    r = post_module(client, token)
    assert r.status_code == 503 and r.headers["Retry-After"] == "30"
    assert "connection refused" in r.get_json()["message"]
    with registry.db.session() as session:
        assert session.scalar(sa.select(sa.func.count()).select_from(ModuleVersion)) == 0
    monkeypatch.undo()
    assert post_module(client, token).status_code == 201
    location = client.get("/v1/modules/acme/network/aws/1.0.0/download", headers=bearer(token))
    monkeypatch.setattr(registry.storage, "open", unavailable)
    r = client.get(location.headers["X-Terraform-Get"])
    assert r.status_code == 503


def _setuid(name: str) -> tarfile.TarInfo:
    info = _member(name)
    info.mode = 0o4755
    return info


@pytest.mark.parametrize(("archive", "message"), [
    # Issue #11: a member name with a newline, in a 900-character path.
    (_tar_with(_member("a/" * 449 + "\n.tf")), "control character '\\n' (rule: no control characters"),
    (_tar_with(_member("x" * 256)), "component of 256 bytes"),
    (_tar_with(_member("a/" * 2048 + "x")), "(rule: paths are at most 4096 bytes of UTF-8)"),
    (_tar_with(_setuid("run.sh")), "'run.sh' has the setuid bit set (mode 4755)"),
])
def test_hardening_rules_are_named_in_the_400(publish, registry, archive, message):
    r = publish(archive=archive)
    assert r.status_code == 400, r.get_json()
    assert r.get_json()["message"].startswith("invalid module archive: member ")
    assert message in r.get_json()["message"]
    assert stored_keys(registry) == []


def test_compression_ratio_cap_is_a_setting(app_factory):
    bomb = tar_gz({"main.tf": b"#\n", "zeros.bin": bytes(8 * 1024 * 1024)})  # ~1000:1, under the size cap
    app = app_factory({})
    client, token = app.test_client(), new_token(app, "admin")
    r = post_module(client, token, archive=bomb)
    assert r.status_code == 400 and "compressed more than 100:1" in r.get_json()["message"]
    app = app_factory({"limits.max_compression_ratio": 0})
    client, token = app.test_client(), new_token(app, "admin")
    assert post_module(client, token, archive=bomb).status_code == 201
