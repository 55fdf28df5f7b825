"""The registry's gunicorn worker: gunicorn's threaded worker, with replayed reads answered at once.

gunicorn's ``gthread`` worker hands every request to a thread of its pool: the event loop sees
the connection become readable, queues it, a thread wakes, parses the request, calls the
application and hands the connection back through a pipe to the loop.  For a replayed protocol
answer (a few kilobytes already in memory, see :mod:`tfregistry.readcache`) that hand-over costs
several times the answer itself, and under load it is where the long tail of latency comes from.

:class:`ReplayWorker` keeps everything of ``gthread`` and adds one step: when a kept-alive
connection becomes readable, the event loop reads what has arrived and, if it is one complete
``GET`` of a protocol path (or ``HEAD`` of a signed file) with no body, parses it with gunicorn's
own parser, builds gunicorn's own WSGI environ and asks the application for a replayed answer only
(:data:`~tfregistry.web.REPLAY_ONLY_KEY`).  The whole middleware stack runs as for any request
(request id, trusted proxies, access log, metrics, download counting), and gunicorn's own
``Response`` formats the answer, so it is byte for byte what the thread would have sent.  When
the cache cannot answer (a miss, a changed catalog, PostgreSQL's generation not known without a
round trip, anything unusual in the request) nothing has happened yet: the bytes are handed to
the connection's parser and the request takes ``gthread``'s usual path.  An answer that does not
fit the socket's send buffer at once is finished by a pool thread.

New connections (and so TLS handshakes) take the usual path for their first request.  A request
head seen before, byte for byte, from the same peer address on the same listener is not parsed
again: the worker keeps what gunicorn made of it (:class:`_Head`), which had been half of the CPU
time of a replayed answer.

A second, separate step concerns uploads: a request body of :data:`DIRECT_BODY_MIN` bytes or
more with a ``Content-Length`` is read by :class:`DirectBody`, straight from the socket into the
form parser's buffer, instead of through gunicorn's body reader.

On a gunicorn whose ``gthread`` internals differ from the ones this was written against, the worker
says so at start-up and behaves exactly as ``gthread``.
"""

from __future__ import annotations

import io
import ssl
import sys
import time
from collections.abc import Callable, Iterable
from datetime import datetime
from typing import Any

from gunicorn import util
from gunicorn.http import RequestParser, wsgi
from gunicorn.http.body import Body, LengthReader
from gunicorn.http.unreader import SocketUnreader
from gunicorn.workers.gthread import ThreadWorker
from werkzeug.exceptions import ClientDisconnected

from tfregistry.web import NOT_REPLAYED_KEY, REPLAY_ONLY_KEY

#: Request heads the fast path looks at: protocol reads only (the web UI and the API go to the pool).
_PREFIXES = (b"GET /v1/", b"GET /.well-known/", b"HEAD /v1/files/")
_HEAD_END = b"\r\n\r\n"
#: A head longer than this (or not complete in one read) takes the usual path.
_MAX_HEAD = 8192
#: Longest a thread holding the GIL keeps the event loop waiting, in seconds.
SWITCH_INTERVAL = 0.001
#: Headers that announce a body, an interim answer or a protocol switch: the usual path handles those.
_DECLINED_HEADERS = frozenset({"CONTENT-LENGTH", "TRANSFER-ENCODING", "EXPECT", "UPGRADE", "HTTP2-SETTINGS"})
#: Environ keys that belong to one request on one connection, not to its head.
_PER_CONNECTION = frozenset({"gunicorn.socket", "wsgi.early_hints"})
#: Request heads a worker keeps with what gunicorn made of them (:class:`_Head`); all are dropped when full.
MAX_HEADS = 1024


#: Request bodies of at least this many bytes (with a Content-Length) are read by :class:`DirectBody`.
DIRECT_BODY_MIN = 1024 * 1024


