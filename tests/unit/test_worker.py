"""``ReplayWorker._send``: an answer the client's socket does not take at once is finished by a pool thread.

Real gunicorn objects (configuration, thread pool, poller, connection) over a real socket pair
whose send buffer is small; the end-to-end behaviour is in ``tests/integration/test_worker.py``.
"""

from __future__ import annotations

import os
import selectors
import socket
import threading
import time
from concurrent import futures
from typing import Any

# gunicorn's worker modules are imported inside the tests, not when pytest collects this file: the
# metrics plugin takes ``gunicorn.workers.base`` in ``sys.modules`` to mean "inside a gunicorn worker"
# and would then not serve ``metrics.port`` in later tests of the same run.


def make_worker() -> Any:
    from gunicorn.config import Config
    from gunicorn.glogging import Logger

    from tfregistry.worker import ReplayWorker

    cfg = Config()
    cfg.set("threads", 1)
    worker = ReplayWorker(0, os.getppid(), [], None, 30, cfg, Logger(cfg))
    worker.tpool = futures.ThreadPoolExecutor(max_workers=1)
    worker.poller = selectors.DefaultSelector()
    worker.method_queue.init()
    worker.fast_path = True
    return worker


def kept_alive(worker: Any, sock: socket.socket) -> Any:
    """A connection as gthread keeps one between requests: non-blocking, in the poller and the keep-alive queue."""
    from gunicorn.workers.gthread import TConn

    conn = TConn(worker.cfg, sock, ("127.0.0.1", 1), ("127.0.0.1", 2))
    conn.init()
    conn.sock.setblocking(False)
    conn.set_timeout()
    worker.keepalived_conns.append(conn)
    worker.poller.register(conn.sock, selectors.EVENT_READ, lambda _fileobj: None)
    return conn


def test_what_the_socket_refuses_is_sent_by_a_thread_and_the_connection_is_kept():
    worker = make_worker()
    server, client = socket.socketpair()
    server.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
    conn = kept_alive(worker, server)
    payload = os.urandom(1024 * 1024)

    worker._send(conn, payload, keep_alive=True)
    assert conn not in worker.keepalived_conns  # in the pool's hands until the rest is sent
    received = bytearray()
    while len(received) < len(payload):
        received += client.recv(65536)
    assert bytes(received) == payload
    deadline = time.monotonic() + 10
    while conn not in worker.keepalived_conns and time.monotonic() < deadline:
        worker.method_queue.run_callbacks(None)  # finish_request, as the event loop would run it
        time.sleep(0.01)
    assert conn in worker.keepalived_conns and worker.nr_conns == 0
    assert worker.poller.get_key(conn.sock) is not None
    worker.tpool.shutdown()
    client.close()
    conn.close()


def test_an_answer_that_fits_keeps_the_connection_at_the_back_of_the_queue():
    worker = make_worker()
    pairs = [socket.socketpair() for _ in range(2)]
    first, second = (kept_alive(worker, server) for server, _ in pairs)
    worker._send(first, b"HTTP/1.1 204 No Content\r\n\r\n", keep_alive=True)
    assert list(worker.keepalived_conns) == [second, first]
    assert pairs[0][1].recv(100) == b"HTTP/1.1 204 No Content\r\n\r\n"
    worker.tpool.shutdown()
    for server, client in pairs:
        server.close()
        client.close()


