"""``/health`` (the process answers) and ``/ready`` (database, Redis and storage reachable)."""

from __future__ import annotations

from typing import Any

from flask import Blueprint, jsonify
from sqlalchemy import text

from tfregistry.jobs import RQQueue
from tfregistry.web import current_registry

bp = Blueprint("tfr_health", __name__)


@bp.get("/health")
def health():
    return jsonify(status="ok")


def _check(name: str, probe: Any) -> tuple[str, str]:
    try:
        probe()
    except Exception as exc:
        return name, f"failing: {str(exc).splitlines()[0][:200] if str(exc) else type(exc).__name__}"
    return name, "ok"


def readiness_checks(registry: Any) -> dict[str, str]:
    """Each backing service (database, storage, Redis when jobs use it): ``"ok"`` or ``"failing: <why>"``.
    What ``/ready`` answers, and what the web UI's dashboard shows."""

    def database() -> None:
        with registry.db.engine.connect() as conn:
            conn.execute(text("SELECT 1"))

    checks = [_check("database", database), _check("storage", lambda: list(registry.storage.list("_tfr_probe/")))]
    if isinstance(registry.jobs, RQQueue):
        checks.append(_check("redis", registry.jobs.ping))
    return dict(checks)


@bp.get("/ready")
def ready():
    result = readiness_checks(current_registry())
    healthy = all(v == "ok" for v in result.values())
    response = jsonify(status="ready" if healthy else "not ready", checks=result)
    response.status_code = 200 if healthy else 503
    return response
