"""Small pieces shared by the HTTP layers: the registry of the current app, request ids, proxies."""

from __future__ import annotations

import contextlib
import ipaddress
import random
import re
from collections.abc import Callable, Iterable
from contextvars import ContextVar
from typing import TYPE_CHECKING, Any

from flask import Request, current_app, g, has_request_context, request
from werkzeug.formparser import FormDataParser, MultiPartParser

from tfregistry.interfaces import RequestContext
from tfregistry.uploads import SPOOL_IN_MEMORY_BELOW, SpooledUpload

if TYPE_CHECKING:
    from tfregistry.registry import Registry

EXTENSION_KEY = "tfregistry"
_REQUEST_ID = re.compile(r"^[A-Za-z0-9._-]{1,64}$")
#: WSGI environ keys the registry fills for each request (read by the access log and by gunicorn's).
REQUEST_ID_KEY = "tfregistry.request_id"
ROUTE_KEY = "tfregistry.route"
TOKEN_KEY = "tfregistry.token_id"
#: Set by a server that wants only a replayed answer (``tfregistry.worker``): the read cache answers
#: from memory or sets :data:`NOT_REPLAYED` and returns nothing, with no side effect, and the server
#: then passes the request on to the whole application.
REPLAY_ONLY_KEY = "tfregistry.replay_only"
NOT_REPLAYED_KEY = "tfregistry.not_replayed"
#: A directory the processes of one server share (``tfregistry.gunicorn_conf`` makes one per run): an
#: answer one worker built is read by the others (:class:`tfregistry.readcache.SharedAnswers`).
SHARED_ANSWERS_ENV = "TFREGISTRY_SHARED_ANSWERS_DIR"
_current_request_id: ContextVar[str | None] = ContextVar("tfregistry_request_id", default=None)


def current_registry() -> Registry:
    """The :class:`~tfregistry.registry.Registry` of the application handling this request."""
    return current_app.extensions[EXTENSION_KEY]


def new_request_id() -> str:
    """32 random hex digits.  From :mod:`random` (seeded from the OS, and afresh in a forked child),
    not ``uuid4``: that asks the kernel for entropy on every request, and an id need not be secret."""
    return f"{random.getrandbits(128):032x}"


def request_id_for(incoming: str | None) -> str:
    """A well-formed ``X-Request-Id`` from a trusted proxy, else a new one."""
    return incoming if incoming and _REQUEST_ID.match(incoming) else new_request_id()


def current_request_id() -> str | None:
    """The id of the HTTP request this thread is serving, ``None`` outside one (a CLI command, a job).

    The id is the ``X-Request-Id`` a trusted proxy sent (``proxy.trusted`` and
    ``proxy.request_id``) when well formed, else a new one; it is returned in the response's
    ``X-Request-Id`` header, carried by every log line written while the request is served, and
    stored in the audit entries it writes.  Events and notifications carry it too.
    """
    return _current_request_id.get()


def environ_request_id(environ: dict[str, Any]) -> str:
    """The request id :class:`RequestTelemetry` gave this WSGI request (a new one outside it: bare tests)."""
    rid = environ.get(REQUEST_ID_KEY)
    if rid is None:
        rid = environ[REQUEST_ID_KEY] = new_request_id()
    return rid


def assign_request_id() -> None:
    """Give the request its id: the one the telemetry middleware chose (:func:`current_request_id`)."""
    g.request_id = environ_request_id(request.environ)
    rule = request.url_rule
    request.environ[ROUTE_KEY] = rule.rule if rule is not None else None


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
    """Return the request id; note the caller's token id for the access log."""
    if "request_id" in g:
        response.headers["X-Request-Id"] = g.request_id
    identity = g.get("tfr_identity")
    if identity is not None:
        request.environ[TOKEN_KEY] = getattr(identity, "token_id", None)
    return response


def is_trusted(addr: str | None, trusted: Iterable[Any]) -> bool:
    """Whether ``addr`` lies in one of the ``trusted`` networks (``proxy.trusted``)."""
    try:
        ip = ipaddress.ip_address(addr or "")
    except ValueError:
        return False
    return any(ip in net for net in trusted)


class TrustedProxyMiddleware:
    """Apply ``X-Forwarded-For/-Proto/-Host/-Prefix`` only when the peer is a trusted proxy.

    Unlike a hop count, this cannot be fooled by a client that talks to the
    registry directly and sends its own forwarding headers.
    """

    def __init__(self, wsgi_app: Callable[..., Any], trusted: Iterable[Any]) -> None:
        self.wsgi_app = wsgi_app
        self.trusted = list(trusted)

    def _is_trusted(self, addr: str | None) -> bool:
        return is_trusted(addr, self.trusted)

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


#: Bytes the multipart parser asks the server for at a time.  Werkzeug's default (64 KiB) makes
#: gunicorn hand a 500 MB upload over in 8,000 slices, each cut from its 1 MiB read-ahead buffer,
#: which is copied again for every slice.  Werkzeug refuses (413) a read larger than the form
#: memory limit (Flask's MAX_FORM_MEMORY_SIZE, 500 kB) while it parses part headers, so stay under it.
UPLOAD_READ_SIZE = 256 * 1024
#: Bytes taken from the server at a time, then handed to the parser in :data:`UPLOAD_READ_SIZE`
#: slices: gunicorn's reader copies its whole buffer on every read, so fewer, larger reads copy less.
SERVER_READ_SIZE = 1024 * 1024


class _LargeReads:
    """Read ``stream`` :data:`SERVER_READ_SIZE` bytes at a time and serve smaller reads from that."""

    def __init__(self, stream: Any) -> None:
        self._stream = stream
        self._buf = memoryview(b"")

    def read(self, n: int = -1) -> bytes:
        if not self._buf:
            self._buf = memoryview(self._stream.read(SERVER_READ_SIZE))
        out = self._buf if n < 0 else self._buf[:n]
        self._buf = self._buf[len(out):]
        return out.tobytes()


class _UploadParser(FormDataParser):
    def _parse_multipart(self, stream: Any, mimetype: str, content_length: int | None,
                         options: dict[str, str]) -> Any:
        boundary = options.get("boundary", "").encode("ascii")
        if not boundary:
            raise ValueError("Missing boundary")
        parser = MultiPartParser(stream_factory=self.stream_factory, max_form_memory_size=self.max_form_memory_size,
                                 max_form_parts=self.max_form_parts, cls=self.cls, buffer_size=UPLOAD_READ_SIZE)
        form, files = parser.parse(_LargeReads(stream), boundary, content_length)  # type: ignore[arg-type]
        return stream, form, files


class RegistryRequest(Request):
    """Flask's request, reading multipart uploads in large slices (see :data:`UPLOAD_READ_SIZE`) and
    spooling large uploaded files as :class:`SpooledUpload` (hashed while received)."""

    form_data_parser_class = _UploadParser

    def _get_file_stream(self, total_content_length: int | None, content_type: str | None,
                         filename: str | None = None, content_length: int | None = None) -> Any:
        if total_content_length is not None and total_content_length < SPOOL_IN_MEMORY_BELOW:
            return super()._get_file_stream(total_content_length, content_type, filename, content_length)
        registry = current_app.extensions.get(EXTENSION_KEY)
        directory = None
        if registry is not None:
            with contextlib.suppress(Exception):
                directory = registry.storage.staging_directory()
        try:  # a spool in the staging directory is adopted and fsynced: its write-back starts early
            return SpooledUpload(directory, write_back=directory is not None)
        except OSError:
            return SpooledUpload(None)  # the staging directory is not writable: the temporary one
