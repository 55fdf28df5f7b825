"""Keep docs, packaging and the plugin boundary honest as the code grows."""

from __future__ import annotations

import ast
import re
import tomllib
from pathlib import Path

import pytest
from packaging.specifiers import SpecifierSet

from tfregistry import PLUGIN_API, hookspecs
from tfregistry.app import bootstrap

ROOT = Path(__file__).resolve().parents[2]
PLUGIN_DIRS = sorted(p for p in (ROOT / "plugins").iterdir() if (p / "pyproject.toml").exists())
#: What a plugin may import from the core (see docs/hooks.md).
PUBLIC_MODULES = ("tfregistry", "tfregistry.interfaces", "tfregistry.hookspecs", "tfregistry.testing")

HOOKS = sorted(name for name in dir(hookspecs) if name.startswith("tfr_"))


def test_there_are_hooks():
    assert {"tfr_add_settings", "tfr_register_storage_backends", "tfr_service_discovery"} <= set(HOOKS)


@pytest.mark.parametrize("hook", HOOKS)
def test_every_hook_has_a_docstring_and_a_docs_section(hook):
    assert (getattr(hookspecs, hook).__doc__ or "").strip(), f"{hook} has no docstring"
    text = (ROOT / "docs" / "hooks.md").read_text()
    assert re.search(rf"^## {hook}\(", text, re.M), f"docs/hooks.md has no '## {hook}(' section"


@pytest.mark.parametrize("hook", HOOKS)
def test_every_hook_is_tested(hook):
    tests = "\n".join(p.read_text() for p in (ROOT / "tests").rglob("test_*.py"))
    assert f"def test_hook_{hook}" in tests, f"no test named test_hook_{hook}*"


def test_every_setting_is_documented(tmp_path):
    """Core settings in docs/configuration.md; a plugin's may live on its own page under docs/."""
    core_text = (ROOT / "docs" / "configuration.md").read_text()
    all_text = "\n".join(p.read_text() for p in (ROOT / "docs").glob("*.md"))
    settings = bootstrap(environ={}, config={"data_dir": str(tmp_path)}).settings
    missing = [
        d.key for d in settings.declarations
        if f"`{d.key}`" not in (core_text if (d.plugin or "").startswith("tfregistry.") else all_text)
    ]
    assert not missing, f"these settings are not documented under docs/: {missing}"


@pytest.mark.parametrize("plugin_dir", PLUGIN_DIRS, ids=lambda p: p.name)
def test_plugin_packaging(plugin_dir):
    project = tomllib.loads((plugin_dir / "pyproject.toml").read_text())["project"]
    dist = project["name"]
    assert dist.startswith("tfregistry-")
    entry_points = project["entry-points"]["tfregistry"]
    assert list(entry_points) == [dist], "the entry point is named after the distribution"
    assert entry_points[dist] == dist.replace("-", "_") + ".plugin"
    assert any(re.match(r"tfregistry\s*>=", dep) and "<" in dep for dep in project["dependencies"]), (
        "a plugin declares the range of tfregistry versions it supports"
    )
    assert (plugin_dir / "README.md").exists() and (plugin_dir / "tests").is_dir()


@pytest.mark.parametrize("plugin_dir", PLUGIN_DIRS, ids=lambda p: p.name)
def test_plugin_states_the_plugin_api_it_works_with(plugin_dir):
    """The module the entry point names sets ``TFR_PLUGIN_API`` to a literal range holding ``PLUGIN_API``."""
    project = tomllib.loads((plugin_dir / "pyproject.toml").read_text())["project"]
    module = project["entry-points"]["tfregistry"][project["name"]]
    path = plugin_dir.joinpath(*module.split(".")).with_suffix(".py")
    declared = [
        node.value for node in ast.parse(path.read_text()).body
        if isinstance(node, ast.Assign) and [getattr(t, "id", None) for t in node.targets] == ["TFR_PLUGIN_API"]
    ]
    assert len(declared) == 1, f"{path.relative_to(ROOT)} does not set TFR_PLUGIN_API (once, at module level)"
    wanted = ast.literal_eval(declared[0])
    assert isinstance(wanted, str) and SpecifierSet(wanted).contains(PLUGIN_API), (
        f"{path.relative_to(ROOT)}: TFR_PLUGIN_API = {wanted!r} does not include tfregistry.PLUGIN_API {PLUGIN_API}"
    )


@pytest.mark.parametrize("plugin_dir", PLUGIN_DIRS, ids=lambda p: p.name)
def test_plugins_import_only_the_public_api(plugin_dir):
    offenders = []
    for path in plugin_dir.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            names = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                names = [node.module]
            for name in names:
                if name.split(".")[0] == "tfregistry" and not any(
                    name == m or name.startswith(m + ".") and m == "tfregistry.testing" for m in PUBLIC_MODULES
                ):
                    offenders.append(f"{path.relative_to(ROOT)}: {name}")
    assert not offenders, offenders
