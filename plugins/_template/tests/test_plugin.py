"""Tests of the example plugin: the storage contract, and what the hooks register."""

from __future__ import annotations

import hashlib
import hmac
import io
import json
import os
import subprocess
import tarfile
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import pluggy
import pytest

from tfregistry import PLUGIN_API, StartupError
from tfregistry.interfaces import ScmCredentials, ScmTag, WebhookEvent, WebhookRejected, WebhookRequest
from tfregistry.testing.conformance import StorageBackendContract
from tfregistry.testing.plugin import BackendCollector, SettingsCollector, plugin_manager
from tfregistry_example import plugin
from tfregistry_example.backend import MemoryStorage

# Opt in to the fixtures of the tfregistry test kit (make_module_archive, ...).
pytest_plugins = ["tfregistry.testing.plugin"]


class TestMemoryStorageContract(StorageBackendContract):
    """Every test of the shared storage contract, against a fresh MemoryStorage."""

    @pytest.fixture
    def backend(self) -> MemoryStorage:
        return MemoryStorage()


@pytest.fixture
def pm() -> pluggy.PluginManager:
    """A plugin manager with the tfregistry hookspecs and only this plugin."""
    return plugin_manager(plugin)


def test_plugin_declares_its_setting(pm: pluggy.PluginManager) -> None:
    declarations = SettingsCollector()
    pm.hook.tfr_add_settings(settings=declarations)
    assert declarations.added == {
        "plugins.tfregistry-example.greeting": {
            "type": str,
            "default": "hello",
            "help": "what the example plugin says",
        }
    }


def test_plugin_states_the_plugin_api_it_works_with() -> None:
    """``plugin_manager`` refuses a plugin whose ``TFR_PLUGIN_API`` excludes the installed core's
    ``PLUGIN_API``, as the registry's start-up does; this plugin's range includes it."""
    assert plugin_manager(plugin).is_registered(plugin)  # raises StartupError if the range excluded it

    class FromTheFuture:
        TFR_PLUGIN_API = ">=99.0,<100"

    with pytest.raises(StartupError, match=f"needs plugin API >=99.0,<100, but .* provides plugin API {PLUGIN_API}"):
        plugin_manager(FromTheFuture())


def test_plugin_registers_its_backend(pm: pluggy.PluginManager) -> None:
    register = BackendCollector()
    pm.hook.tfr_register_storage_backends(register=register)
    factory, description = register.added["example-memory"]
    assert description
    backend = factory({"plugins.tfregistry-example.greeting": "hello"})
    assert isinstance(backend, MemoryStorage)
    assert backend.name == "example-memory"
    assert backend.check() == []


def test_store_a_module_archive(make_module_archive: Callable[..., bytes]) -> None:
    archive = make_module_archive(name="vpc", files={"variables.tf": 'variable "cidr" {}\n'})
    assert make_module_archive(name="vpc", files={"variables.tf": 'variable "cidr" {}\n'}) == archive
    backend = MemoryStorage()
    stored = backend.put("modules/acme/vpc/aws/1.0.0.tar.gz", io.BytesIO(archive))
    assert stored.size == len(archive)
    with backend.open(stored.key) as fh, tarfile.open(fileobj=fh, mode="r:gz") as tar:
        assert sorted(tar.getnames()) == ["README.md", "main.tf", "variables.tf"]


def _git(cwd: Path, *args: str) -> str:
    env = {"GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@example.com", "GIT_COMMITTER_NAME": "t",
           "GIT_COMMITTER_EMAIL": "t@example.com", "HOME": str(cwd), "PATH": os.environ["PATH"]}
    return subprocess.run(["git", "-C", str(cwd), *args], check=True, capture_output=True, text=True,
                          env=env).stdout.strip()


def test_plugin_registers_its_scm_provider(pm: pluggy.PluginManager, tmp_path: Path) -> None:
    """``example-dir``: list, resolve and fetch a tag of a real repository; verify and read a webhook."""
    register = BackendCollector()
    pm.hook.tfr_register_scm_providers(register=register)
    factory, description = register.added["example-dir"]
    assert description
    scm = factory({})
    work = tmp_path / "work"
    work.mkdir()
    _git(work, "init", "-q", "-b", "main")
    (work / "main.tf").write_text('variable "x" {}\n')
    _git(work, "add", ".")
    _git(work, "commit", "-q", "-m", "one")
    _git(work, "tag", "-a", "v1.0.0", "-m", "annotated")
    sha = _git(work, "rev-parse", "HEAD")
    subprocess.run(["git", "clone", "-q", "--bare", str(work), str(tmp_path / "repos" / "net.git")], check=True)
    creds = ScmCredentials("none", base_url=str(tmp_path / "repos"))

    assert [r.id for r in scm.list_repositories(creds)] == ["net.git"]
    assert scm.list_tags(creds, "net.git") == [ScmTag("v1.0.0", sha)]  # the commit, not the tag object
    assert scm.resolve_tag(creds, "net.git", "v1.0.0") == sha
    scm.fetch_tree(creds, "net.git", sha, tmp_path / "tree")
    assert [p.name for p in (tmp_path / "tree").iterdir()] == ["main.tf"]

    body = json.dumps({"repository": "net.git", "ref": "refs/tags/v1.0.0", "before": "0" * 40,
                       "after": sha}).encode()
    good = "sha256=" + hmac.new(b"s3cret", body, hashlib.sha256).hexdigest()
    request = WebhookRequest({"x-example-signature": good, "x-example-delivery": "d1"}, body, datetime.now(UTC))
    scm.verify_webhook(request, "s3cret")
    assert scm.parse_webhook(request) == [
        WebhookEvent("tag_created", repository="net.git", tag="v1.0.0", sha=sha, delivery_id="d1")]
    for headers, payload in (({}, body), ({"x-example-signature": good}, body + b" "),
                             ({"x-example-signature": "sha256=" + "0" * 64}, body)):
        with pytest.raises(WebhookRejected):
            scm.verify_webhook(WebhookRequest(headers, payload, datetime.now(UTC)), "s3cret")
    moved = json.dumps({"repository": "net.git", "ref": "refs/tags/v1.0.0", "before": "1" * 40,
                        "after": sha}).encode()
    assert scm.parse_webhook(WebhookRequest({}, moved, datetime.now(UTC)))[0].kind == "tag_moved"


def test_plugin_offers_a_notifier_that_appends_events(pm: pluggy.PluginManager, tmp_path) -> None:
    from datetime import UTC, datetime

    from tfregistry.interfaces import Delivery, DeliveryError, Event

    register = BackendCollector()
    pm.hook.tfr_register_notifiers(register=register)
    notifier = register.added["example-file"][0]({})
    with pytest.raises(ValueError, match="absolute"):
        notifier.validate({"path": "relative.log"})
    target = notifier.validate({"path": str(tmp_path / "events.log"), "token": "s3cret"})
    assert notifier.secret_fields == ("token",)
    event = Event("evt_1", "module.published", datetime(2026, 1, 1, tzinfo=UTC), None, "acme", "alice", None,
                  {"namespace": "acme", "name": "vpc", "system": "aws", "version": "1.0.0", "sha256": "0" * 64,
                   "size": 1})
    notifier.send(Delivery("msg_1", 1, event, target))
    assert '"delivery": "msg_1"' in (tmp_path / "events.log").read_text()
    with pytest.raises(DeliveryError, match="cannot write"):
        notifier.send(Delivery("msg_2", 1, event, {"path": str(tmp_path / "missing" / "x.log")}))
    pm.hook.tfr_event(registry=None, event=event)
    assert plugin.SEEN[-1] == "module.published"
