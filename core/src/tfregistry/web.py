"""Small pieces shared by the HTTP layers: the registry of the current app, request ids, proxies."""

from __future__ import annotations

import ipaddress
import re
import uuid
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

from flask import current_app, g, has_request_context, request

from tfregistry.interfaces import RequestContext

if TYPE_CHECKING:
    from tfregistry.registry import Registry

EXTENSION_KEY = "tfregistry"
_REQUEST_ID = re.compile(r"^[A-Za-z0-9._-]{1,64}$")


def current_registry() -> Registry:
    """The :class:`~tfregistry.registry.Registry` of the application handling this request."""
    return current_app.extensions[EXTENSION_KEY]


def request_id_for(incoming: str | None) -> str:
    """A well-formed ``X-Request-Id`` from the client or proxy, else a new one."""
    return incoming if incoming and _REQUEST_ID.match(incoming) else uuid.uuid4().hex


def assign_request_id() -> None:
    """Give the request its id (:func:`request_id_for`)."""
    g.request_id = request_id_for(request.headers.get("X-Request-Id"))


def request_context() -> RequestContext | None:
    """What policy hooks learn about the current HTTP request; ``None`` outside one (CLI, jobs).

    ``request.remote_addr`` is already the client address here: :class:`TrustedProxyMiddleware`
    rewrote it before Flask saw the request.
    """
    if not has_request_context():
        return None
    return RequestContext(client_address=request.remote_addr, request_id=g.get("request_id"),
                          method=request.method, path=request.path)


def add_request_id_header(response: Any) -> Any:
    if "request_id" in g:
        response.headers["X-Request-Id"] = g.request_id
    return response


class TrustedProxyMiddleware:
    """Apply ``X-Forwarded-For/-Proto/-Host/-Prefix`` only when the peer is a trusted proxy.

    Unlike a hop count, this cannot be fooled by a client that talks to the
    registry directly and sends its own forwarding headers.
    """

    def __init__(self, wsgi_app: Callable[..., Any], trusted: Iterable[Any]) -> None:
        self.wsgi_app = wsgi_app
        self.trusted = list(trusted)

    def _is_trusted(self, addr: str | None) -> bool:
        try:
            ip = ipaddress.ip_address(addr or "")
        except ValueError:
            return False
        return any(ip in net for net in self.trusted)

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Any:
        if self.trusted and self._is_trusted(environ.get("REMOTE_ADDR")):
            forwarded_for = [a.strip() for a in environ.get("HTTP_X_FORWARDED_FOR", "").split(",") if a.strip()]
            # Walk from the nearest hop back; the first untrusted address is the client.
            for addr in reversed(forwarded_for):
                environ["REMOTE_ADDR"] = addr
                if not self._is_trusted(addr):
                    break
            proto = environ.get("HTTP_X_FORWARDED_PROTO", "").split(",")[0].strip()
            if proto in ("http", "https"):
                environ["wsgi.url_scheme"] = proto
            host = environ.get("HTTP_X_FORWARDED_HOST", "").split(",")[0].strip()
            if host:
                environ["HTTP_HOST"] = host
                environ.pop("SERVER_NAME", None)
            prefix = environ.get("HTTP_X_FORWARDED_PREFIX", "").split(",")[0].strip().rstrip("/")
            if prefix:
                environ["SCRIPT_NAME"] = prefix
        return self.wsgi_app(environ, start_response)
