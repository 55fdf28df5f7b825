"""Terraform's wire protocols, as plain Flask blueprints."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from flask import jsonify, request, url_for

from tfregistry.auth import Hidden, PermissionDenied, Unauthenticated
from tfregistry.interfaces import StorageError
from tfregistry.services import ServiceError
from tfregistry.services.storage import storage_fault


def error(status: int, message: str, **headers: str) -> Any:
    """The error shape of the public registry API: ``{"errors": [message]}``."""
    response = jsonify(errors=[message])
    response.status_code = status
    response.headers.update(headers)
    return response


def register_error_handlers(bp: Any, render: Callable[..., Any] = error) -> None:
    """Answer domain and auth errors raised in ``bp``'s views with ``render(status, message, **headers)``;
    refuse NUL characters in path segments (404: no name has one) and query parameters (400) before they
    reach the database (PostgreSQL text cannot hold them)."""

    def refuse_nul() -> Any:
        if any("\x00" in str(v) for v in (request.view_args or {}).values()):
            return render(404, "not found: a path segment contains a NUL character")
        if any("\x00" in k or "\x00" in v for k, v in request.args.items(multi=True)):
            return render(400, "a query parameter contains a NUL character")
        return None

    bp.before_request(refuse_nul)
    bp.register_error_handler(ServiceError, lambda e: render(e.status, e.message))
    bp.register_error_handler(
        Unauthenticated, lambda e: render(401, str(e), **{"WWW-Authenticate": 'Bearer realm="tfregistry"'})
    )
    bp.register_error_handler(PermissionDenied, lambda e: render(404 if isinstance(e, Hidden) else 403, str(e)))

    def storage(exc: StorageError) -> Any:
        status, message, headers = storage_fault(exc)
        return render(status, message, **headers)

    bp.register_error_handler(StorageError, storage)


MAX_PAGE_SIZE = 100


def url_ttl() -> float:
    """Lifetime of the signed download URLs this registry hands out (``downloads.url_ttl``)."""
    from tfregistry.web import current_registry

    return float(current_registry().settings["downloads.url_ttl"])


def page_args(default_limit: int = 15) -> tuple[int, int]:
    """``offset`` and ``limit`` query parameters of a browse endpoint (limit capped at 100)."""

    def number(name: str, default: int) -> int:
        raw = request.args.get(name, str(default))
        if not raw.isdigit():
            raise ServiceError(f"query parameter {name!r} must be a non-negative integer")
        return int(raw)

    return number("offset", 0), max(1, min(number("limit", default_limit), MAX_PAGE_SIZE))


def page_meta(offset: int, limit: int, has_more: bool) -> dict[str, Any]:
    """The public registry's ``meta`` object for paged lists."""
    meta: dict[str, Any] = {"limit": limit, "current_offset": offset}
    if has_more:
        meta["next_offset"] = offset + limit
        args = {**request.args.to_dict(), "offset": offset + limit, "limit": limit}
        meta["next_url"] = url_for(request.endpoint or "", **(request.view_args or {}), **args)
    if offset > 0:
        meta["prev_offset"] = max(0, offset - limit)
    return meta
