"""The registry's gunicorn worker (``tfregistry.worker.ReplayWorker``, the README's production command).

Replayed protocol answers are sent by the worker's event loop, without a pool thread.  These tests
run real gunicorn with one thread in its pool, keep that thread busy with an upload that has not
finished, and show that replayed reads are still answered (identically to the thread's answer,
downloads counted) while anything else waits its turn; and that requests the fast path must not
take (bodies, pipelining, ``Connection: close``, answers larger than the socket takes at once)
are answered correctly.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import select
import socket
import ssl
import subprocess
import tarfile
import time
import weakref
from http.client import HTTPResponse
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import sqlalchemy as sa

from tests.integration.test_production import BIN, free_port, production_env, wait_until_serving
from tfregistry.testing.plugin import build_module_archive
from tfregistry.tls import ensure_self_signed

TERRAFORM = "Terraform/1.15.5"
#: Headers that differ between two answers of the same request.
PER_REQUEST = {"date", "x-request-id"}


def send(sock: socket.socket, target: str, token: str, *, agent: str = TERRAFORM, extra: str = "",
         method: str = "GET") -> None:
    sock.sendall(f"{method} {target} HTTP/1.1\r\nHost: registry.test\r\nUser-Agent: {agent}\r\n"
                 f"Authorization: Bearer {token}\r\n{extra}\r\n".encode())


class _SocketBytes(io.RawIOBase):
    """Raw reads from a socket that neither holds the socket alive nor keeps it open: unlike
    ``socket.makefile``, it takes no reference count, so ``sock.close()`` still closes it at once."""

    def __init__(self, sock: socket.socket) -> None:
        super().__init__()
        self._sock = weakref.ref(sock)

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        sock = self._sock()
        if sock is None:
            raise OSError("the socket is gone")
        return sock.recv_into(buffer)


class _KeptReader(io.BufferedReader):
    """A socket's reader that outlives the ``HTTPResponse`` using it: what it read ahead (a pipelined
    request's answer arriving with the one before) belongs to the next answer."""

    def close(self) -> None:
        pass


class _Answers:
    """Hands ``HTTPResponse`` the socket's one kept reader instead of a fresh buffer per answer."""

    _readers: weakref.WeakKeyDictionary[socket.socket, _KeptReader] = weakref.WeakKeyDictionary()

    def __init__(self, sock: socket.socket) -> None:
        self._sock = sock

    def makefile(self, *_args: object, **_kwargs: object) -> _KeptReader:
        reader = self._readers.get(self._sock)
        if reader is None:
            reader = self._readers[self._sock] = _KeptReader(_SocketBytes(self._sock))
        return reader


def receive(sock: socket.socket, method: str = "GET") -> tuple[int, dict[str, str], bytes]:
    """One answer from ``sock`` (blocking); the socket stays usable for the next one, including when
    answers to pipelined requests arrived together."""
    response = HTTPResponse(_Answers(sock), method=method)  # type: ignore[arg-type]
    response.begin()
    body = response.read()
    return response.status, {k.lower(): v for k, v in response.getheaders()}, body


def readable(sock: socket.socket, timeout: float = 0.0) -> bool:
    return bool(select.select([sock], [], [], timeout)[0])


def connect(port: int) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", port), timeout=30)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return sock


