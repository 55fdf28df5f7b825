"""Tests of the example plugin: the storage contract, and what the hooks register."""

from __future__ import annotations

import io
import tarfile
from collections.abc import Callable

import pluggy
import pytest

from tfregistry import PLUGIN_API, StartupError
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
