"""A WSGI application that answers every request with what the server put in its environ.

``tests/integration/test_worker.py`` runs it under the registry's gunicorn worker to see the environ
of requests answered on the worker's event loop, where parsing is skipped for a request head seen
before.  It never declines a replay-only request, so the event loop answers every request on a
kept-alive connection.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from typing import Any

from tfregistry.web import REPLAY_ONLY_KEY

#: A key the application adds to every environ: a later request must not find it already there.
MARK = "echo.marked"


def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
    """Answer 200 with a JSON object of the environ's values the tests look at."""
    seen = {key: environ.get(key) for key in ("REMOTE_ADDR", "REMOTE_PORT", "wsgi.url_scheme", "PATH_INFO",
                                              "QUERY_STRING", "HTTP_AUTHORIZATION", "SERVER_PORT")}
    seen["replay_only"] = REPLAY_ONLY_KEY in environ
    seen["marked_before"] = MARK in environ
    seen["body"] = environ["wsgi.input"].read().decode()
    environ[MARK] = True
    body = json.dumps(seen).encode()
    start_response("200 OK", [("Content-Type", "application/json"), ("Content-Length", str(len(body)))])
    return [body]
