"""The web UI's foundation: the blueprint, templates, static files, security headers and error pages.

Every page goes through :func:`render_page`, which adds the layout's context (site name, navigation,
the signed-in user) and the security headers.  Views call the same services and permission checks
as the API and the protocols (:mod:`tfregistry.auth`, :mod:`tfregistry.services`).
"""

from __future__ import annotations

import hashlib
import logging
import re
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from flask import Blueprint, Flask, g, render_template, request, send_from_directory, url_for
from jinja2 import ChoiceLoader, FileSystemLoader, PrefixLoader
from markupsafe import Markup
from werkzeug.exceptions import HTTPException

from tfregistry import auth
from tfregistry.interfaces import StorageError
from tfregistry.services import ServiceError
from tfregistry.web import current_registry
from tfregistry_webui import __version__

if TYPE_CHECKING:
    from flask_smorest import Api

    from tfregistry.registry import Registry

log = logging.getLogger("tfregistry.webui")

PACKAGE_DIR = Path(__file__).resolve().parent
TEMPLATES_DIR = PACKAGE_DIR / "templates"
STATIC_DIR = PACKAGE_DIR / "static"
#: Paths the web UI never answers, not even with its 404 page: the protocols, the API, sign-in.
RESERVED_PREFIXES = ("/v1/", "/api/", "/auth/", "/oauth/", "/.well-known/", "/healthz", "/readyz", "/metrics")
#: A year: static URLs change whenever the files do (see :data:`STATIC_STAMP`).
STATIC_MAX_AGE = 365 * 24 * 3600

ERROR_TITLES = {
    400: "Bad request",
    401: "Sign-in required",
    403: "Not allowed",
    404: "Page not found",
    405: "Method not allowed",
    409: "Conflict",
    413: "Too large",
    500: "Something went wrong",
    503: "Temporarily unavailable",
}


def _static_stamp() -> str:
    """The package version plus a digest of the static files: a new value whenever an asset changes."""
    digest = hashlib.sha256()
    for path in sorted(STATIC_DIR.rglob("*")):
        if path.is_file():
            digest.update(path.relative_to(STATIC_DIR).as_posix().encode() + b"\0" + path.read_bytes())
    return f"{__version__}-{digest.hexdigest()[:10]}"


STATIC_STAMP = _static_stamp()

bp = Blueprint("tfr_webui", __name__)
# The package's templates, also reachable as "tfregistry_webui/<name>" so that an override in
# webui.templates_dir can extend the original it replaces.
bp.jinja_loader = ChoiceLoader([FileSystemLoader(TEMPLATES_DIR),  # type: ignore[method-assign,assignment]
                                PrefixLoader({"tfregistry_webui": FileSystemLoader(TEMPLATES_DIR)})])


# --- set-up --------------------------------------------------------------------------------------


def init_app(app: Flask, registry: Registry, api: Api) -> None:
    """Register the blueprint, the site's template overrides and the HTML error pages."""
    templates_dir = registry.settings["webui.templates_dir"]
    if templates_dir is not None:
        from tfregistry import StartupError

        if not Path(templates_dir).is_dir():
            raise StartupError(f"webui.templates_dir {str(templates_dir)!r} is not a directory")
        # The application's loader is asked before any blueprint's: the site's files win.
        app.jinja_loader = ChoiceLoader([FileSystemLoader(str(templates_dir)),  # type: ignore[method-assign]
                                         *([app.jinja_loader] if app.jinja_loader else [])])
    from tfregistry_webui import module_views, provider_views, views  # noqa: F401  (their routes join bp)

    app.register_blueprint(bp)

    def unmatched(error: HTTPException) -> Any:
        """A 404 or 405 for a URL no route matched: the HTML page for browsers outside the
        protocol and API prefixes.  Anything else is answered as without the web UI: by the
        blueprint's own handler for the exception's class if it has one, else the core's JSON."""
        if request.url_rule is None and wants_html():
            return error_page(error.code or 404)
        for name in request.blueprints:
            handlers = app.error_handler_spec[name][None]
            for cls in type(error).__mro__:
                if cls in handlers:
                    return handlers[cls](error)
        return api.handle_http_exception(error)

    app.register_error_handler(404, unmatched)
    app.register_error_handler(405, unmatched)


