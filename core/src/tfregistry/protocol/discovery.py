"""``/.well-known/terraform.json``: the service discovery document."""

from __future__ import annotations

from flask import Blueprint, jsonify

from tfregistry.web import current_registry

bp = Blueprint("tfr_discovery", __name__)


@bp.get("/.well-known/terraform.json")
def terraform_json():
    return jsonify(current_registry().discovery)
