"""The REST API under ``/api/v1`` (flask-smorest; OpenAPI at ``/api/openapi.json``)."""

from __future__ import annotations

from http import HTTPStatus
from typing import Any

from flask import Flask, jsonify
from flask_smorest import Api

from tfregistry import __version__


def make_api(app: Flask) -> Api:
    app.config.update(
        API_TITLE="tfregistry",
        API_VERSION=__version__,
        OPENAPI_VERSION="3.0.3",
        OPENAPI_URL_PREFIX="/api",
        OPENAPI_JSON_PATH="openapi.json",
        API_SPEC_OPTIONS={"components": {"securitySchemes": {
            "bearer": {"type": "http", "scheme": "bearer"}}}, "security": [{"bearer": []}]},
    )
    api = Api(app)
    return api


def api_error(status: int, message: str, **headers: str) -> Any:
    """flask-smorest's error shape: ``{"code": 404, "status": "Not Found", "message": ...}``."""
    response = jsonify(code=status, status=HTTPStatus(status).phrase, message=message)
    response.status_code = status
    response.headers.update(headers)
    return response
