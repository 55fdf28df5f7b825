"""The plugin host: entry points, allow/block lists, check_pending, tracing, and each hook."""

from __future__ import annotations

import logging
import os
import re
import subprocess
import sys
import textwrap
import types
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

import tfregistry_storage_local.plugin as local_storage_plugin
from tests.conftest import bearer, new_token, post_module
from tfregistry import PLUGIN_API, StartupError, __version__, hookimpl
from tfregistry.app import bootstrap, create_app
from tfregistry.cli import Context, cli
from tfregistry.plugins import get_plugin_manager


@pytest.fixture
def fake_distribution(tmp_path, monkeypatch):
    """Install a real (tiny) distribution with a `tfregistry` entry point on sys.path."""

    def make(dist: str, module: str, source: str, version: str = "1.2.3") -> None:
        site = tmp_path / "site"
        site.mkdir(exist_ok=True)
        (site / f"{module}.py").write_text(textwrap.dedent(source))
        info = site / f"{dist.replace('-', '_')}-{version}.dist-info"
        info.mkdir()
        (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: {version}\n")
        (info / "entry_points.txt").write_text(f"[tfregistry]\n{dist} = {module}\n")
        monkeypatch.syspath_prepend(str(site))
        monkeypatch.delitem(sys.modules, module, raising=False)

    return make


GREETER = """
from tfregistry import hookimpl

@hookimpl
def tfr_add_settings(settings):
    settings.add("plugins.tfregistry-greeter.greeting", str, default="hello")

@hookimpl
def tfr_service_discovery(registry):
    return {"greeter.v1": "/-/greeter/"}
"""


def test_entry_point_plugins_load_with_versions(fake_distribution, tmp_path):
    fake_distribution("tfregistry-greeter", "tfr_greeter_plugin", GREETER)
    pm = get_plugin_manager()
    names = {info.name: info for info in pm.plugin_infos()}
    assert names["tfregistry-greeter"].version == "1.2.3"
    assert "tfr_service_discovery" in names["tfregistry-greeter"].hooks
    assert names["tfregistry.default_plugins.core"].builtin


def test_allow_list_and_block_list(fake_distribution):
    fake_distribution("tfregistry-greeter", "tfr_greeter_plugin", GREETER)
    allowed = {i.name for i in get_plugin_manager(allow=["tfregistry-storage-local"]).plugin_infos()}
    assert "tfregistry-greeter" not in allowed and "tfregistry-storage-local" in allowed
    blocked = {i.name for i in get_plugin_manager(block=["tfregistry-greeter"]).plugin_infos()}
    assert "tfregistry-greeter" not in blocked
    with pytest.raises(StartupError, match="not installed: tfregistry-nope"):
        get_plugin_manager(allow=["tfregistry-nope"])


def test_env_allow_list_via_bootstrap(fake_distribution):
    fake_distribution("tfregistry-greeter", "tfr_greeter_plugin", GREETER)
    boot = bootstrap(environ={"TFR_DISABLE_PLUGINS": "tfregistry-greeter"})
    assert "plugins.tfregistry-greeter.greeting" not in boot.settings
    boot = bootstrap(environ={"TFR_PLUGINS": "tfregistry-greeter,tfregistry-storage-local"})
    assert boot.settings["plugins.tfregistry-greeter.greeting"] == "hello"


def test_unknown_hook_fails_startup(fake_distribution):
    fake_distribution("tfregistry-typo", "tfr_typo_plugin", """
        from tfregistry import hookimpl

        @hookimpl
        def tfr_regster_storage_backends(register):
            pass
    """)
    with pytest.raises(StartupError, match="tfr_regster_storage_backends"):
        get_plugin_manager()


def test_broken_import_names_the_plugin(fake_distribution):
    fake_distribution("tfregistry-broken", "tfr_broken_plugin", "raise RuntimeError('boom')\n")
    with pytest.raises(StartupError, match="tfregistry-broken failed to import.*boom"):
        get_plugin_manager()


def test_trace_logs_hook_calls(app_factory, caplog):
    caplog.set_level(logging.INFO, logger="tfregistry.plugins")
    app_factory({"plugins.trace": True})
    assert any("tfr_register_blueprints" in r.getMessage() for r in caplog.records)
    assert any("tfr_service_discovery" in r.getMessage() and "returned" in r.getMessage() for r in caplog.records)


class DiscoveryAndConfigure:
    def __init__(self) -> None:
        self.configured = None

    @hookimpl
    def tfr_service_discovery(self, registry):
        return {"greeter.v1": "/-/greeter/"}

    @hookimpl
    def tfr_configure(self, registry):
        self.configured = registry


def test_hook_tfr_service_discovery(app_factory):
    app = app_factory(plugins=(DiscoveryAndConfigure(),))
    doc = app.test_client().get("/.well-known/terraform.json").get_json()
    assert doc == {"modules.v1": "/v1/modules/", "providers.v1": "/v1/providers/", "greeter.v1": "/-/greeter/"}


def test_hook_tfr_configure_is_historic(app_factory):
    plugin = DiscoveryAndConfigure()
    app = app_factory(plugins=(plugin,))
    assert plugin.configured is app.extensions["tfregistry"]
    late = DiscoveryAndConfigure()
    app.extensions["tfregistry"].pm.register(late)  # registered after start-up: still configured
    assert late.configured is app.extensions["tfregistry"]


def test_hook_tfr_service_discovery_duplicate_fails(app_factory):
    dup = types.SimpleNamespace(tfr_service_discovery=hookimpl(lambda registry: {"modules.v1": "/elsewhere/"}))
    with pytest.raises(StartupError, match="modules.v1"):
        app_factory(plugins=(dup,))


def test_hook_tfr_register_storage_backends_duplicate_fails(app_factory):
    class Again:
        @hookimpl
        def tfr_register_storage_backends(self, register):
            register.add("local", lambda settings: None, "a second local")

    with pytest.raises(StartupError, match="'local' is offered twice"):
        app_factory(plugins=(Again(),))


def test_missing_storage_backend_is_clear(tmp_path, database_url):
    with pytest.raises(StartupError, match="'local'.*not available.*tfregistry-storage-local"):
        create_app({"data_dir": str(tmp_path), "database_url": database_url}, environ={}, load_entrypoints=False)


def test_unmigrated_database_is_clear(tmp_path):
    with pytest.raises(StartupError, match="not up to date: run `tfr db upgrade`"):
        create_app({"data_dir": str(tmp_path)}, environ={}, load_entrypoints=False,
                   plugins=(local_storage_plugin,))


def test_hook_tfr_register_blueprints(app_factory):
    import flask

    bp = flask.Blueprint("greeter", __name__)
    bp.add_url_rule("/-/greeter/hello", "hello", lambda: "hi")

    class Routes:
        @hookimpl
        def tfr_register_blueprints(self, app):
            app.register_blueprint(bp)

    app = app_factory(plugins=(Routes(),))
    assert app.test_client().get("/-/greeter/hello").data == b"hi"


def test_hook_tfr_module_download_location(app_factory):
    class Mirror:
        @hookimpl
        def tfr_module_download_location(self, registry, module_version):
            return f"https://cdn.example.com/{module_version.storage_key}"

    app = app_factory(plugins=(Mirror(),))
    client = app.test_client()
    token = new_token(app, "admin")
    assert post_module(client, token).status_code == 201
    r = client.get("/v1/modules/acme/network/aws/1.0.0/download", headers=bearer(token))
    assert r.headers["X-Terraform-Get"].startswith("https://cdn.example.com/modules/acme/network/aws/1.0.0/")


def test_hook_tfr_register_cli_commands(tmp_path):
    @click.command("greet")
    def greet():
        click.echo("hello from a plugin")

    plugin = types.SimpleNamespace(tfr_register_cli_commands=hookimpl(lambda cli: cli.add_command(greet)))
    pm = get_plugin_manager(load_entrypoints=False, extra=[plugin])
    pm.hook.tfr_register_cli_commands(cli=cli)
    try:
        result = CliRunner().invoke(cli, ["greet"])
        assert result.output == "hello from a plugin\n"
    finally:
        cli.commands.pop("greet", None)


def test_hook_tfr_add_settings_and_tfr_plugins_command(tmp_path, fake_distribution):
    fake_distribution("tfregistry-greeter", "tfr_greeter_plugin", GREETER)
    result = CliRunner(env={"TFR_DATA_DIR": str(tmp_path)}).invoke(cli, ["plugins"], obj=Context(None))
    assert result.exit_code == 0, result.output
    assert "tfregistry-greeter 1.2.3 (plugin): tfr_add_settings, tfr_service_discovery" in result.output
    assert "local (tfregistry-storage-local)" in result.output.splitlines()[-1]
    shown = CliRunner(env={"TFR_DATA_DIR": str(tmp_path)}).invoke(cli, ["config", "show"], obj=Context(None))
    assert "plugins.tfregistry-greeter.greeting = hello    # default" in shown.output


def test_api_lists_plugins_for_admins_only(client, admin_token, make_token):
    r = client.get("/api/v1/plugins", headers=bearer(admin_token))
    assert r.status_code == 200
    assert "tfregistry_storage_local.plugin" in {p["name"] for p in r.get_json()}
    assert client.get("/api/v1/plugins", headers=bearer(make_token("read"))).status_code == 403
    assert client.get("/api/v1/plugins").status_code == 401


def test_template_plugin_files_are_a_complete_distribution():
    root = Path(__file__).resolve().parents[2] / "plugins" / "_template"
    text = (root / "pyproject.toml").read_text()
    assert 'tfregistry-example = "tfregistry_example.plugin"' in text
    assert (root / "tests").is_dir() and (root / "README.md").is_file()


# --- the plugin API version ------------------------------------------------------------------------

FUTURE = GREETER + '\nTFR_PLUGIN_API = ">=2.0,<3"\n'


def test_plugin_api_mismatch_stops_startup_naming_the_plugin_and_both_versions(fake_distribution, tmp_path):
    fake_distribution("tfregistry-future", "tfr_future_plugin", FUTURE, version="4.5.6")
    message = (f"plugin tfregistry-future 4.5.6 needs plugin API >=2.0,<3, but tfregistry {__version__} provides "
               f"plugin API {PLUGIN_API}")
    with pytest.raises(StartupError) as raised:
        get_plugin_manager()
    assert str(raised.value).startswith(message)
    assert str(raised.value).endswith("or disable it (TFR_DISABLE_PLUGINS=tfregistry-future)")
    with pytest.raises(StartupError, match=re.escape(message)):
        create_app({"data_dir": str(tmp_path)}, environ={})
    # The real start-up of a `tfr` command, in a process of its own: exit 2 and the message on stderr.
    site = str(tmp_path / "site")
    env = {**os.environ, "TFR_DATA_DIR": str(tmp_path / "data"),
           "PYTHONPATH": os.pathsep.join(filter(None, [site, os.environ.get("PYTHONPATH")]))}
    result = subprocess.run([sys.executable, "-m", "tfregistry", "plugins"], env=env, capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 2, result
    assert f"error: {message}" in result.stderr
    # Disabling the plugin is the way out the message offers.
    allowed = {i.name for i in get_plugin_manager(block=["tfregistry-future"]).plugin_infos()}
    assert "tfregistry-future" not in allowed


def test_plugin_api_in_range_loads_quietly(fake_distribution, caplog):
    fake_distribution("tfregistry-greeter", "tfr_greeter_plugin", GREETER + f'\nTFR_PLUGIN_API = "~={PLUGIN_API}"\n')
    caplog.set_level(logging.WARNING, logger="tfregistry.plugins")
    assert "tfregistry-greeter" in {i.name for i in get_plugin_manager().plugin_infos()}
    assert not [r for r in caplog.records if "tfregistry-greeter" in r.getMessage()]


def test_plugin_without_an_api_range_loads_with_a_warning(fake_distribution, caplog):
    fake_distribution("tfregistry-greeter", "tfr_greeter_plugin", GREETER)
    caplog.set_level(logging.WARNING, logger="tfregistry.plugins")
    assert "tfregistry-greeter" in {i.name for i in get_plugin_manager().plugin_infos()}
    warned = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert (f"plugin tfregistry-greeter 1.2.3 does not state the plugin API it was written for (TFR_PLUGIN_API in "
            f"tfr_greeter_plugin); loading it anyway: tfregistry {__version__} provides plugin API {PLUGIN_API}"
            in warned)


@pytest.mark.parametrize("declared", ["", "one point oh", "1.0", 1])
def test_plugin_api_range_that_is_not_a_range_stops_startup(fake_distribution, declared):
    fake_distribution("tfregistry-odd", "tfr_odd_plugin", GREETER + f"\nTFR_PLUGIN_API = {declared!r}\n")
    with pytest.raises(StartupError, match=re.escape(f"plugin tfregistry-odd 1.2.3: TFR_PLUGIN_API = {declared!r} "
                                                     "is not a version range such as '>=1.0,<2'")):
        get_plugin_manager()


def test_plugin_api_of_plugins_given_in_code_is_checked(app_factory):
    class Future:
        TFR_PLUGIN_API = ">=2.0,<3"

        @hookimpl
        def tfr_service_discovery(self, registry):
            return None

    with pytest.raises(StartupError) as raised:
        app_factory(plugins=(Future(),))
    assert str(raised.value) == (f"plugin Future-1 local needs plugin API >=2.0,<3, but tfregistry {__version__} "
                                 f"provides plugin API {PLUGIN_API}: install a release of Future-1 made for plugin "
                                 f"API {PLUGIN_API}")


def test_entry_point_named_differently_from_its_distribution_is_named_both_ways(fake_distribution, tmp_path):
    fake_distribution("tfregistry-future", "tfr_future_plugin", FUTURE, version="4.5.6")
    entry_points = tmp_path / "site" / "tfregistry_future-4.5.6.dist-info" / "entry_points.txt"
    entry_points.write_text("[tfregistry]\nfuture = tfr_future_plugin\n")
    with pytest.raises(StartupError) as raised:
        get_plugin_manager()
    assert str(raised.value).startswith("plugin future (distribution tfregistry-future) 4.5.6 needs plugin API ")
    assert str(raised.value).endswith(f"install a release of tfregistry-future made for plugin API {PLUGIN_API}, "
                                      "or disable it (TFR_DISABLE_PLUGINS=future)")
