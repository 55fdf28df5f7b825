"""The web UI's hook implementations (entry point ``tfregistry-webui`` in group ``tfregistry``)."""

from __future__ import annotations

import re
import string
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tfregistry import hookimpl

if TYPE_CHECKING:
    from flask import Flask
    from flask_smorest import Api

    from tfregistry.auth import Identity
    from tfregistry.registry import Registry
    from tfregistry.settings import SettingsDeclarations

#: Written against plugin API 1.1 (the ``tfr_webui_*`` hooks).
TFR_PLUGIN_API = ">=1.1,<2"

_HEX = re.compile(r"#(?:[0-9a-fA-F]{3,4}|[0-9a-fA-F]{6}|[0-9a-fA-F]{8})")
_FUNCTION = re.compile(r"(?:rgba?|hsla?|oklch|oklab|lab|lch)\(\s*[-+0-9.%a-z\s,/]{1,80}\)")
_NAMED = re.compile(r"[a-z]{3,30}")
_TEMPLATE_FIELDS = {"major", "minor", "patch", "version"}


def parse_css_color(value: Any) -> str:
    """A CSS colour that is safe to write into a stylesheet: ``#2d5fd4``, ``rgb(45 95 212)``, ``teal``."""
    text = str(value).strip()
    if not any(p.fullmatch(text) for p in (_HEX, _FUNCTION, _NAMED)):
        raise ValueError(f"{value!r} is not a CSS colour (examples: #2d5fd4, rgb(45 95 212), teal)")
    return text


def parse_constraint_template(value: Any) -> str:
    """A ``str.format`` template using only ``{major}``, ``{minor}``, ``{patch}`` and ``{version}``."""
    text = str(value)
    try:
        fields = {name for _, name, _, _ in string.Formatter().parse(text) if name is not None}
    except ValueError as exc:
        raise ValueError(f"{value!r} is not a template: {exc}") from None
    unknown = fields - _TEMPLATE_FIELDS
    if unknown or not fields:
        raise ValueError(f"{value!r}: use the fields {{major}}, {{minor}}, {{patch}} or {{version}} "
                         "(e.g. '~> {major}.{minor}')")
    return text


def parse_logo_url(value: Any) -> str:
    """A path on this site, an ``https://`` URL or a ``data:image/...`` URL."""
    text = str(value).strip()
    if text.startswith(("/", "https://", "http://", "data:image/")) and not text.startswith("//") and '"' not in text:
        return text
    raise ValueError(f"{value!r} is not a logo URL: use a path such as /-/static/logo.svg, an https:// URL "
                     "or a data:image/... URL")


@hookimpl
def tfr_add_settings(settings: SettingsDeclarations) -> None:
    add = settings.add
    add("webui.site_name", str, default="Terraform Registry", help="Name shown in the web UI's header and titles.")
    add("webui.logo_url", parse_logo_url, help="Logo shown before the site name: a path on this site, an https:// URL "
        "(its origin is added to the pages' Content-Security-Policy) or a data:image/... URL. Default: none.")
    add("webui.primary_color", parse_css_color, help="Accent colour of links and buttons (a CSS colour such as "
        "#2d5fd4); served in a generated stylesheet, never inline. Default: the built-in blue.")
    add("webui.templates_dir", Path, help="Directory whose Jinja templates replace the web UI's own of the same "
        "name (base.html, _footer.html...); the originals stay reachable as tfregistry_webui/<name>.")
    add("webui.version_constraint_template", parse_constraint_template, default="~> {major}.{minor}",
        help="Version constraint in the web UI's provision snippets; fields {major}, {minor}, {patch}, {version}.")
    add("webui.token_sign_in", bool, default=True,
        help="Offer 'sign in with an API token' (exchanges a valid registry token for a browser session).")


@hookimpl
def tfr_register_blueprints(registry: Registry, app: Flask, api: Api) -> None:
    from tfregistry_webui.ui import init_app

    init_app(app, registry, api)


@hookimpl
def tfr_webui_nav_entries(registry: Registry, identity: Identity) -> list[dict[str, str]] | None:
    """"Source control" (connections, links, moved tags) when SCM providers are installed."""
    from tfregistry_webui.scm_views import nav_entry

    return nav_entry(identity)
