"""The Terraform protocols, the file route and the REST API, registered as any plugin would."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from tfregistry import hookimpl

if TYPE_CHECKING:
    from flask import Flask
    from flask_smorest import Api

    from tfregistry.registry import Registry


@hookimpl
def tfr_register_blueprints(registry: Registry, app: Flask, api: Api) -> None:
    from tfregistry.api import identity as api_identity
    from tfregistry.api import jobs as api_jobs
    from tfregistry.api import mirrors as api_mirrors
    from tfregistry.api import modules as api_modules
    from tfregistry.api import plugins as api_plugins
    from tfregistry.api import providers as api_providers
    from tfregistry.api import scm as api_scm
    from tfregistry.protocol import discovery, files, health, login, modules, providers

    app.register_blueprint(health.bp)
    app.register_blueprint(discovery.bp)
    app.register_blueprint(modules.bp)
    app.register_blueprint(providers.bp)
    app.register_blueprint(providers.pull_bp)
    app.register_blueprint(files.bp)
    login.configure_sessions(app)
    login.build_authorization_server(app)
    app.register_blueprint(login.bp)
    api.register_blueprint(api_modules.blp)
    api.register_blueprint(api_providers.blp)
    api.register_blueprint(api_providers.keys_blp)
    api.register_blueprint(api_plugins.blp)
    api.register_blueprint(api_jobs.blp)
    api.register_blueprint(api_mirrors.blp)
    api.register_blueprint(api_scm.blp)
    api.register_blueprint(api_identity.blp)
    from tfregistry.api import trusted_publishing as api_trusted_publishing

    api.register_blueprint(api_trusted_publishing.blp)
    from tfregistry.api import notifications as api_notifications

    api.register_blueprint(api_notifications.blp)
    from tfregistry.ratelimit import configure_limits

    configure_limits(app, registry, login=[login.bp], uploads=[api_modules.blp, api_providers.blp])


@hookimpl
def tfr_webui_module_tabs(registry: Registry, module_version: Any) -> list[dict[str, Any]] | None:
    """A "Source" tab on versions published from source control: repository, commit, tag, trigger."""
    from tfregistry.services import modules as module_svc
    from tfregistry.services import scm

    with registry.db.session() as session:
        mv = module_svc.find_module(session, module_version.namespace, module_version.name, module_version.system)
        version = module_svc.version_of(mv, module_version.version) if mv is not None else None
        provenance = scm.provenance_of(session, version.id) if version is not None else None
        if provenance is None:
            return None
        data = scm.provenance_json(provenance)
    return [{"id": "source", "label": "Source", "render": lambda: scm.provenance_html(data)}]
