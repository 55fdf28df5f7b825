"""Serving files from inside a module version's archive: the images and links of its README.

:func:`serve_module_file` is a plain view function, independent of the web UI's blueprint, so the
blueprint registers it under ``/modules/<ns>/<name>/<system>/<version>/files/<path:path>``.
"""

from __future__ import annotations

from flask import Response

from tfregistry import auth
from tfregistry.services import modules as svc
from tfregistry.web import current_registry

#: Largest archive file served (README images are far smaller).
MAX_FILE_BYTES = 5 * 1024 * 1024

#: Headers on every file answer: the browser must not guess a type (an "image" that is HTML), and the
#: content, should a browser open it as a page, runs in a sandbox without scripts or same-origin access.
#: Versions are immutable, so the bytes can be cached, but only privately: namespaces may be private.
FILE_HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "Content-Security-Policy": "sandbox; default-src 'none'; img-src 'self'; style-src 'none'",
    "Cache-Control": "private, max-age=3600",
    "Content-Disposition": "inline",
}


def serve_module_file(ns: str, name: str, system: str, version: str, path: str) -> Response:
    """Answer one file of a module version's archive, after the same read check as the protocol
    (``modules:read`` in the namespace; a hidden namespace is a 404).

    Images (PNG, JPEG, GIF, WebP) are served as themselves, anything else (SVG and HTML included)
    as ``text/plain; charset=utf-8``; see :func:`tfregistry.services.modules.module_archive_file`.
    Domain and permission errors propagate to the registering blueprint's error handlers.
    """
    registry = current_registry()
    with registry.db.session() as session:
        auth.require(session, "modules:read", auth.namespace_for(session, ns))
        mv = svc.get_version(session, ns, name, system, version)
        data, content_type = svc.module_archive_file(registry.storage, mv, path, MAX_FILE_BYTES)
    response = Response(data, content_type=content_type)
    response.headers.update(FILE_HEADERS)
    return response
