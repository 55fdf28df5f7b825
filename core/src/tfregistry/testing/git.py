"""Real git repositories for SCM tests: build them, and serve them over HTTP with ``git http-backend``.

``GitHttpServer(root)`` serves every bare repository under ``root`` at ``http://127.0.0.1:PORT/<name>.git``
through git's own CGI program (smart HTTP, what hosting services speak), optionally behind HTTP Basic
authentication; ``GitSshServer(root)`` serves them over ssh with a real ``sshd`` and a deploy key.
``GitRepo`` is a working copy with a bare twin the server publishes: commit, tag (or
move a tag) and push, as a developer would.
"""

from __future__ import annotations

import base64
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

#: Where Debian and most distributions install git's HTTP backend.
GIT_HTTP_BACKEND_PATHS = ("/usr/lib/git-core/git-http-backend", "/usr/libexec/git-core/git-http-backend")


def git_http_backend() -> str:
    """The path of ``git-http-backend``; raises ``FileNotFoundError`` when git does not ship one here."""
    exec_path = subprocess.run(["git", "--exec-path"], capture_output=True, text=True, check=True).stdout.strip()
    for candidate in (os.path.join(exec_path, "git-http-backend"), *GIT_HTTP_BACKEND_PATHS):
        if os.access(candidate, os.X_OK):
            return candidate
    raise FileNotFoundError("git-http-backend not found (install git)")


_ENV = {"GIT_AUTHOR_NAME": "Test", "GIT_AUTHOR_EMAIL": "test@example.com", "GIT_COMMITTER_NAME": "Test",
        "GIT_COMMITTER_EMAIL": "test@example.com", "GIT_CONFIG_NOSYSTEM": "1"}


class GitRepo:
    """A working copy at ``<root>/work/<name>`` pushing to the bare ``<root>/<name>.git``."""

    def __init__(self, root: Path, name: str) -> None:
        self.name = name
        self.bare = root / f"{name}.git"
        self.work = root / "work" / name
        self.work.mkdir(parents=True)
        self.git("init", "-q", "-b", "main")
        subprocess.run(["git", "init", "-q", "--bare", "-b", "main", str(self.bare)], check=True, env=self._env())
        subprocess.run(["git", "--git-dir", str(self.bare), "config", "http.receivepack", "false"], check=True)
        self.git("remote", "add", "origin", str(self.bare))

    def _env(self) -> dict[str, str]:
        return {**{k: v for k, v in os.environ.items() if not k.startswith("GIT_")}, **_ENV,
                "HOME": str(self.work.parent)}

    def git(self, *args: str) -> str:
        return subprocess.run(["git", "-C", str(self.work), *args], check=True, capture_output=True, text=True,
                              env=self._env()).stdout.strip()

    def write(self, files: dict[str, str | bytes | None]) -> None:
        """Write (``None``: delete) files of the working copy; ``"->target"`` text makes a symlink."""
        for rel, content in files.items():
            path = self.work / rel
            if content is None:
                if path.is_dir() and not path.is_symlink():
                    shutil.rmtree(path)
                else:
                    path.unlink(missing_ok=True)
                continue
            path.parent.mkdir(parents=True, exist_ok=True)
            if isinstance(content, str) and content.startswith("->"):
                path.unlink(missing_ok=True)
                path.symlink_to(content[2:])
            elif isinstance(content, bytes):
                path.write_bytes(content)
            else:
                path.write_text(content)

    def commit(self, files: dict[str, str | bytes | None], message: str = "change") -> str:
        """Write ``files``, commit everything, push ``main``; the new commit's SHA."""
        self.write(files)
        self.git("add", "-A")
        self.git("commit", "-q", "--allow-empty", "-m", message)
        self.git("push", "-q", "origin", "main")
        return self.git("rev-parse", "HEAD")

    def tag(self, name: str, sha: str = "HEAD", *, annotated: bool = True, force: bool = False) -> str:
        """Create (with ``force``, move) tag ``name`` at ``sha`` and push it; the commit SHA it points at."""
        args = ["tag", *(["-a", "-m", name] if annotated else []), *(["-f"] if force else []), name, sha]
        self.git(*args)
        self.git("push", "-q", *(["--force"] if force else []), "origin", f"refs/tags/{name}")
        return self.git("rev-parse", f"{name}^{{commit}}")

    def delete_tag(self, name: str) -> None:
        self.git("tag", "-d", name)
        self.git("push", "-q", "origin", f":refs/tags/{name}")


