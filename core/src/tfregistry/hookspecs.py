"""Hook specifications: the contract between the core and its plugins.

Every hook is named ``tfr_<verb>...`` and is called with keyword arguments only.
An implementation may accept any subset of the documented arguments, so new
arguments can be added without breaking plugins.  Implement a hook in a module
or class with :data:`tfregistry.hookimpl`, and expose that module through an
entry point of group ``tfregistry`` named after your distribution::

    [project.entry-points.tfregistry]
    tfregistry-storage-foo = "tfregistry_storage_foo.plugin"

``docs/hooks.md`` is the narrative reference; this module is the authority.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pluggy

if TYPE_CHECKING:
    import click
    from flask import Flask
    from flask_smorest import Api

    from tfregistry.auth import Identity, Resource
    from tfregistry.interfaces import Event, RequestContext
    from tfregistry.plugins import BackendRegister
    from tfregistry.registry import ModuleVersionRef, ProviderVersionRef, Registry
    from tfregistry.settings import SettingsDeclarations

hookspec = pluggy.HookspecMarker("tfregistry")

# --- Lifecycle -----------------------------------------------------------------


@hookspec
def tfr_add_settings(settings: SettingsDeclarations) -> None:
    """Declare the configuration keys a plugin reads.

    Call ``settings.add(key, type, default=..., secret=..., help=...)`` once per key.
    Keys are dotted (``storage.s3.bucket``); they are read from the TOML file and
    from ``TFR_`` environment variables (``TFR_STORAGE__S3__BUCKET``), validated
    at start-up, and listed (secrets masked) by ``tfr config show``.  Backend
    plugins put their keys under ``storage.<name>.``, other plugins under
    ``plugins.<distribution-name>.``.

    :param settings: the declaration collector.
    """


@hookspec(historic=True)
def tfr_configure(registry: Registry) -> None:
    """One-time set-up after settings are validated and the storage backend exists.

    Historic: a plugin registered later (in tests, say) is still called.  Create
    clients here; raise :class:`tfregistry.StartupError` to stop start-up with a
    message the operator can act on.

    :param registry: the application registry (settings, storage, database, hooks).
    """


@hookspec
def tfr_register_blueprints(registry: Registry, app: Flask, api: Api) -> None:
    """Add HTTP routes.

    Register plain Flask blueprints with ``app.register_blueprint`` (protocol-style
    endpoints) or flask-smorest blueprints with ``api.register_blueprint`` (REST API
    under ``/api/v1``, documented in the OpenAPI document).  Prefix a plugin's own
    routes with ``/-/<plugin>/`` or ``/api/v1/<plugin>/`` to avoid collisions.

    :param registry: the application registry.
    :param app: the Flask application.
    :param api: the flask-smorest :class:`~flask_smorest.Api`.
    """


@hookspec
def tfr_register_cli_commands(cli: click.Group) -> None:
    """Add sub-commands to the ``tfr`` command line.

    ``cli.add_command(my_click_command)``.  A command that needs settings, the
    database or storage builds them with :func:`tfregistry.app.bootstrap`; one
    that needs the whole application calls :func:`tfregistry.app.create_app`.

    :param cli: the ``tfr`` click group.
    """


# --- Storage -------------------------------------------------------------------


@hookspec
def tfr_register_storage_backends(register: BackendRegister) -> None:
    """Offer storage backend classes.

    ``register.add(name, factory, description=...)`` where ``factory(settings)``
    returns a :class:`tfregistry.interfaces.StorageBackend`.  Exactly one backend
    is active per site, chosen by the ``storage.backend`` setting; a name offered
    twice stops start-up.

    :param register: the backend collector.
    """


# --- Authentication and authorisation ---------------------------------------------


@hookspec
def tfr_register_auth_providers(register: BackendRegister) -> None:
    """Offer interactive sign-in methods (OpenID Connect, Entra ID...).

    ``register.add(name, factory, description=...)`` where ``factory(settings)`` returns a
    :class:`tfregistry.interfaces.AuthProvider`.  A provider is active when the site names it in
    ``auth.providers``; only then is the factory called, and it should raise
    :class:`tfregistry.StartupError` naming any missing setting.

    :param register: the provider collector.
    """


@hookspec(firstresult=True)
def tfr_authenticate(registry: Registry, request: Any, session: Any) -> Identity | None:
    """Identify the caller of an HTTP request.

    Stops at the first non-None result.  Return an :class:`tfregistry.auth.Identity`, ``None``
    when the request carries no credentials this plugin understands, or raise
    :class:`tfregistry.auth.Unauthenticated` when it carries credentials that are not valid
    (never downgrade those to anonymous).  The built-in implementations handle
    ``Authorization: Bearer`` registry tokens and browser sessions.

    :param registry: the application registry.
    :param request: the Flask request; ``request.remote_addr`` is the client address after
        trusted-proxy handling (``proxy.trusted``), ``flask.g.request_id`` the request id.
    :param session: the request's SQLAlchemy session, for lookups (commit only what authentication
        itself records, such as a last-used time).
    """


@hookspec
def tfr_permission_allowed(
    identity: Identity, action: str, resource: Resource, context: RequestContext | None
) -> bool | None:
    """Veto a permission the core's role and scope check has already granted.

    Called only when the core would allow ``action``; return ``False`` to refuse it (the caller
    gets 403, or 404 where the resource must stay invisible), ``True`` or ``None`` to agree.
    Any ``False`` wins.  Use it for site policy (working hours, IP ranges, a change freeze);
    it cannot grant what roles and scopes do not.  Take only the arguments you use: an
    implementation written before ``context`` existed keeps working.

    :param identity: the caller (user, organization, token, scopes).
    :param action: a scope name such as ``modules:write`` or ``mirrors:manage``.
    :param resource: the organization and namespace acted on (either may be ``None``).
    :param context: the HTTP request being served (:class:`tfregistry.interfaces.RequestContext`:
        client address after trusted-proxy handling, request id, method, path), or ``None`` when
        the check is made outside a request (a ``tfr`` command, a background job).  A policy on
        addresses should decide what ``None`` means for it.  Since plugin API 1.0.
    """


# --- Protocol extensions ---------------------------------------------------------


@hookspec
def tfr_service_discovery(registry: Registry) -> dict[str, Any] | None:
    """Return a fragment of ``/.well-known/terraform.json``.

    The fragments of all plugins are merged; two plugins claiming the same service
    id (``modules.v1``, ``login.v1``...) stop start-up.  Service URLs should be
    relative to the host (``/v1/modules/``) and end with ``/``.

    :param registry: the application registry.
    :return: a dict of service id to URL (or object, for ``login.v1``), or ``None``.
    """


@hookspec(firstresult=True)
def tfr_module_download_location(registry: Registry, module_version: ModuleVersionRef) -> str | None:
    """Choose the URL Terraform downloads a module archive from (``X-Terraform-Get``).

    Stops at the first non-None result.  The built-in implementation (``trylast``)
    returns the storage backend's presigned URL, or else a short-lived HMAC-signed
    URL to the core's ``/v1/files/`` route.  Terraform sends no credentials to this
    URL, and its *path* must end in an archive extension (``.tar.gz``).

    :param registry: the application registry.
    :param module_version: the version being downloaded (address, version, storage key).
    :return: an absolute or host-relative URL, or ``None`` to defer.
    """


# --- Web UI (called by tfregistry-webui when it is installed) ---------------------------


@hookspec
def tfr_webui_nav_entries(registry: Registry, identity: Identity) -> list[dict[str, str]] | None:
    """Add links to the web UI's main navigation (after Modules and Providers).

    Called for every page the web UI renders.  Return a list of ``{"label": ..., "url": ...}``
    (``url`` host-relative, such as ``/-/myplugin/``), or ``None``/``[]`` for nothing; the labels
    are escaped.  Use ``identity`` to show an entry only to callers who may use it (an
    administration page to administrators, say): the target view must still check permissions.

    :param registry: the application registry.
    :param identity: the caller (:class:`tfregistry.auth.Identity`; ``identity.anonymous`` when
        nobody is signed in).

    Since plugin API 1.1.
    """


@hookspec
def tfr_webui_module_tabs(
    registry: Registry, module_version: ModuleVersionRef, identity: Identity
) -> list[dict[str, Any]] | None:
    """Add tabs to a module version's page (the SCM plugins add "Source", say).

    Return a list of ``{"id": "source", "label": "Source", "render": callable}``.  ``id`` (lower
    case letters, digits and ``-``; not one of the built-in tabs) gives the tab its own URL,
    ``/modules/<ns>/<name>/<system>/<version>/<id>``.  ``render()`` is called with no arguments
    only when that tab is shown and returns its body as HTML: a :class:`markupsafe.Markup`,
    typically from the plugin's own Jinja template (``flask.render_template``); a plain ``str``
    is escaped, never trusted.  Pages carry a Content-Security-Policy without inline scripts or
    styles, so the HTML may not use ``<script>`` or ``style=``.  The web UI has already checked
    that the caller may read the module; check anything more the tab shows.

    :param registry: the application registry.
    :param module_version: the version shown (:class:`tfregistry.registry.ModuleVersionRef`).
    :param identity: the caller.

    Since plugin API 1.1.
    """


@hookspec
def tfr_webui_provider_tabs(
    registry: Registry, provider_version: ProviderVersionRef, identity: Identity
) -> list[dict[str, Any]] | None:
    """Add tabs to a provider version's page; the same contract as :func:`tfr_webui_module_tabs`.

    A tab's URL is ``/providers/<ns>/<type>/<version>/<id>``.

    :param registry: the application registry.
    :param provider_version: the version shown (:class:`tfregistry.registry.ProviderVersionRef`).
    :param identity: the caller.

    Since plugin API 1.1.
    """


# --- Observability -----------------------------------------------------------------


@hookspec
def tfr_observers(registry: Registry) -> Any:
    """Offer an observer of the core's instrumentation points (metrics, say).

    Called once per process, when the application (or ``tfr worker``) builds its registry;
    return an object with a method ``observe(name: str, value: float, labels: dict[str, str])``,
    or ``None``.  The core then calls ``observe`` directly at each point, with no hook call in
    between, so it must be quick, thread-safe and must not raise (an exception is logged and
    ignored).  ``name`` is one of :data:`tfregistry.telemetry.OBSERVATIONS`, which gives what
    ``value`` measures and the label names; labels are bounded (route templates, namespaces,
    never paths, module names or tokens).  Observations made by background jobs arrive in the
    process that runs them.

    :param registry: the application registry.
    :return: an observer, or ``None``.

    Since plugin API 1.2.
    """


# --- Source control (SCM publishing) -------------------------------------------------


@hookspec
def tfr_register_scm_providers(register: BackendRegister) -> None:
    """Offer source-control systems modules can be published from (GitHub, GitLab, plain git...).

    ``register.add(name, factory, description=...)`` where ``factory(settings)`` returns a
    :class:`tfregistry.interfaces.ScmProvider`.  Every offered provider is built at start-up; an
    organization uses one by creating a connection of that kind.  A name offered twice stops
    start-up.  The core owns connections (secrets encrypted at rest, OAuth refresh), links,
    webhook endpoints, delivery de-duplication and the publish job; the provider lists
    repositories and tags, fetches a commit's tree, manages webhooks and verifies and reads
    deliveries.

    :param register: the provider collector.

    Since plugin API 1.2.
    """


# --- Events and notifications ----------------------------------------------------------


@hookspec
def tfr_register_notifiers(register: BackendRegister) -> None:
    """Offer notification channels that subscriptions can name as their target.

    ``register.add(name, factory, description=...)`` where ``factory(settings)`` returns a
    :class:`tfregistry.interfaces.Notifier`.  Every offered notifier is built at start-up; a name offered
    twice stops start-up.  The core delivers from background jobs on the ``notify`` queue, with retries.

    :param register: the notifier collector.

    Since plugin API 1.2.
    """


@hookspec
def tfr_event(registry: Registry, event: Event) -> None:
    """Listen to every event the registry raises (see ``docs/events.md`` for the vocabulary).

    Called after the change the event describes has been committed, in the process that made it (a
    web request or a job); keep it quick and do not raise (an exception is logged and ignored).  To
    send something slow, queue a job.  Subscriptions and notifiers need no listener: the core queues
    their deliveries itself.

    :param registry: the application registry.
    :param event: the :class:`tfregistry.interfaces.Event` (``type``, ``organization``, ``namespace``,
        ``actor``, ``time``, ``request_id``, ``data``).

    Since plugin API 1.2.
    """
