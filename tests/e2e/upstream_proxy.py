"""A TLS reverse proxy in front of an upstream registry server, for tests that need to see or steer the traffic.

Downstream registries are pointed at :attr:`UpstreamProxy.url` instead of the upstream's own
URL.  The proxy presents the upstream's certificate (so the upstream's CA bundle trusts it),
passes the ``Host`` header through unchanged (so every absolute URL the upstream hands out,
download links included, leads back through the proxy) and records the path of every request
that reaches the upstream.  :meth:`UpstreamProxy.hold` makes it keep one chosen request waiting,
before anything is forwarded, until :meth:`UpstreamProxy.release` is called: a test can thus
stop a client at an exact point of its conversation with the upstream.
"""

from __future__ import annotations

import contextlib
import ssl
import threading
import time
from collections.abc import Callable
from http.client import HTTPSConnection
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import urlsplit

from tests.e2e.conftest import RegistryServer

#: Headers that describe one hop, not the message: never copied from one connection to the next.
HOP_BY_HOP = {"connection", "keep-alive", "proxy-connection", "transfer-encoding", "te", "trailer", "upgrade",
              "content-length", "server", "date"}
HOLD_TIMEOUT = 60.0


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.0"  # one request per connection: no keep-alive bookkeeping
    server: _Server

    def do_GET(self) -> None:
        self.server.proxy.forward(self)

    do_HEAD = do_GET

    def log_message(self, format: str, *args: Any) -> None:
        pass


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    proxy: UpstreamProxy

    def handle_error(self, request: Any, client_address: Any) -> None:
        pass  # a client that went away (a killed worker) is expected, not a test failure


class UpstreamProxy:
    """``with UpstreamProxy(upstream) as proxy:`` serves on ``proxy.url`` until the block ends."""

    def __init__(self, upstream: RegistryServer) -> None:
        self.upstream = upstream
        self.paths: list[str] = []  # path (without query) of every request forwarded, in arrival order
        self.held = threading.Event()  # set once the held request has arrived and is waiting
        self._release = threading.Event()
        self._hold: tuple[Callable[[str], bool], int] | None = None
        self._lock = threading.Lock()
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        tls = upstream.data_dir / "tls"
        context.load_cert_chain(str(tls / "server.crt"), str(tls / "server.key"))
        self._server = _Server(("127.0.0.1", 0), _Handler)
        self._server.proxy = self
        self._server.socket = context.wrap_socket(self._server.socket, server_side=True)
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True, name="upstream-proxy")

    @property
    def url(self) -> str:
        return f"https://127.0.0.1:{self._server.server_address[1]}"

    def __enter__(self) -> UpstreamProxy:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=10)

    # --- what the tests use -----------------------------------------------------------------

    def count(self, predicate: Callable[[str], bool]) -> int:
        """How many requests whose path matches ``predicate`` reached the upstream (held ones included)."""
        with self._lock:
            return sum(1 for path in self.paths if predicate(path))

    def hold(self, predicate: Callable[[str], bool], nth: int = 1) -> None:
        """Keep the ``nth`` request (counting from now) whose path matches ``predicate`` waiting."""
        with self._lock:
            self._hold = (predicate, self.count_unlocked(predicate) + nth)
        self.held.clear()
        self._release.clear()

    def release(self) -> None:
        """Let the held request through (if it is still wanted by its client) and hold nothing more."""
        with self._lock:
            self._hold = None
        self._release.set()

    def wait_until(self, condition: Callable[[], bool], timeout: float) -> bool:
        """Poll ``condition`` until it is true or ``timeout`` seconds passed; returns its last value."""
        deadline = time.monotonic() + timeout
        while not condition():
            if time.monotonic() > deadline:
                return condition()
            time.sleep(0.02)
        return True

    # --- the proxy itself -------------------------------------------------------------------

    def count_unlocked(self, predicate: Callable[[str], bool]) -> int:
        return sum(1 for path in self.paths if predicate(path))

    def forward(self, handler: BaseHTTPRequestHandler) -> None:
        path = urlsplit(handler.path).path
        with self._lock:
            self.paths.append(path)
            hold = self._hold is not None and self._hold[0](path) and \
                self.count_unlocked(self._hold[0]) == self._hold[1]
        if hold:
            self.held.set()
            self._release.wait(HOLD_TIMEOUT)
        headers = {k: v for k, v in handler.headers.items() if k.lower() not in HOP_BY_HOP}
        conn = HTTPSConnection("127.0.0.1", self.upstream.port, context=self.upstream.ssl_context, timeout=30)
        try:
            conn.request(handler.command, handler.path, headers=headers)
            response = conn.getresponse()
            body = response.read()
            reply = [(k, v) for k, v in response.getheaders() if k.lower() not in HOP_BY_HOP]
        finally:
            conn.close()
        with contextlib.suppress(OSError):  # the client may be gone: a killed worker
            handler.send_response(response.status)
            for key, value in reply:
                handler.send_header(key, value)
            handler.send_header("Content-Length", str(len(body)))
            handler.end_headers()
            if handler.command != "HEAD":
                handler.wfile.write(body)
