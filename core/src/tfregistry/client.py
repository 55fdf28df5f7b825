"""A small HTTP client for the registry's API, used by ``tfr publish``.

Uploads are streamed as ``multipart/form-data`` so a large archive is never held
in memory.  TLS verification uses the system trust store, or ``SSL_CERT_FILE``.
"""

from __future__ import annotations

import json
import mimetypes
import os
import ssl
import uuid
from collections.abc import Iterator, Mapping
from contextlib import ExitStack
from dataclasses import dataclass
from http.client import HTTPConnection, HTTPSConnection
from pathlib import Path
from typing import Any, BinaryIO
from urllib.parse import urlsplit

CHUNK = 1024 * 1024


class ClientError(Exception):
    """The registry refused the request, or could not be reached."""


@dataclass
class Response:
    status: int
    body: Any


def _multipart(fields: Mapping[str, str], files: list[tuple[str, tuple[str, BinaryIO, int]]],
               boundary: str) -> tuple[list[bytes | tuple[BinaryIO, int]], int]:
    parts: list[bytes | tuple[BinaryIO, int]] = []
    for name, value in fields.items():
        parts.append(
            f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n{value}\r\n'.encode()
        )
    for name, (filename, fh, size) in files:
        ctype = mimetypes.guess_type(filename)[0] or "application/octet-stream"
        parts.append(
            f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"; filename="{filename}"\r\n'
            f"Content-Type: {ctype}\r\n\r\n".encode()
        )
        parts.append((fh, size))
        parts.append(b"\r\n")
    parts.append(f"--{boundary}--\r\n".encode())
    length = sum(len(p) if isinstance(p, bytes) else p[1] for p in parts)
    return parts, length


def _stream(parts: list[bytes | tuple[BinaryIO, int]]) -> Iterator[bytes]:
    for part in parts:
        if isinstance(part, bytes):
            yield part
        else:
            fh = part[0]
            while chunk := fh.read(CHUNK):
                yield chunk


class RegistryClient:
    """Talks to ``base_url`` (e.g. ``https://registry.example.com``) with a bearer token."""

    def __init__(self, base_url: str, token: str | None = None, timeout: float = 300) -> None:
        parts = urlsplit(base_url.rstrip("/"))
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ClientError(f"registry URL {base_url!r} must look like https://registry.example.com")
        self.scheme, self.host, self.port = parts.scheme, parts.hostname, parts.port
        self.prefix = parts.path
        self.token = token
        self.timeout = timeout

    def _connection(self) -> HTTPConnection:
        if self.scheme == "https":
            context = ssl.create_default_context(cafile=os.environ.get("SSL_CERT_FILE"))
            return HTTPSConnection(self.host, self.port, timeout=self.timeout, context=context)
        return HTTPConnection(self.host, self.port, timeout=self.timeout)

    def request(self, method: str, path: str, body: Any = None, headers: Mapping[str, str] | None = None) -> Response:
        all_headers = {"Accept": "application/json", "User-Agent": "tfregistry-cli", **(headers or {})}
        if self.token:
            all_headers["Authorization"] = f"Bearer {self.token}"
        conn = self._connection()
        try:
            conn.request(method, self.prefix + path, body=body, headers=all_headers)
            resp = conn.getresponse()
            raw = resp.read()
        except (OSError, ssl.SSLError) as exc:
            raise ClientError(f"cannot reach the registry at {self.scheme}://{self.host}:{self.port or ''}: {exc}") \
                from None
        finally:
            conn.close()
        try:
            data = json.loads(raw) if raw else None
        except json.JSONDecodeError:
            data = raw.decode(errors="replace")
        return Response(resp.status, data)

    def upload(self, path: str, fields: Mapping[str, str], files: list[tuple[str, Path]]) -> Response:
        """POST ``fields`` and ``files`` (form field name, path; a name may repeat) as multipart data, streamed."""
        boundary = uuid.uuid4().hex
        with ExitStack() as stack:
            handles = [(name, p, stack.enter_context(open(p, "rb"))) for name, p in files]
            parts, length = _multipart(
                fields, [(name, (p.name, fh, os.fstat(fh.fileno()).st_size)) for name, p, fh in handles], boundary
            )
            headers = {"Content-Type": f"multipart/form-data; boundary={boundary}", "Content-Length": str(length)}
            return self.request("POST", path, body=_stream(parts), headers=headers)


def error_message(response: Response) -> str:
    """The human-readable message of an API or protocol error response."""
    body = response.body
    if isinstance(body, dict):
        if "message" in body:
            detail = body.get("errors")
            return f"{body['message']}" + (f": {json.dumps(detail)}" if detail else "")
        if "errors" in body:
            return "; ".join(str(e) for e in body["errors"])
    return str(body)[:500]