def test_an_answer_that_must_close_closes_the_connection():
    worker = make_worker()
    server, client = socket.socketpair()
    conn = kept_alive(worker, server)
    worker.nr_conns = 1
    worker._send(conn, b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: close\r\n\r\n", keep_alive=False)
    client.settimeout(10)
    assert client.recv(200).startswith(b"HTTP/1.1 200 OK")
    deadline = time.monotonic() + 10
    while worker.nr_conns and time.monotonic() < deadline:
        worker.method_queue.run_callbacks(None)
        time.sleep(0.01)
    assert worker.nr_conns == 0 and conn not in worker.keepalived_conns
    assert client.recv(1) == b""  # closed
    worker.tpool.shutdown()
    client.close()


def gunicorn_request(sock: socket.socket) -> Any:
    """The next request on ``sock`` as gunicorn's parser gives it to the worker (head parsed, body unread)."""
    from gunicorn.config import Config
    from gunicorn.http import RequestParser

    return next(RequestParser(Config(), sock, ("127.0.0.1", 1)))


def test_a_large_body_is_received_straight_from_the_socket_and_a_pipelined_request_stays_in_place():
    from tfregistry.worker import DIRECT_BODY_MIN, DirectBody

    server, client = socket.socketpair()
    server.settimeout(10)  # a read past the body would wait for bytes that never come
    body = os.urandom(DIRECT_BODY_MIN + 12345)
    client.sendall(f"POST /api/v1/modules HTTP/1.1\r\nHost: r\r\nContent-Length: {len(body)}\r\n\r\n".encode()
                   + body[:1000])  # the head and the body's first bytes arrive together
    req = gunicorn_request(server)
    environ = {"wsgi.input": req.body}
    DirectBody.wrap(environ)
    stream = environ["wsgi.input"]
    assert isinstance(stream, DirectBody)
    sender = threading.Thread(  # the rest, and a pipelined request right behind it
        target=client.sendall, args=(body[1000:] + b"GET /v1/next HTTP/1.1\r\nHost: r\r\n\r\n",))
    sender.start()

    received = bytearray()
    buffer = bytearray(256 * 1024)
    while n := stream.readinto(buffer):
        received += buffer[:n]
    sender.join()
    assert bytes(received) == body and stream.read() == b""
    assert req.body.reader.length == 0 and req.body.read() == b""  # gunicorn finds nothing left to skip
    follower = gunicorn_request_after(req, server)
    assert follower.path == "/v1/next"
    server.close()
    client.close()


def gunicorn_request_after(req: Any, sock: socket.socket) -> Any:
    """The request gunicorn parses next on the connection ``req`` came from (sharing its read-ahead)."""
    from gunicorn.config import Config
    from gunicorn.http.message import Request

    return Request(Config(), req.unreader, ("127.0.0.1", 1), req.req_number + 1)


def test_a_body_cut_short_marks_the_request_failed():
    from werkzeug.exceptions import ClientDisconnected

    from tfregistry.worker import DIRECT_BODY_MIN, DirectBody

    server, client = socket.socketpair()
    client.sendall(f"PUT /x HTTP/1.1\r\nHost: r\r\nContent-Length: {DIRECT_BODY_MIN}\r\n\r\n".encode() + b"x" * 10)
    req = gunicorn_request(server)
    environ = {"wsgi.input": req.body}
    DirectBody.wrap(environ)
    client.close()  # the client goes away with the body unfinished
    stream = environ["wsgi.input"]
    assert stream.read(10) == b"x" * 10
    try:
        stream.read(100)
    except ClientDisconnected:
        pass
    else:
        raise AssertionError("a body cut short read as complete")
    assert req.body.failed  # gunicorn closes such a connection rather than reading the next request from it
    server.close()


def test_small_bodies_and_chunked_bodies_keep_gunicorns_reader():
    from tfregistry.worker import DIRECT_BODY_MIN, DirectBody

    for head in (f"Content-Length: {DIRECT_BODY_MIN - 1}", "Transfer-Encoding: chunked"):
        server, client = socket.socketpair()
        client.sendall(f"POST /x HTTP/1.1\r\nHost: r\r\n{head}\r\n\r\n".encode())
        req = gunicorn_request(server)
        environ = {"wsgi.input": req.body}
        DirectBody.wrap(environ)
        assert environ["wsgi.input"] is req.body, head
        server.close()
        client.close()


def test_the_date_header_is_gunicorns_made_once_a_second() -> None:
    from gunicorn import util

    from tfregistry.worker import _HttpDate

    original = util.http_date._http_date if isinstance(util.http_date, _HttpDate) else util.http_date
    made: list[float] = []

    def counting(timestamp: float | None = None) -> str:
        made.append(timestamp if timestamp is not None else time.time())
        return original(timestamp)

    cached = _HttpDate(counting)
    second = int(time.time())
    while int(time.time()) == second:  # start at the beginning of a second
        time.sleep(0.01)
    answers = [cached() for _ in range(100)]
    assert answers == [original(made[0])] * 100 and len(made) == 1
    assert cached(0) == "Thu, 01 Jan 1970 00:00:00 GMT" and len(made) == 2
    time.sleep(1.05)
    assert cached() == original() and len(made) == 3