class GitHttpServer:
    """Serve the bare repositories under ``root`` with ``git http-backend`` on 127.0.0.1.

    With ``credentials=("user", "password")`` every request needs that HTTP Basic authentication
    (401 with ``WWW-Authenticate`` otherwise), as a hosting service's private repositories do.
    ``authorizations`` holds further ``Authorization`` header values accepted as well (the tokens an
    OAuth fake issued, say: ``Basic ...`` or ``Bearer ...``).  ``requests`` counts the requests served, by path.
    """

    def __init__(self, root: Path, credentials: tuple[str, str] | None = None) -> None:
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        self.credentials = credentials
        self.authorizations: set[str] = set()
        self.requests: list[str] = []
        #: Set when a held request arrived (see :meth:`hold`).
        self.held = threading.Event()
        self._release = threading.Event()
        self._hold_nth: int | None = None
        self._fetches = 0
        backend = git_http_backend()
        server_self = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:  # quiet
                pass

            def _serve(self) -> None:
                server_self.requests.append(self.path)
                if server_self.credentials is not None:
                    expected = "Basic " + base64.b64encode(":".join(server_self.credentials).encode()).decode()
                    sent = self.headers.get("Authorization")
                    if sent != expected and sent not in server_self.authorizations:
                        self.send_response(401)
                        self.send_header("WWW-Authenticate", 'Basic realm="git"')
                        self.send_header("Content-Length", "0")
                        self.end_headers()
                        return
                path, _, query = self.path.partition("?")
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                server_self._maybe_hold(body, self.headers.get("Content-Encoding", ""))
                env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "GIT_PROJECT_ROOT": str(server_self.root),
                       "GIT_HTTP_EXPORT_ALL": "1", "REQUEST_METHOD": self.command, "PATH_INFO": path,
                       "QUERY_STRING": query, "CONTENT_TYPE": self.headers.get("Content-Type", ""),
                       "CONTENT_LENGTH": str(len(body)), "REMOTE_ADDR": self.client_address[0],
                       "GIT_PROTOCOL": self.headers.get("Git-Protocol", ""), "SERVER_PROTOCOL": "HTTP/1.1",
                       "HTTP_CONTENT_ENCODING": self.headers.get("Content-Encoding", "")}
                done = subprocess.run([backend], input=body, capture_output=True, env=env)
                head, _, payload = done.stdout.partition(b"\r\n\r\n")
                status = 200
                headers = []
                for line in head.decode("latin-1").split("\r\n"):
                    name, _, value = line.partition(":")
                    if name.lower() == "status":
                        status = int(value.strip().split()[0])
                    elif name:
                        headers.append((name, value.strip()))
                self.send_response(status)
                for name, value in headers:
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            do_GET = _serve
            do_POST = _serve

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self._server.server_address[1]
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def hold(self, nth: int) -> None:
        """Hold the ``nth`` (1-based) pack download (a ``git clone``'s fetch, not ``ls-remote``) until
        :meth:`release`; :attr:`held` is set when it arrives."""
        self._hold_nth, self._fetches = nth, 0
        self.held.clear()
        self._release.clear()

    def release(self) -> None:
        self._hold_nth = None
        self._release.set()

    def _maybe_hold(self, body: bytes, encoding: str) -> None:
        if self._hold_nth is None:
            return
        import gzip

        text = gzip.decompress(body) if encoding == "gzip" and body else body
        if b"command=fetch" not in text and b"want " not in text:
            return
        self._fetches += 1
        if self._fetches == self._hold_nth:
            self.held.set()
            self._release.wait(120)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def repo_url(self, name: str) -> str:
        return f"{self.url}/{name}.git"

    def create_repo(self, name: str) -> GitRepo:
        return GitRepo(self.root, name)

    def __enter__(self) -> GitHttpServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.release()
        self._server.shutdown()
        self._server.server_close()