class DirectBody(io.RawIOBase):
    """A request body of known length, received straight into the reader's buffer (``recv_into``).

    gunicorn's body reader receives at most 1 MiB at a time and passes every byte through three
    ``BytesIO`` buffers; for a 500 MB publish that was a fifth of the worker's time.  This reader
    takes over a :class:`gunicorn.http.body.Body` that nothing has read yet: first the bytes
    gunicorn already holds (never past the body's end: a pipelined request stays where it is), then
    the socket, never reading past ``Content-Length``.  It keeps the wrapped reader's ``length``
    current, so gunicorn finds the rest of the body (if the application left any) where it expects
    it.  A failed read marks the body failed, and gunicorn closes the connection; a body cut short
    is also answered 400 (Werkzeug's ``ClientDisconnected``: gunicorn's reader would end the body
    early, and the half-read form would be answered as if fields were missing).
    """

    def __init__(self, body: Body) -> None:
        super().__init__()
        self._body = body
        self._reader: LengthReader = body.reader
        unreader = self._reader.unreader
        held = unreader.buf.getvalue()  # what gunicorn read ahead (take_buffered() exists from gunicorn 27 only)
        unreader.buf = io.BytesIO()
        self._held = memoryview(held[: self._reader.length])
        if len(held) > len(self._held):
            unreader.unread(held[len(self._held):])
        self._sock = unreader.sock

    @classmethod
    def wrap(cls, environ: dict[str, Any]) -> None:
        """Replace ``wsgi.input`` with a :class:`DirectBody` where it is gunicorn's untouched
        ``Content-Length`` body of :data:`DIRECT_BODY_MIN` bytes or more."""
        body = environ.get("wsgi.input")
        if (type(body) is Body and type(body.reader) is LengthReader and type(body.reader.unreader) is SocketUnreader
                and body.reader.length >= DIRECT_BODY_MIN and not body.buf.tell()):
            environ["wsgi.input"] = cls(body)

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        """Fill ``buffer``, or as much of it as the body has left (0 at the body's end)."""
        view = memoryview(buffer).cast("B")
        want = min(len(view), self._reader.length)
        got = 0
        while got < want:
            if self._held:
                n = min(want - got, len(self._held))
                view[got:got + n] = self._held[:n]
                self._held = self._held[n:]
            else:
                try:
                    n = self._sock.recv_into(view[got:want])
                except BaseException:
                    self._body.failed = True
                    raise
                if not n:
                    self._body.failed = True
                    raise ClientDisconnected("the request body ended before its Content-Length")
            got += n
            self._reader.length -= n
        return got


class _Collector:
    """Stands in for the client's socket while gunicorn writes an answer: keeps the bytes."""

    def __init__(self) -> None:
        self.parts: list[bytes] = []

    def sendall(self, data: bytes) -> None:
        self.parts.append(bytes(data))

    def send(self, data: bytes) -> int:
        self.parts.append(bytes(data))
        return len(data)


def _no_early_hints(headers: list[tuple[str, str]]) -> None:
    """``wsgi.early_hints`` of a request head seen before: an answer from memory sends no interim answer."""


class _Head:
    """What gunicorn made of one request head from one peer address, kept to be used again.

    Parsing is decided by the head's bytes, the configuration and the peer's address (whether it may
    set the scheme with ``X-Forwarded-Proto``), so the same bytes from the same address on the same
    listener give the same request.  The request is only read afterwards (its body is gunicorn's empty
    one: the fast path takes no request with a body), and the environ is copied for every use, with
    what belongs to the connection (``REMOTE_PORT``, the socket) set afresh.
    """

    __slots__ = ("environ", "req")

    def __init__(self, req: Any, environ: dict[str, Any]) -> None:
        self.req = req
        self.environ = environ

    def new_request(self, client: Any, cfg: Any) -> tuple[_Collector, Any, dict[str, Any]]:
        """``(collector, resp, environ)`` for one more request with this head, as ``wsgi.create`` makes
        them; gunicorn writes the answer into the collector."""
        out = _Collector()
        resp = wsgi.Response(self.req, out, cfg)
        environ = self.environ.copy()
        environ["gunicorn.socket"] = out
        environ["wsgi.early_hints"] = _no_early_hints
        if "REMOTE_PORT" in environ:
            environ["REMOTE_PORT"] = str(client[1])
        return out, resp, environ


class _HttpDate:
    """gunicorn's ``util.http_date``, formatted once per second (every answer carries a ``Date`` header)."""

    def __init__(self, http_date: Callable[..., str]) -> None:
        self._http_date = http_date
        self._last: tuple[int, str] = (-1, "")

    def __call__(self, timestamp: float | None = None) -> str:
        if timestamp is not None:
            return self._http_date(timestamp)
        second = int(time.time())
        last = self._last
        if last[0] != second:
            last = self._last = (second, self._http_date(second))
        return last[1]