def wants_html() -> bool:
    """Whether the current request should get an HTML error page rather than the core's JSON."""
    path = request.path
    if path.startswith(RESERVED_PREFIXES) or path in ("/v1", "/api"):
        return False
    best = request.accept_mimetypes.best_match(["text/html", "application/json"])
    return best == "text/html" or not request.accept_mimetypes


# --- rendering -----------------------------------------------------------------------------------


def content_security_policy() -> str:
    """The pages' CSP: nothing inline, nothing from elsewhere (except the configured logo's origin)."""
    registry = current_registry()
    cached = registry.memo.get("webui_csp")
    if cached is None:
        img = "'self' data:"
        logo = registry.settings["webui.logo_url"]
        if logo and logo.startswith(("https://", "http://")):
            parts = urlsplit(logo)
            img += f" {parts.scheme}://{parts.netloc}"
        cached = (f"default-src 'self'; script-src 'self'; style-src 'self'; img-src {img}; object-src 'none'; "
                  "base-uri 'none'; frame-ancestors 'none'; form-action 'self'")
        registry.memo["webui_csp"] = cached
    return cached


def secure(response: Any) -> Any:
    """Add the security headers every web UI response carries."""
    headers = response.headers
    if response.mimetype == "text/html":
        headers["Content-Security-Policy"] = content_security_policy()
        headers.setdefault("Cache-Control", "no-cache")
        response.vary.update(("Cookie", "Authorization"))  # pages differ by who is asking
    headers["X-Content-Type-Options"] = "nosniff"
    headers["Referrer-Policy"] = "same-origin"
    headers["X-Frame-Options"] = "DENY"
    return response


bp.after_request(secure)


def layout_identity(*, careful: bool = False) -> auth.Identity:
    """The caller, for the header; anonymous when the credentials are not valid (and, with
    ``careful``, when authenticating fails in any way: error pages must render whatever broke)."""
    if "tfr_identity" in g:
        return g.tfr_identity
    try:
        with current_registry().db.session() as session:
            return auth.current_identity(session)
    except auth.Unauthenticated:
        return auth.ANONYMOUS
    except Exception:
        if not careful:
            raise
        log.debug("no identity for an error page", exc_info=True)
        return auth.ANONYMOUS


def display_name(identity: auth.Identity) -> str:
    """``user:ann@example.com`` → ``ann@example.com``; tokens keep their label."""
    return identity.name.removeprefix("user:")


def sign_in_url() -> str | None:
    """Where the header's "Sign in" link goes: the web UI's sign-in page when one is installed, else
    the core's sign-in choice when the site has a sign-in method; ``None`` when there is no way in."""
    here = request.full_path.rstrip("?") if request.method == "GET" else "/"
    if "tfr_webui.sign_in" in _endpoints():
        return url_for("tfr_webui.sign_in", next=here)
    if current_registry().auth_providers:
        return url_for("tfr_login.login_choice", next=here)
    return None


def _endpoints() -> set[str]:
    from flask import current_app

    return set(current_app.view_functions)


def static_url(filename: str) -> str:
    """A cache-busted URL of a file in the package's ``static/`` directory."""
    return url_for("tfr_webui.static_file", stamp=STATIC_STAMP, filename=filename)


def nav_entries(identity: auth.Identity, *, careful: bool = False) -> list[dict[str, str]]:
    """Modules, Providers, then what plugins add (``tfr_webui_nav_entries``; on an error page, a plugin
    that fails is left out rather than failing the page)."""
    entries = [{"label": "Modules", "url": url_for("tfr_webui.modules")},
               {"label": "Providers", "url": url_for("tfr_webui.providers")}]
    registry = current_registry()
    try:
        results = registry.hooks.tfr_webui_nav_entries(registry=registry, identity=identity)
    except Exception:
        if not careful:
            raise
        log.warning("a tfr_webui_nav_entries implementation failed on an error page", exc_info=True)
        results = []
    for result in results:
        for entry in result or ():
            if entry.get("label") and entry.get("url"):
                entries.append({"label": str(entry["label"]), "url": str(entry["url"])})
    path = request.path
    for entry in entries:
        entry["current"] = "page" if path == entry["url"] or path.startswith(entry["url"].rstrip("/") + "/") else ""
    return entries


