"""Shared plumbing of the SCM vendors' fake REST APIs (``tfregistry_scm_*.testing``): a Flask app served on
127.0.0.1 in a thread, beside a :class:`~tfregistry.testing.git.GitHttpServer` holding the real repositories."""

from __future__ import annotations

import subprocess
import threading
from pathlib import Path
from typing import Any, Self

from flask import Flask
from werkzeug.serving import make_server

from tfregistry.testing.git import GitHttpServer, GitRepo


class FakeScmApi:
    """Base of a vendor fake: subclasses set their own attributes, call ``super().__init__`` and implement
    :meth:`_build` (the Flask app of the vendor's documented routes).  Use as a context manager.

    ``repos`` maps the vendor's repository key to its :class:`GitRepo`; ``hooks`` the live webhooks by id;
    ``calls`` records ``(method, path)`` of the API requests (the subclass's app appends to it).
    """

    def __init__(self, root: Path, *, git_credentials: tuple[str, str]) -> None:
        self.git = GitHttpServer(Path(root) / "git", credentials=git_credentials)
        self.repos: dict[str, GitRepo] = {}
        self.hooks: dict[Any, dict[str, Any]] = {}
        self.calls: list[tuple[str, str]] = []
        self._server = make_server("127.0.0.1", 0, self._build(), threaded=True)
        self.port = self._server.server_port
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def _build(self) -> Flask:
        raise NotImplementedError

    def __enter__(self) -> Self:
        self.git.__enter__()
        self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._server.shutdown()
        self.git.__exit__(*exc)

    def tag_refs(self, key: str) -> list[tuple[str, str, str | None]]:
        """``(name, object id, peeled commit or None for a lightweight tag)`` of every tag of repository
        ``key``, by name, read from the real repository."""
        out = subprocess.run(["git", "--git-dir", str(self.repos[key].bare), "for-each-ref", "--sort=refname",
                              "--format=%(refname:strip=2) %(objectname) %(*objectname)", "refs/tags"],
                             capture_output=True, text=True, check=True).stdout
        refs = []
        for line in out.splitlines():
            name, target, *peeled = line.split(" ")
            refs.append((name, target, peeled[0] if peeled and peeled[0] else None))
        return refs
