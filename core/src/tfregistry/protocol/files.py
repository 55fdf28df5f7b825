"""``/v1/files/<key>``: short-lived, HMAC-signed downloads streamed from the storage backend.

Terraform sends no token to archive URLs, so the signature is the only credential.
"""

from __future__ import annotations

import mimetypes
import re
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs

from flask import Blueprint, request, send_file
from werkzeug.utils import get_content_type
from werkzeug.wsgi import FileWrapper

from tfregistry.interfaces import InvalidKey, ObjectNotFound
from tfregistry.protocol import error, register_error_handlers
from tfregistry.web import current_registry, environ_request_id

if TYPE_CHECKING:
    from tfregistry.registry import Registry

bp = Blueprint("tfr_files", __name__)
register_error_handlers(bp)

#: Never let Werkzeug add ``Content-Encoding: gzip`` for these: Go would gunzip the
#: body before go-getter sees it ("gzip: invalid header").
ARCHIVE_SUFFIXES = (".tar.gz", ".tgz", ".zip", ".gz")
#: The route template of :func:`download`, as metrics and the access log name it.
ROUTE = "/v1/files/<path:key>"


@bp.route(ROUTE, methods=["GET", "HEAD"])
def download(key: str):
    registry = current_registry()
    if not registry.signer.verify(key, request.args.get("expires"), request.args.get("signature")):
        return error(403, "this download link is invalid or has expired; ask the registry for a new one")
    try:
        fh = registry.storage.open(key)
    except (ObjectNotFound, InvalidKey):
        return error(404, "file not found")
    size = _size(fh)
    if size is None:
        size = registry.storage.size(key)
    response = send_file(fh, mimetype="application/octet-stream" if key.endswith(ARCHIVE_SUFFIXES) else None,
                         download_name=key.rsplit("/", 1)[-1], conditional=False, etag=False, max_age=0)
    response.headers["Cache-Control"] = "private, no-store"
    if size is not None:
        # go-getter sends HEAD, then may resume with a Range request: both need the length.
        response.content_length = size
        response = response.make_conditional(request, accept_ranges=fh.seekable(), complete_length=size)
    return response


PREFIX = "/v1/files/"
_PLAIN_NAME = re.compile(r"^[A-Za-z0-9._+-]{1,255}$")


def serve_plain_get(registry: Registry, environ: dict[str, Any],
                    start_response: Callable[..., Any], *, max_size: int | None = None) -> Iterable[bytes] | None:
    """The common download without Flask: a GET (or HEAD) of ``/v1/files/<key>`` with a valid signature
    and no ``Range``, answered with the same status and headers as :func:`download`.  ``None`` for anything
    else (a bad signature, a missing object, a range request, an unusual name, an object larger than
    ``max_size``): the view answers it."""
    if environ.get("HTTP_RANGE") or environ.get("HTTP_IF_RANGE"):
        return None
    try:
        key = environ.get("PATH_INFO", "")[len(PREFIX):].encode("latin-1").decode("utf-8")
    except UnicodeError:
        return None
    query = parse_qs(environ.get("QUERY_STRING", ""))
    name = key.rsplit("/", 1)[-1]
    if not _PLAIN_NAME.match(name) or not registry.signer.verify(
            key, (query.get("expires") or [None])[0], (query.get("signature") or [None])[0]):
        return None
    try:
        fh = registry.storage.open(key)
    except Exception:  # missing, invalid or unavailable: the view answers with the reason
        return None
    size = _size(fh)
    if size is None or (max_size is not None and size > max_size):
        fh.close()
        return None
    mimetype = "application/octet-stream" if key.endswith(ARCHIVE_SUFFIXES) else (
        mimetypes.guess_type(name)[0] or "application/octet-stream")
    start_response("200 OK", [
        ("Content-Disposition", f"inline; filename={name}"),
        ("Content-Type", get_content_type(mimetype, "utf-8")),
        ("Cache-Control", "private, no-store"),
        ("Content-Length", str(size)),
        ("Accept-Ranges", "bytes"),
        ("X-Request-Id", environ_request_id(environ)),
    ])
    if environ.get("REQUEST_METHOD") == "HEAD":
        fh.close()
        return []
    return environ.get("wsgi.file_wrapper", FileWrapper)(fh, 64 * 1024)


def _size(fh: Any) -> int | None:
    """Length of a seekable stream, else ``None``."""
    try:
        if not fh.seekable():
            return None
        end = fh.seek(0, 2)
        fh.seek(0)
        return end
    except (AttributeError, OSError):
        return None
