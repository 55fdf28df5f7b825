"""Tests of the example plugin: the storage contract, and what the hooks register."""

from __future__ import annotations

import io
import tarfile
from collections.abc import Callable
from typing import Any

import pluggy
import pytest

from tfregistry import hookspecs
from tfregistry.testing.conformance import StorageBackendContract
from tfregistry_example import plugin
from tfregistry_example.backend import MemoryStorage

# Opt in to the fixtures of the tfregistry test kit (make_module_archive, ...).
pytest_plugins = ["tfregistry.testing.plugin"]


class TestMemoryStorageContract(StorageBackendContract):
    """Every test of the shared storage contract, against a fresh MemoryStorage."""

    @pytest.fixture
    def backend(self) -> MemoryStorage:
        return MemoryStorage()


class FakeDeclarations:
    """Stands in for the settings collector that ``tfr_add_settings`` receives."""

    def __init__(self) -> None:
        self.added: dict[str, dict[str, Any]] = {}

    def add(self, key: str, type: Any = str, **kwargs: Any) -> None:
        self.added[key] = {"type": type, **kwargs}


class FakeRegister:
    """Stands in for the backend collector that ``tfr_register_storage_backends`` receives."""

    def __init__(self) -> None:
        self.added: dict[str, tuple[Any, str]] = {}

    def add(self, name: str, factory: Any, description: str = "") -> None:
        self.added[name] = (factory, description)


@pytest.fixture
def pm() -> pluggy.PluginManager:
    """A plugin manager with the tfregistry hookspecs and only this plugin."""
    manager = pluggy.PluginManager("tfregistry")
    manager.add_hookspecs(hookspecs)
    manager.register(plugin)
    manager.check_pending()
    return manager


def test_plugin_declares_its_setting(pm: pluggy.PluginManager) -> None:
    declarations = FakeDeclarations()
    pm.hook.tfr_add_settings(settings=declarations)
    assert declarations.added == {
        "plugins.tfregistry-example.greeting": {
            "type": str,
            "default": "hello",
            "help": "what the example plugin says",
        }
    }


def test_plugin_registers_its_backend(pm: pluggy.PluginManager) -> None:
    register = FakeRegister()
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
