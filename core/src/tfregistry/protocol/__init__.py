"""Terraform's wire protocols, as plain Flask blueprints."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from flask import jsonify

from tfregistry.auth import PermissionDenied, Unauthenticated
from tfregistry.interfaces import StorageError
from tfregistry.services import ServiceError


def error(status: int, message: str, **headers: str) -> Any:
    """The error shape of the public registry API: ``{"errors": [message]}``."""
    response = jsonify(errors=[message])
    response.status_code = status
    response.headers.update(headers)
    return response


def register_error_handlers(bp: Any, render: Callable[..., Any] = error) -> None:
    """Answer domain and auth errors raised in ``bp``'s views with ``render(status, message, **headers)``."""
    bp.register_error_handler(ServiceError, lambda e: render(e.status, e.message))
    bp.register_error_handler(
        Unauthenticated, lambda e: render(401, str(e), **{"WWW-Authenticate": 'Bearer realm="tfregistry"'})
    )
    bp.register_error_handler(PermissionDenied, lambda e: render(403, str(e)))
    bp.register_error_handler(
        StorageError, lambda e: render(503, f"the storage backend is unavailable: {e}", **{"Retry-After": "30"})
    )