class ReplayWorker(ThreadWorker):
    """``gthread`` that answers replayed protocol reads on its event loop (see the module docstring)."""

    def init_process(self) -> None:
        self.fast_path = all(hasattr(self, name) for name in ("keepalived_conns", "method_queue", "max_keepalived"))
        if not self.fast_path:
            self.log.warning("tfregistry worker: this gunicorn's threaded worker is not the one it knows; "
                             "replayed reads take gthread's usual path")
        # The event loop answers most requests; when a pool thread or the download writer holds the GIL,
        # the loop waits for it up to the switch interval at every system call (5 ms by default).
        sys.setswitchinterval(min(sys.getswitchinterval(), SWITCH_INTERVAL))
        if not isinstance(util.http_date, _HttpDate):  # this worker process only
            util.http_date = _HttpDate(util.http_date)
        self._heads: dict[tuple[bytes, Any, Any], _Head] = {}
        super().init_process()

    def load_wsgi(self) -> None:
        super().load_wsgi()
        app = self.wsgi

        def direct_bodies(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
            DirectBody.wrap(environ)
            return app(environ, start_response)

        self.wsgi = direct_bodies

    def on_client_socket_readable(self, conn: Any, client: Any) -> None:
        if self.fast_path and self._answer_from_memory(conn):
            return
        super().on_client_socket_readable(conn, client)

    def _answer_from_memory(self, conn: Any) -> bool:
        """Answer the request waiting on ``conn`` from the read cache; ``False`` (nothing consumed) if not."""
        if (not self.alive or conn.parser is None or getattr(conn, "is_http2", False)
                or self.nr + 1 >= self.max_requests or conn.parser.unreader.buf.getvalue()):
            return False
        try:
            data = conn.sock.recv(_MAX_HEAD)
        except (OSError, ssl.SSLError):  # nothing to read yet, or a failure the usual path reports
            return False
        if not data:
            return False
        answered = False
        try:
            answered = self._replay(conn, data)
        except Exception:  # an unusual request: the usual path answers it (or its error) properly
            answered = False
        finally:
            if not answered:
                conn.parser.unreader.unread(data)
        return answered

    def _replay(self, conn: Any, data: bytes) -> bool:
        if not data.startswith(_PREFIXES) or data.find(_HEAD_END) != len(data) - len(_HEAD_END):
            return False
        client = conn.client
        key = (data, client[0] if isinstance(client, tuple) else client, conn.server)
        head = self._heads.get(key)
        started = datetime.now()
        if head is None:
            req = next(RequestParser(self.cfg, [data], client))
            if req.should_close() or any(name in _DECLINED_HEADERS for name, _ in req.headers):
                return False
            out = _Collector()
            resp, environ = wsgi.create(req, out, client, conn.server, self.cfg)
            environ["wsgi.multithread"] = True
            environ[REPLAY_ONLY_KEY] = True
            if len(self._heads) >= MAX_HEADS:
                self._heads.clear()
            self._heads[key] = _Head(req, {k: v for k, v in environ.items() if k not in _PER_CONNECTION})
        else:
            req = head.req
            out, resp, environ = head.new_request(client, self.cfg)
        answer = self.wsgi(environ, resp.start_response)
        if NOT_REPLAYED_KEY in environ:
            return False
        # Only now that the answer is certain: a declined request must not meet the hook twice.
        self.cfg.pre_request(self, req)
        try:
            if len(self.keepalived_conns) > self.max_keepalived:
                resp.force_close()
            for chunk in answer:
                resp.write(chunk)
            resp.close()
            self.nr += 1
        finally:
            self.log.access(resp, req, environ, datetime.now() - started)
            close = getattr(answer, "close", None)
            if close is not None:
                close()
            self.cfg.post_request(self, req, environ, resp)
        self._send(conn, b"".join(out.parts), keep_alive=not resp.should_close())
        return True

    def _send(self, conn: Any, payload: bytes, keep_alive: bool) -> None:
        """Send what fits now; a pool thread sends the rest (and closes the connection if it must)."""
        try:
            sent = conn.sock.send(payload)
        except (BlockingIOError, InterruptedError, ssl.SSLWantWriteError, ssl.SSLWantReadError):
            sent = 0
        except OSError:
            sent, keep_alive, payload = 0, False, b""
        if sent == len(payload) and keep_alive:
            conn.set_timeout()  # kept alive afresh: to the back of the queue the loop expires from the front
            self.keepalived_conns.remove(conn)
            self.keepalived_conns.append(conn)
            return
        self.poller.unregister(conn.sock)
        self.keepalived_conns.remove(conn)
        rest = payload[sent:]
        future = self.tpool.submit(self._send_rest, conn, rest, keep_alive)
        future.add_done_callback(lambda fut: self.method_queue.defer(self.finish_request, conn, fut))

    @staticmethod
    def _send_rest(conn: Any, rest: bytes, keep_alive: bool) -> bool:
        conn.sock.setblocking(True)
        if rest:
            conn.sock.sendall(rest)
        return keep_alive