def layout_context(*, careful: bool = False) -> dict[str, Any]:
    settings = current_registry().settings
    identity = layout_identity(careful=careful)
    theme = settings["webui.primary_color"]
    return {
        "site_name": settings["webui.site_name"],
        "logo_url": settings["webui.logo_url"] or static_url("logo.svg"),
        "theme_url": url_for("tfr_webui.theme", digest=_digest(theme)) if theme else None,
        "highlight_url": url_for("tfr_webui.highlight_css", stamp=STATIC_STAMP),
        "identity": identity,
        "signed_in": not identity.anonymous,
        "user_label": display_name(identity),
        "nav": nav_entries(identity, careful=careful),
        "sign_in_url": sign_in_url() if identity.anonymous else None,
        "static_url": static_url,
        "provider_origin": _provider_origin,
        "csrf_token": _csrf_token,
        "query": request.args.get("q", "") if request.endpoint == "tfr_webui.modules" else "",
    }


def _provider_origin(pv: Any) -> str:
    """How a provider version came here, as a badge says it: ``mirrored``, ``pulled through``,
    ``imported`` (or ``published``), from the provider service (``published_by``)."""
    from tfregistry.services.providers import origin

    return origin(pv).replace("-", " ")


def _csrf_token() -> str:
    from tfregistry.protocol.login import csrf_token

    return csrf_token()


def _digest(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:12]


def render_page(template: str, http_status: int = 200, *, careful: bool = False, **values: Any) -> Any:
    """Render ``template`` in the layout; the response carries the security headers."""
    from flask import make_response

    body = render_template(template, **layout_context(careful=careful), **values)
    return secure(make_response(body, http_status))


# --- static files and the generated theme ------------------------------------------------------


@bp.get("/-/static/<stamp>/<path:filename>")
def static_file(stamp: str, filename: str) -> Any:
    """The package's static files; cached for a year when asked for by the current stamp."""
    current = stamp == STATIC_STAMP
    response = send_from_directory(STATIC_DIR, filename, max_age=STATIC_MAX_AGE if current else 0)
    if current:
        response.headers["Cache-Control"] = f"public, max-age={STATIC_MAX_AGE}, immutable"
    return response


THEME_CSS = """:root {{ --accent: {color}; --accent-strong: {color}; }}
@media (prefers-color-scheme: dark) {{ :root {{ --accent: color-mix(in srgb, {color} 55%, white); }} }}
"""


@bp.get("/-/theme/<digest>.css")
def theme(digest: str) -> Any:
    """The site's colours (``webui.primary_color``), as a stylesheet: never inline (CSP)."""
    from flask import make_response

    color = current_registry().settings["webui.primary_color"] or "#2d5fd4"
    response = make_response(THEME_CSS.format(color=color))
    response.mimetype = "text/css"
    if digest == _digest(color):
        response.headers["Cache-Control"] = f"public, max-age={STATIC_MAX_AGE}, immutable"
    return response


@bp.get("/-/highlight/<stamp>.css")
def highlight_css(stamp: str) -> Any:
    """The stylesheet of highlighted code in READMEs, when the Markdown renderer provides one
    (``markdown.pygments_css()``); an empty stylesheet otherwise."""
    from flask import make_response

    from tfregistry_webui import markdown

    css = markdown.pygments_css() if hasattr(markdown, "pygments_css") else ""
    response = make_response(css)
    response.mimetype = "text/css"
    if stamp == STATIC_STAMP:
        response.headers["Cache-Control"] = f"public, max-age={STATIC_MAX_AGE}, immutable"
    return response