#: Where Debian (package ``openssh-server``) installs the ssh daemon.
SSHD = "/usr/sbin/sshd"


def _keygen(path: Path, comment: str) -> str:
    """A new ed25519 key pair at ``path`` (and ``path.pub``); returns the public key line."""
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", comment, "-f", str(path)], check=True)
    return path.with_suffix(".pub").read_text().strip()


class GitSshServer:
    """Serve the bare repositories under ``root`` over ssh: a real OpenSSH ``sshd`` on 127.0.0.1, as the
    current user, accepting only the deploy key it generates (``client_key``) for git.

    ``repo_url(name)`` is the ``ssh://`` URL of a repository, ``known_hosts`` the server's host key line
    as ``ssh-keyscan -p PORT 127.0.0.1`` prints it.  Needs ``openssh-server`` (``/usr/sbin/sshd``).
    """

    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        self._dir = Path(tempfile.mkdtemp(prefix="tfr-sshd-"))
        host_pub = _keygen(self._dir / "host", "tfr-test-host")
        client_pub = _keygen(self._dir / "client", "tfr-test-deploy-key")
        #: The deploy key's private half, OpenSSH format.
        self.client_key = (self._dir / "client").read_text()
        (self._dir / "authorized_keys").write_text(f"restrict {client_pub}\n")
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            self.port = probe.getsockname()[1]
        self.user = pwd.getpwuid(os.geteuid()).pw_name
        host_type, host_key = host_pub.split()[:2]
        self.known_hosts = f"[127.0.0.1]:{self.port} {host_type} {host_key}"
        (self._dir / "sshd_config").write_text("\n".join([
            f"Port {self.port}", "ListenAddress 127.0.0.1", f"HostKey {self._dir / 'host'}",
            f"AuthorizedKeysFile {self._dir / 'authorized_keys'}", f"PidFile {self._dir / 'sshd.pid'}",
            "StrictModes no", "PubkeyAuthentication yes", "PasswordAuthentication no",
            "KbdInteractiveAuthentication no", "UsePAM no", "PermitRootLogin prohibit-password",
            f"AllowUsers {self.user}", "LogLevel ERROR", ""]))
        self._proc: subprocess.Popen[bytes] | None = None

    def repo_url(self, name: str) -> str:
        return f"ssh://{self.user}@127.0.0.1:{self.port}{self.root}/{name}.git"

    def create_repo(self, name: str) -> GitRepo:
        return GitRepo(self.root, name)

    def __enter__(self) -> GitSshServer:
        if os.geteuid() == 0:
            os.makedirs("/run/sshd", mode=0o755, exist_ok=True)  # sshd's privilege separation directory
        self._proc = subprocess.Popen([SSHD, "-D", "-e", "-f", str(self._dir / "sshd_config")],
                                      stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                raise RuntimeError(f"sshd exited: {self._proc.stderr.read().decode() if self._proc.stderr else ''}")
            with socket.socket() as s:
                if s.connect_ex(("127.0.0.1", self.port)) == 0:
                    return self
            time.sleep(0.05)
        self.__exit__()
        raise RuntimeError("sshd did not start listening within 15 s")

    def __exit__(self, *exc: Any) -> None:
        if self._proc is not None and self._proc.poll() is None:
            self._proc.terminate()
            self._proc.wait(10)
        shutil.rmtree(self._dir, ignore_errors=True)
