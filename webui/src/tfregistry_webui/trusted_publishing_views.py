"""A namespace's trusted publishers (keyless publishing from CI): list, add, remove.

Each page calls what ``/api/v1/namespaces/<ns>/trusted-publishers`` calls, after the same check
(``tokens:manage`` in the namespace's organization, :func:`tfregistry.api.trusted_publishing.managed_namespace`),
so refusals and audit entries are the API's.
"""

from __future__ import annotations

from typing import Any

from flask import flash, get_flashed_messages, redirect, request, url_for
from sqlalchemy.orm import Session

from tfregistry.api.trusted_publishing import managed_namespace
from tfregistry.services import ServiceError
from tfregistry.services import trusted_publishing as svc
from tfregistry.web import current_registry
from tfregistry_webui.ui import bp, render_page

FIELDS = ("platform", "issuer", "conditions", "packages", "description")
PLATFORMS = {name: platform.label for name, platform in svc.PLATFORMS.items()}


def _page(session: Session, ns: str, status: int = 200, *, errors: dict[str, str] | None = None,
          values: dict[str, str] | None = None) -> Any:
    namespace, _ = managed_namespace(session, ns)
    return render_page("trusted_publishers.html", status, page_title=f"Trusted publishers of {ns}", ns=ns,
                       publishers=svc.list_publishers(session, namespace), platforms=PLATFORMS,
                       conditions={name: [(c.name, c.help) for c in p.conditions] for name, p in svc.PLATFORMS.items()},
                       errors=errors or {}, values={"platform": "github", **{f: "" for f in FIELDS[1:]},
                                                    **(values or {})},
                       notices=get_flashed_messages())


def _lines(text: str) -> list[str]:
    return [line.strip() for line in text.replace(",", "\n").splitlines() if line.strip()]


def _conditions(text: str) -> dict[str, str]:
    result = {}
    for line in text.splitlines():
        if not line.strip():
            continue
        key, sep, value = line.partition("=")
        if not sep or not key.strip():
            raise ServiceError(f"condition {line.strip()!r}: write one CLAIM=PATTERN per line")
        result[key.strip()] = value.strip()
    return result


@bp.get("/namespaces/<ns>/trusted-publishers")
def trusted_publishers(ns: str) -> Any:
    """The namespace's trusted publishers and the form to add one."""
    with current_registry().db.session() as session:
        return _page(session, ns)


@bp.post("/namespaces/<ns>/trusted-publishers")
def trusted_publisher_add(ns: str) -> Any:
    """Register a trusted publisher (the API's checks and audit entry)."""
    values = {f: request.form.get(f, "").strip() for f in FIELDS}
    with current_registry().db.session() as session:
        namespace, actor = managed_namespace(session, ns)
        try:
            conditions = _conditions(values["conditions"])
        except ServiceError as exc:
            return _page(session, ns, 400, errors={"conditions": exc.message}, values=values)
        try:
            publisher = svc.add_publisher(session, actor, namespace, platform=values["platform"],
                                          conditions=conditions, packages=_lines(values["packages"]),
                                          issuer=values["issuer"] or None, description=values["description"])
        except ServiceError as exc:
            session.rollback()
            lowered = exc.message.lower()
            field = ("packages" if "package" in lowered else "issuer" if "issuer" in lowered
                     else "conditions" if "condition" in lowered or "claim" in lowered
                     else "platform" if "platform" in lowered else "form")
            return _page(session, ns, exc.status, errors={field: exc.message}, values=values)
        session.commit()
        flash(f"Trusted publisher {publisher.id} added: {publisher.platform} may publish "
              f"{', '.join(publisher.packages)} in {ns}.")
        return redirect(url_for("tfr_webui.trusted_publishers", ns=ns), 303)


@bp.route("/namespaces/<ns>/trusted-publishers/<int:publisher_id>/remove", methods=["GET", "POST"])
def trusted_publisher_remove(ns: str, publisher_id: int) -> Any:
    """Remove a trusted publisher after a confirmation page."""
    with current_registry().db.session() as session:
        namespace, actor = managed_namespace(session, ns)
        publisher = svc.get_publisher(session, namespace, publisher_id)
        if request.method == "GET":
            return render_page("trusted_publisher_remove.html", page_title=f"Remove trusted publisher {publisher_id}",
                               ns=ns, publisher=publisher)
        svc.remove_publisher(session, actor, publisher)
        session.commit()
        flash(f"Trusted publisher {publisher_id} removed.")
        return redirect(url_for("tfr_webui.trusted_publishers", ns=ns), 303)