# --- error pages ---------------------------------------------------------------------------------


def error_page(status: int, message: str | None = None) -> Any:
    """An error page in the layout.  A 404 never says why (a hidden namespace reads exactly as a
    missing one); a 500 shows the request id to quote to an administrator."""
    if status == 404:
        message = None
    response = render_page("error.html", status, careful=True, status=status,
                           title=ERROR_TITLES.get(status, "Error"), message=message,
                           request_id=g.get("request_id") if status >= 500 else None)
    if status == 401:
        response.headers["WWW-Authenticate"] = 'Bearer realm="tfregistry"'
    return response


def _http_error(error: HTTPException) -> Any:
    code = error.code or 500
    if code >= 500:
        original = getattr(error, "original_exception", None)
        if original is not None:
            log.error("web UI error", exc_info=original)
        return error_page(500)
    return error_page(code, error.description if code not in (404, 405) else None)


def _service_error(error: ServiceError) -> Any:
    return error_page(error.status, error.message if error.status < 500 else None)


def _unauthenticated(error: auth.Unauthenticated) -> Any:
    return error_page(401, str(error))


def _denied(error: auth.PermissionDenied) -> Any:
    if isinstance(error, auth.Hidden):
        return error_page(404)
    return error_page(403, str(error))


def _storage_error(error: StorageError) -> Any:
    log.warning("storage fault on a web UI page: %s", error)
    return error_page(503, "The registry's storage is unavailable; try again later.")


def _database_error(error: Exception) -> Any:
    from tfregistry.db import is_unavailable

    if is_unavailable(error):
        log.warning("database unavailable on a web UI page: %s", error)
        return error_page(503, "The registry's database is unavailable; try again later.")
    log.error("database error on a web UI page", exc_info=error)
    return error_page(500)


def _register_error_pages() -> None:
    from sqlalchemy.exc import DBAPIError

    for code in (400, 403, 404, 405, 500):
        bp.register_error_handler(code, _http_error)
    bp.register_error_handler(ServiceError, _service_error)
    bp.register_error_handler(auth.Unauthenticated, _unauthenticated)
    bp.register_error_handler(auth.PermissionDenied, _denied)
    bp.register_error_handler(StorageError, _storage_error)
    bp.register_error_handler(DBAPIError, _database_error)


_register_error_pages()


#: A plugin tab's id: it becomes a URL segment.
PLUGIN_TAB_ID = re.compile(r"^[a-z][a-z0-9-]{0,39}$")


def plugin_tabs(results: list[Any], reserved: set[str]) -> list[dict[str, Any]]:
    """The tabs plugins returned (``tfr_webui_*_tabs``): well-formed ids not taken by a built-in tab or an
    earlier plugin, each with a callable ``render``; the rest are dropped (and logged)."""
    tabs: list[dict[str, Any]] = []
    for result in results:
        for tab in result or ():
            tab_id = str(tab.get("id", ""))
            if not PLUGIN_TAB_ID.match(tab_id) or tab_id in reserved or not callable(tab.get("render")) \
                    or tab_id in {t["id"] for t in tabs}:
                log.warning("ignoring a plugin tab with a bad or taken id, or no render(): %r", tab_id)
                continue
            tabs.append({"id": tab_id, "label": str(tab.get("label") or tab_id), "render": tab["render"]})
    return tabs


def is_version(text: str) -> bool:
    """Whether a URL segment is a version (else it names a tab)."""
    from tfregistry import semver

    try:
        semver.parse(text)
    except semver.InvalidVersion:
        return False
    return True


def registry_host() -> str:
    """The host people type in ``source``: from ``public_url``, else the request's host."""
    public = current_registry().settings["public_url"]
    if public:
        parts = urlsplit(public)
        return parts.netloc + parts.path.rstrip("/")
    return request.host


def markup_or_escape(value: Any) -> Markup:
    """A plugin tab's body: :class:`Markup` is trusted, anything else is escaped."""
    from markupsafe import escape

    return value if isinstance(value, Markup) else escape(str(value))