def start_gunicorn(tmp_path: Path, env: dict[str, str], port: int) -> subprocess.Popen:
    server = subprocess.Popen(
        [BIN / "gunicorn", "-c", "python:tfregistry.gunicorn_conf", "-w", "1", "--threads", "1",
         "--bind", f"127.0.0.1:{port}", "--no-control-socket", "--access-logfile", str(tmp_path / "access.log"),
         "tfregistry.app:create_app()"],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    wait_until_serving(server, port)
    return server


def publish(env: dict[str, str], port: int, token: str, tmp_path: Path, name: str, payload: bytes = b"",
            scheme: str = "http") -> None:
    module = tmp_path / name
    module.mkdir()
    (module / "main.tf").write_text('variable "name" {}\n')
    if payload:
        (module / "blob.bin").write_bytes(payload)
    subprocess.run([BIN / "tfr", "publish", "module", str(module), "--namespace", "acme", "--name", name,
                    "--system", "aws", "--version", "1.0.0"], check=True, capture_output=True,
                   env={**env, "TFR_URL": f"{scheme}://127.0.0.1:{port}", "TFR_TOKEN": token})


def test_replayed_reads_are_answered_while_every_thread_is_busy(tmp_path, database_url):
    env = production_env(tmp_path, database_url, TFR_DOWNLOADS__FLUSH_INTERVAL="1h")
    token = subprocess.run([BIN / "tfr", "token", "create", "--name", "t", "--scope", "admin"], env=env,
                           check=True, capture_output=True, text=True).stdout.strip().splitlines()[-1]
    port = free_port()
    server = start_gunicorn(tmp_path, env, port)
    try:
        publish(env, port, token, tmp_path, "network")
        versions = "/v1/modules/acme/network/aws/versions"
        download = "/v1/modules/acme/network/aws/1.0.0/download"

        reader = connect(port)
        send(reader, versions, token)
        first = receive(reader)  # made by the pool thread, kept by the read cache
        assert first[0] == 200 and b'"1.0.0"' in first[2]
        send(reader, download, token)
        assert receive(reader)[0] == 204

        # The only pool thread starts on an upload whose body never comes (yet).
        uploader = connect(port)
        uploader.sendall((f"POST /api/v1/modules HTTP/1.1\r\nHost: registry.test\r\n"
                          f"Authorization: Bearer {token}\r\nContent-Type: multipart/form-data; boundary=b0\r\n"
                          f"Content-Length: 100000\r\n\r\n--b0\r\nContent-Disposition: form-data; "
                          f'name="archive"; filename="m.tar.gz"\r\n\r\n').encode() + b"\x1f\x8b" + b"\0" * 100)
        # A request the cache cannot answer queues behind it ...
        waiting = connect(port)
        send(waiting, "/v1/modules/acme/network/aws", token, agent="curl/8")
        # ... while replayed ones, on a kept-alive connection, are answered by the event loop.
        send(reader, versions, token)
        again = receive(reader)
        assert again[0] == first[0] and again[2] == first[2]
        assert {k: v for k, v in again[1].items() if k not in PER_REQUEST} == \
            {k: v for k, v in first[1].items() if k not in PER_REQUEST}
        assert again[1]["x-request-id"] != first[1]["x-request-id"]
        for _ in range(30):
            send(reader, download, token)
            status, headers, _body = receive(reader)
            assert status == 204 and "/v1/files/" in headers["x-terraform-get"]
        assert not readable(waiting) and not readable(uploader)  # the thread is still on the upload

        uploader.close()  # the upload fails; the thread moves on to the waiting request
        status, _headers, body = receive(waiting)
        assert status == 200 and b'"network"' in body

        # Not for the event loop: a body, pipelined requests, Connection: close; all answered in order.
        send(reader, versions, token, extra="Content-Length: 5\r\n")
        reader.sendall(b"hello")
        assert receive(reader)[2] == first[2]
        send(reader, versions, token)
        send(reader, "/.well-known/terraform.json", token)
        assert receive(reader)[2] == first[2]
        assert b"modules.v1" in receive(reader)[2]
        send(reader, versions, token, extra="Connection: close\r\n")
        assert receive(reader)[2] == first[2]
        assert reader.recv(1) == b""  # closed by the server as asked

        server.terminate()
        assert server.wait(timeout=40) == 0
        engine = sa.create_engine(database_url)
        with engine.connect() as conn:
            assert conn.scalar(sa.text("SELECT count(*) FROM download_events")) == 31
        engine.dispose()
        access = (tmp_path / "access.log").read_text()
        assert access.count("/<version>/download 204") == 31, access[-2000:]
    finally:
        if server.poll() is None:
            server.kill()
            server.wait()


def test_a_file_larger_than_the_socket_takes_at_once_arrives_whole(tmp_path, database_url):
    """A small archive is sent by the event loop; what the client's full receive buffer refuses is sent
    by a pool thread, and the connection then serves the next request."""
    env = production_env(tmp_path, database_url)
    token = subprocess.run([BIN / "tfr", "token", "create", "--name", "t", "--scope", "admin"], env=env,
                           check=True, capture_output=True, text=True).stdout.strip().splitlines()[-1]
    port = free_port()
    server = start_gunicorn(tmp_path, env, port)
    try:
        publish(env, port, token, tmp_path, "blob", payload=os.urandom(180 * 1024))
        sock = socket.socket()
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        sock.connect(("127.0.0.1", port))
        send(sock, "/v1/modules/acme/blob/aws/1.0.0/download", token)
        status, headers, _ = receive(sock)
        assert status == 204
        link = urlsplit(headers["x-terraform-get"])
        target = f"{link.path}?{link.query}"
        bodies = []
        for _ in range(3):  # the first by the pool, the others by the event loop
            send(sock, target, token)
            select.select([], [], [], 0.3)  # let the server fill what the socket takes before reading
            status, headers, body = receive(sock)
            assert status == 200 and int(headers["content-length"]) == len(body) > 180 * 1024
            bodies.append(body)
        assert bodies[0] == bodies[1] == bodies[2]
        send(sock, "/.well-known/terraform.json", token)
        assert b"modules.v1" in receive(sock)[2]
        sock.close()
    finally:
        server.terminate()
        server.wait(timeout=40)


def multipart_publish(token: str, name: str, version: str, archive: bytes) -> tuple[bytes, bytes]:
    """The head and the body of a module publish (``POST /api/v1/modules``) carrying ``archive``."""
    fields = {"namespace": "acme", "name": name, "system": "aws", "version": version}
    body = b"".join(f'--b0\r\nContent-Disposition: form-data; name="{k}"\r\n\r\n{v}\r\n'.encode()
                    for k, v in fields.items())
    body += (b'--b0\r\nContent-Disposition: form-data; name="archive"; filename="m.tar.gz"\r\n'
             b"Content-Type: application/gzip\r\n\r\n" + archive + b"\r\n--b0--\r\n")
    head = (f"POST /api/v1/modules HTTP/1.1\r\nHost: registry.test\r\nAuthorization: Bearer {token}\r\n"
            f"Content-Type: multipart/form-data; boundary=b0\r\nContent-Length: {len(body)}\r\n\r\n").encode()
    return head, body


def test_a_large_upload_is_received_whole_and_the_connection_goes_on(tmp_path, database_url):
    """Bodies of a megabyte or more are received straight from the socket (``DirectBody``): the archive
    stored is byte for byte the one sent, a request pipelined behind the body is answered next on the
    same connection, and an upload cut short publishes nothing."""
    env = production_env(tmp_path, database_url)
    token = subprocess.run([BIN / "tfr", "token", "create", "--name", "t", "--scope", "admin"], env=env,
                           check=True, capture_output=True, text=True).stdout.strip().splitlines()[-1]
    archive = build_module_archive(files={"blob.bin": os.urandom(3 * 1024 * 1024)})
    port = free_port()
    server = start_gunicorn(tmp_path, env, port)
    try:
        sock = connect(port)
        head, body = multipart_publish(token, "big", "1.0.0", archive)
        send(sock, "/.well-known/terraform.json", token)  # the connection is kept alive before the upload
        assert b"modules.v1" in receive(sock)[2]
        versions = "/v1/modules/acme/big/aws/versions"
        sock.sendall(head + body + f"GET {versions} HTTP/1.1\r\nHost: registry.test\r\n"
                                   f"Authorization: Bearer {token}\r\n\r\n".encode())
        status, _headers, answer = receive(sock, "POST")
        assert status == 201, answer
        status, _headers, answer = receive(sock)
        assert status == 200 and b'"1.0.0"' in answer

        send(sock, "/v1/modules/acme/big/aws/1.0.0/download", token)
        link = urlsplit(receive(sock)[1]["x-terraform-get"])
        send(sock, f"{link.path}?{link.query}", token)
        status, _headers, stored = receive(sock)
        assert status == 200 and hashlib.sha256(stored).digest() == hashlib.sha256(archive).digest()

        cut = connect(port)  # half a body, then the client goes away
        head, body = multipart_publish(token, "big", "2.0.0", archive)
        cut.sendall(head + body[: len(body) // 2])
        cut.shutdown(socket.SHUT_WR)  # no more to come; the answer can still be read
        status, _headers, answer = receive(cut, "POST")
        assert status == 400, answer
        cut.close()
        send(sock, versions, token, extra="Content-Length: 0\r\n")  # for the pool thread, after the cut upload
        status, _headers, answer = receive(sock)
        assert status == 200 and b'"1.0.0"' in answer and b'"2.0.0"' not in answer
        sock.close()
    finally:
        server.terminate()
        server.wait(timeout=40)
    assert server.returncode == 0


def test_the_tls_context_is_made_once_and_again_when_the_certificate_is_renewed(tmp_path, database_url):
    """gunicorn's ``ssl_context`` hook in the production configuration keeps one TLS context per worker
    (gunicorn alone builds one per connection); a renewed certificate is served from the next connection."""
    tls = ensure_self_signed(tmp_path / "tls")
    env = production_env(tmp_path, database_url)
    port = free_port()
    server = subprocess.Popen(
        [BIN / "gunicorn", "-c", "python:tfregistry.gunicorn_conf", "-w", "1", "--bind", f"127.0.0.1:{port}",
         "--certfile", str(tls.cert), "--keyfile", str(tls.key), "--no-control-socket", "tfregistry.app:create_app()"],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)

    def served_certificate() -> bytes:
        context = ssl.create_default_context(cafile=str(tls.bundle))
        with socket.create_connection(("127.0.0.1", port), timeout=10) as raw, \
                context.wrap_socket(raw, server_hostname="127.0.0.1") as sock:
            send(sock, "/.well-known/terraform.json", "")
            assert b"modules.v1" in receive(sock)[2]
            return sock.getpeercert(binary_form=True)

    try:
        for _ in range(150):
            try:
                first = served_certificate()
                break
            except OSError:
                assert server.poll() is None, server.stdout.read().decode()
                time.sleep(0.1)
        assert served_certificate() == first
        renewed = ensure_self_signed(tmp_path / "tls")  # a new certificate and key, same paths
        assert renewed.cert == tls.cert
        assert served_certificate() != first
        # A large upload is received from the TLS socket too (DirectBody), and stored whole.
        token = subprocess.run([BIN / "tfr", "token", "create", "--name", "t", "--scope", "admin"], env=env,
                               check=True, capture_output=True, text=True).stdout.strip().splitlines()[-1]
        payload = os.urandom(2 * 1024 * 1024)
        publish({**env, "SSL_CERT_FILE": str(renewed.bundle)}, port, token, tmp_path, "tlsmodule", payload, "https")
        context = ssl.create_default_context(cafile=str(renewed.bundle))
        with socket.create_connection(("127.0.0.1", port), timeout=10) as raw, \
                context.wrap_socket(raw, server_hostname="127.0.0.1") as sock:
            send(sock, "/v1/modules/acme/tlsmodule/aws/1.0.0/download", token)
            link = urlsplit(receive(sock)[1]["x-terraform-get"])
            send(sock, f"{link.path}?{link.query}", token)
            status, _headers, stored = receive(sock)
        assert status == 200
        with tarfile.open(fileobj=io.BytesIO(stored)) as tar:
            assert tar.extractfile("blob.bin").read() == payload
    finally:
        server.terminate()
        server.wait(timeout=40)


def test_a_request_head_seen_before_is_answered_with_its_own_connection(tmp_path):
    """The event loop keeps what gunicorn parsed of a head by (bytes, peer address, listener): a head
    seen before is not parsed again, yet every request gets its own port, the scheme its peer may set,
    and an environ no earlier request has touched."""
    port = free_port()
    server = subprocess.Popen(
        [BIN / "gunicorn", "-k", "tfregistry.worker.ReplayWorker", "-w", "1", "--threads", "1",
         "--bind", f"127.0.0.1:{port}", "--no-control-socket", "--forwarded-allow-ips", "127.0.0.1",
         "tests.integration.echo_app:app"],
        cwd=Path(__file__).resolve().parents[2], stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        wait_until_serving(server, port)

        def answers(source: str, head: str, times: int = 3) -> tuple[int, list[dict[str, Any]]]:
            sock = socket.create_connection(("127.0.0.1", port), timeout=30, source_address=(source, 0))
            with sock:
                got = []
                for _ in range(times):
                    sock.sendall(head.encode())
                    status, _headers, body = receive(sock)
                    assert status == 200
                    got.append(json.loads(body))
                return sock.getsockname()[1], got

        head = ("GET /v1/modules/acme/net/aws/versions?x=1 HTTP/1.1\r\nHost: registry.test\r\n"
                "Authorization: Bearer one\r\nX-Forwarded-Proto: https\r\n\r\n")
        seen_ports = set()
        for source, scheme in (("127.0.0.1", "https"), ("127.0.0.1", "https"), ("127.0.0.2", "http")):
            own_port, got = answers(source, head)
            seen_ports.add(own_port)
            # The first request of a connection goes to the pool thread; the rest to the event loop,
            # the head parsed once in all (the second connection from 127.0.0.1 finds it kept).
            assert [a["replay_only"] for a in got] == [False, True, True]
            for a in got:
                assert a == {"REMOTE_ADDR": source, "REMOTE_PORT": str(own_port), "wsgi.url_scheme": scheme,
                             "PATH_INFO": "/v1/modules/acme/net/aws/versions", "QUERY_STRING": "x=1",
                             "HTTP_AUTHORIZATION": "Bearer one", "SERVER_PORT": str(port),
                             "replay_only": a["replay_only"], "marked_before": False, "body": ""}
        assert len(seen_ports) == 3
        # A head that differs by one byte is a head of its own.
        _port, got = answers("127.0.0.1", head.replace("Bearer one", "Bearer two"), times=2)
        assert [a["HTTP_AUTHORIZATION"] for a in got] == ["Bearer two", "Bearer two"]
        assert got[1]["replay_only"]
    finally:
        server.terminate()
        server.wait(timeout=30)
