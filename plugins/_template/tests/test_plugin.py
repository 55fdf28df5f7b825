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
