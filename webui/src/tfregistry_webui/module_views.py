"""Module pages: a version's tabs, submodules, examples, compare, usage."""

from __future__ import annotations

from typing import Any

from tfregistry_webui.ui import bp


@bp.get("/modules/<ns>/<name>/<system>")
@bp.get("/modules/<ns>/<name>/<system>/<version>")
@bp.get("/modules/<ns>/<name>/<system>/<version>/<tab>")
def module_page(ns: str, name: str, system: str, version: str | None = None, tab: str | None = None) -> Any:
    """Placeholder until the module page lands."""
    from tfregistry.services import NotFound

    raise NotFound("not yet")
