"""The :class:`Registry`: the one context object every hook and view receives."""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import secrets
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import quote, urlencode

from tfregistry import StartupError

if TYPE_CHECKING:
    from tfregistry.db import Database
    from tfregistry.interfaces import StorageBackend
    from tfregistry.plugins import PluginManager
    from tfregistry.settings import Settings


@dataclass(frozen=True)
class ModuleVersionRef:
    """A module version as hooks see it (no ORM object crosses the plugin boundary)."""

    namespace: str
    name: str
    system: str
    version: str
    storage_key: str
    sha256: str
    size: int

    @property
    def address(self) -> str:
        return f"{self.namespace}/{self.name}/{self.system}"

    @property
    def filename(self) -> str:
        return f"{self.namespace}-{self.name}-{self.system}-{self.version}.tar.gz"


@dataclass(frozen=True)
class ProviderVersionRef:
    """A provider version as hooks see it; ``hostname`` is empty for the registry's own providers,
    else the origin registry a mirrored one comes from."""

    namespace: str
    type: str
    version: str
    hostname: str = ""

    @property
    def address(self) -> str:
        return f"{self.namespace}/{self.type}"


class UrlSigner:
    """HMAC-SHA256 signatures for short-lived download URLs.

    The signature covers the path and the expiry time, so neither can be changed.
    """

    def __init__(self, key: bytes) -> None:
        self._key = key

    def _mac(self, path: str, expires: int) -> str:
        digest = hmac.new(self._key, f"{path}\n{expires}".encode(), hashlib.sha256).digest()
        return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()

    def sign(self, path: str, ttl: int, now: float | None = None) -> dict[str, str]:
        """Query parameters that make ``path`` fetchable for ``ttl`` seconds."""
        expires = int((time.time() if now is None else now) + ttl)
        return {"expires": str(expires), "signature": self._mac(path, expires)}

    def verify(self, path: str, expires: str | None, signature: str | None, now: float | None = None) -> bool:
        """Whether the signature is valid for ``path`` and has not expired."""
        if not expires or not signature or not expires.isdigit():
            return False
        if int(expires) < (time.time() if now is None else now):
            return False
        return hmac.compare_digest(self._mac(path, int(expires)), signature)


def load_secret_key(configured: str | None, data_dir: Path) -> bytes:
    """The configured secret key, or one generated once and kept in ``<data_dir>/secret_key``."""
    if configured:
        return configured.encode()
    path = data_dir / "secret_key"
    data_dir.mkdir(parents=True, exist_ok=True)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        pass  # made earlier, or just now by another worker
    else:
        with os.fdopen(fd, "w") as fh:
            fh.write(secrets.token_urlsafe(48))
    for _ in range(50):  # another worker may still be writing it
        key = path.read_text().strip()
        if key:
            return key.encode()
        time.sleep(0.01)
    raise StartupError(f"{path} is empty; delete it or set secret_key")


class Registry:
    """Settings, plugin manager, database and storage of one application.

    Hooks receive it as ``registry``; views reach it through ``current_registry()``.
    """

    def __init__(
        self,
        settings: Settings,
        pm: PluginManager,
        db: Database,
        storage: StorageBackend,
        storage_backends: dict[str, Any],
    ) -> None:
        self.settings = settings
        self.pm = pm
        self.hooks = pm.hook
        self.db = db
        self.storage = storage
        self.storage_backends = storage_backends
        self.secret_key = load_secret_key(settings["secret_key"], settings.data_dir)
        self.signer = UrlSigner(self.secret_key)
        self.discovery: dict[str, Any] = {}
        #: Interactive sign-in methods (:class:`tfregistry.interfaces.AuthProvider`) by name.
        self.auth_providers: dict[str, Any] = {}
        #: Source-control providers (:class:`tfregistry.interfaces.ScmProvider`) by name.
        self.scm_providers: dict[str, Any] = {}
        #: Notification channels (:class:`tfregistry.interfaces.Notifier` factories) by name.
        self.notifiers: dict[str, Any] = {}
        #: Small process-local caches of this application, by name (``memo.setdefault(name, {})``):
        #: not shared between processes, gone on restart; never the only copy of anything.
        self.memo: dict[str, Any] = {}
        from tfregistry.readcache import DownloadRecorder, Generation

        #: Module download events, written in batches (see :mod:`tfregistry.readcache`).
        self.downloads = DownloadRecorder(db, interval=float(settings["downloads.flush_interval"]))
        #: The catalog generation (see :mod:`tfregistry.readcache`).
        self.generation = Generation(db.engine, heartbeat=float(settings["cache.generation_heartbeat"]),
                                     sessionmaker=db.sessionmaker)
        from tfregistry.jobs import make_queue

        #: Background jobs: ``registry.jobs.enqueue("module:function", *args, queue="default")``.
        self.jobs = make_queue(settings, self)
        from tfregistry.telemetry import Observers

        #: The instrumentation point: ``registry.observe(name, value, **labels)`` (see
        #: :data:`tfregistry.telemetry.OBSERVATIONS`), passed to what ``tfr_observers`` returned.
        self.observe = Observers(pm.hook.tfr_observers(registry=self))
        if self.observe.active:
            from tfregistry.telemetry import ObservedStorage

            self.storage = ObservedStorage(storage, self.observe)
        from tfregistry.events import install

        #: Sessions know their registry, so events raised in a unit of work reach it after the commit.
        install(self)

    def close(self) -> None:
        """Stop in-process scheduling, write pending download events, release the storage backend's clients
        and the database pool."""
        stop = getattr(self.jobs, "stop", None)
        if stop is not None:
            stop()
        self.downloads.close()
        self.generation.close()
        self.storage.close()
        self.db.dispose()

    def gauges(self) -> list[tuple[str, float, dict[str, str]]]:
        """State for a metrics scrape, read now: ``(name, value, labels)`` for each of
        :data:`tfregistry.telemetry.GAUGES` (job queue depth, signing key expiry times)."""
        from tfregistry.telemetry import current_gauges

        return current_gauges(self)

    def absolute_url(self, path: str) -> str:
        """``path`` (starting with ``/``) under ``public_url``, or under the current request's host."""
        base = self.settings["public_url"]
        if base is None:
            from flask import has_request_context, request

            if not has_request_context():
                return path
            base = request.host_url.rstrip("/") + request.script_root
        return base + path

    def download_url(self, key: str, filename: str | None = None) -> str:
        """A short-lived URL for ``key`` that needs no token: the backend's presigned URL, else our signed route."""
        ttl = self.settings["downloads.url_ttl"]
        return self.storage.presigned_url(key, expires_in=ttl, filename=filename) or self.signed_file_url(key, ttl)

    def signed_file_url(self, key: str, ttl: int) -> str:
        """A URL to the core's ``/v1/files/`` route for ``key``, valid for ``ttl`` seconds."""
        path = "/v1/files/" + quote(key)
        return self.absolute_url(path) + "?" + urlencode(self.signer.sign(key, ttl))

    def signed_url(self, path: str, ttl: int) -> str:
        """``/v1/<path>`` on this registry with an HMAC signature over ``path``, valid for ``ttl`` seconds."""
        return self.absolute_url("/v1/" + quote(path)) + "?" + urlencode(self.signer.sign(path, ttl))
