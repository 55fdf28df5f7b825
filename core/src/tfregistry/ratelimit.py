"""Rate limits (Flask-Limiter): authentication failures, sign-in and uploads, per client address.

Counters live in Redis when ``redis_url`` is set (shared by every replica), else in process memory.
A refused request gets ``429 Too Many Requests`` with ``Retry-After``, in the error shape of where it was
sent: the ``/api/v1`` error object under ``/api/``, the protocols' ``{"errors": [...]}`` elsewhere.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from flask import Flask, request
from flask_limiter import Limiter
from flask_limiter.util import get_remote_address

if TYPE_CHECKING:
    from tfregistry.registry import Registry


def configure_limits(app: Flask, registry: Registry, *, login: list[Any], uploads: list[Any]) -> Limiter:
    """Apply ``limits.auth_failures`` to the whole application (counting only 401 answers),
    ``limits.login`` to the ``login`` blueprints and ``limits.uploads`` to POSTs of the ``uploads`` ones."""
    settings = registry.settings
    limiter = Limiter(
        key_func=get_remote_address,
        app=app,
        storage_uri=settings["redis_url"] or "memory://",
        strategy="moving-window",
        application_limits=[settings["limits.auth_failures"]],
        application_limits_deduct_when=lambda response: response.status_code == 401,
        headers_enabled=False,  # X-RateLimit headers would also overwrite our own Retry-After on 503s
        key_prefix="tfr-limits",
        # Redis down: count in memory meanwhile rather than fail every request (/ready reports Redis)
        in_memory_fallback_enabled=True,
        swallow_errors=True,
    )
    for bp in login:
        limiter.limit(settings["limits.login"])(bp)
    for bp in uploads:
        limiter.limit(settings["limits.uploads"], methods=["POST"])(bp)

    @app.errorhandler(429)
    def too_many(error: Any) -> Any:
        limit = getattr(error, "limit", None)
        retry_after = limit.limit.get_expiry() if limit is not None else 60
        from tfregistry.api import api_error
        from tfregistry.protocol import error as protocol_error

        render = api_error if request.path.startswith("/api/") else protocol_error
        return render(429, f"too many requests (limit {error.description}); retry in {retry_after} s",
                      **{"Retry-After": str(retry_after)})

    return limiter
