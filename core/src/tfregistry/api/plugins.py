"""``/api/v1/plugins``: what is loaded, with versions."""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

import marshmallow as ma
from flask.views import MethodView
from flask_smorest import Blueprint

from tfregistry import auth
from tfregistry.api import api_error
from tfregistry.protocol import register_error_handlers
from tfregistry.web import current_registry

blp = Blueprint("api_plugins", __name__, url_prefix="/api/v1/plugins", description="Loaded plugins")
register_error_handlers(blp, api_error)


class PluginSchema(ma.Schema):
    name = ma.fields.String()
    version = ma.fields.String()
    module = ma.fields.String()
    builtin = ma.fields.Boolean()
    hooks = ma.fields.List(ma.fields.String())


@blp.route("")
class Plugins(MethodView):
    @blp.response(200, PluginSchema(many=True))
    def get(self) -> Any:
        """List loaded plugins (admin only)."""
        registry = current_registry()
        with registry.db.session() as session:
            auth.require(session, "admin", None)
        return [asdict(info) for info in registry.pm.plugin_infos()]
