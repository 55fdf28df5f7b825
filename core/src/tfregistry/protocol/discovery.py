"""``/.well-known/terraform.json``: the service discovery document."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

from flask import Blueprint, jsonify, request

from tfregistry.readcache import cacheable
from tfregistry.web import current_registry

bp = Blueprint("tfr_discovery", __name__)


def _prefixed(value: Any, prefix: str) -> Any:
    """Put host-relative service URLs (``/v1/modules/``) under the registry's path prefix."""
    if isinstance(value, str) and value.startswith("/"):
        return prefix + value
    if isinstance(value, dict):
        return {k: _prefixed(v, prefix) for k, v in value.items()}
    return value


@bp.get("/.well-known/terraform.json")
def terraform_json():
    registry = current_registry()
    public_url = registry.settings["public_url"]
    prefix = urlsplit(public_url).path if public_url else request.script_root
    cacheable()
    return jsonify({key: _prefixed(value, prefix) for key, value in registry.discovery.items()})
