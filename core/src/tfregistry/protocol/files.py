"""``/v1/files/<key>``: short-lived, HMAC-signed downloads streamed from the storage backend.

Terraform sends no token to archive URLs, so the signature is the only credential.
"""

from __future__ import annotations

from typing import Any

from flask import Blueprint, request, send_file

from tfregistry.interfaces import InvalidKey, ObjectNotFound
from tfregistry.protocol import error, register_error_handlers
from tfregistry.web import current_registry

bp = Blueprint("tfr_files", __name__)
register_error_handlers(bp)

#: Never let Werkzeug add ``Content-Encoding: gzip`` for these: Go would gunzip the
#: body before go-getter sees it ("gzip: invalid header").
ARCHIVE_SUFFIXES = (".tar.gz", ".tgz", ".zip", ".gz")


@bp.route("/v1/files/<path:key>", methods=["GET", "HEAD"])
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
