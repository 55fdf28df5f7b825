"""Schemathesis over the whole OpenAPI document (``/api/openapi.json``), with every check, as a registry
administrator, as a member of an organization with the publisher role and anonymously, on SQLite and
PostgreSQL (the ``app_factory`` fixture).

The examples per operation are bounded and the seed fixed (``derandomize``), so the suite stays within a few
minutes on two cores; ``tox -e fuzz`` runs the same tests with ``TFREGISTRY_FUZZ_EXAMPLES`` raised.  Each test
drives every operation in process through the WSGI app (no sockets), positive and negative examples, then the
stateful phase over the links schemathesis infers.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode
from sqlalchemy import select

import tfregistry_storage_local.plugin as local_storage_plugin
from tests.conftest import _truncate_postgres, new_token
from tfregistry.app import create_app
from tfregistry.models import ApiToken
from tfregistry.services import identity as identity_svc
from tfregistry.services import tokens as token_svc
from tfregistry.services.audit import CLI_ACTOR

#: 400 is the registry refusing content no schema can describe (archive and package bytes, key material,
#: version constraints, rules that depend on the caller, such as personal tokens needing a user), declared
#: on every operation that takes input.  Schema-valid requests must never get 422.
CHECKS = {"positive_data_acceptance": {"expected-statuses": ["2xx", "400", "401", "403", "404", "409", "429"]}}
EXAMPLES = int(os.environ.get("TFREGISTRY_FUZZ_EXAMPLES", "4"))
ROLES = ("admin", "member", "anonymous")


def fuzz_settings(examples: int) -> settings:
    return settings(max_examples=examples, derandomize=True, deadline=None, database=None, print_blob=True,
                    phases=[Phase.explicit, Phase.generate], suppress_health_check=list(HealthCheck))


def member_token(app: Any) -> str:
    """A personal token of a user who holds the publisher role in the ``default`` organization."""
    registry = app.extensions["tfregistry"]
    with registry.db.session() as session:
        user = identity_svc.create_user(session, CLI_ACTOR, "member@example.com", "member")
        identity_svc.set_membership(session, CLI_ACTOR, user, identity_svc.get_organization(session, "default"),
                                    identity_svc.get_role(session, "publisher"))
        _, secret = token_svc.create_token(session, CLI_ACTOR, name="member", kind="personal", user=user,
                                           scopes=["modules:read", "modules:write", "providers:read",
                                                   "providers:write"])
        session.commit()
    return secret


#: Generous rate limits (the checks send many bad tokens on purpose); jobs not retried (no timers).
FUZZ_SETTINGS = {"limits.auth_failures": "100000/minute", "limits.uploads": "100000/minute", "jobs.retries": 0}


@pytest.fixture
def fuzz_app(app_factory: Callable[..., Any]) -> Any:
    """An app with generous rate limits: the checks send many bad tokens on purpose."""
    return app_factory(FUZZ_SETTINGS)


def load_schema(role: str, app: Any) -> Any:
    """The document, with the role's token as the ``bearer`` scheme's credentials: schemathesis sends it
    where the document asks for it and leaves it out or spoils it to check that authentication is enforced."""
    config: dict[str, Any] = {"checks": CHECKS}
    if role != "anonymous":
        token = new_token(app, "admin", name="admin") if role == "admin" else member_token(app)
        config["auth"] = {"openapi": {"bearer": {"bearer": token}}}
    return schemathesis.openapi.from_wsgi("/api/openapi.json", app, config=schemathesis.Config.from_dict(config))


def run_operation(operation: Any, mode: GenerationMode, examples: int) -> None:
    @fuzz_settings(examples)
    @given(case=operation.as_strategy(generation_mode=mode))
    def check(case: Any) -> None:
        case.call_and_validate()

    check()


@pytest.mark.parametrize("role", ROLES)
def test_every_operation(fuzz_app: Any, role: str) -> None:
    """Positive and negative examples of every operation: no 5xx, every answer as the document declares."""
    schema = load_schema(role, fuzz_app)
    failures: list[str] = []
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) > 50
    for operation in operations:
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
            try:
                run_operation(operation, mode, EXAMPLES)
            except Unsatisfiable:  # no negative example exists (free-form string path parameters only)
                assert mode is GenerationMode.NEGATIVE, operation.label
            except (Exception, BaseExceptionGroup) as exc:  # collect every failure, then report them all
                failures.append(f"{operation.label} ({mode.value}): {exc}")
    assert not failures, f"{len(failures)} failing operation(s) as {role}:\n" + "\n\n".join(failures)


class FreshSite:
    """A WSGI app that is a new registry on an empty database for every stateful scenario.

    Hypothesis replays the beginning of earlier scenarios while it generates new ones and requires the
    replay to behave as before; resources left by an earlier scenario (or a job still running) would
    change which calls are possible.  So each scenario starts from the same state: a fresh SQLite copy
    of the migrated template, or the PostgreSQL test database emptied (ids restart at 1), a new app,
    and the role's token under the same secret.
    """

    SECRET = "tfr_" + "F" * 43

    def __init__(self, request: pytest.FixtureRequest, database_url: str, role: str, tmp_path: Path) -> None:
        self.request, self.database_url, self.role, self.tmp_path = request, database_url, role, tmp_path
        self.app: Any = None
        self.count = 0

    def reset(self) -> None:
        self.close()
        self.count += 1
        if self.database_url.startswith("sqlite"):
            path = self.tmp_path / f"scenario-{self.count}.db"
            shutil.copy(self.request.getfixturevalue("sqlite_template"), path)
            url = f"sqlite:///{path}"
        else:
            _truncate_postgres(self.database_url)
            url = self.database_url
        self.app = create_app({**FUZZ_SETTINGS, "database_url": url, "jobs.scheduler_in_process": False,
                               "data_dir": str(self.tmp_path / f"data-{self.count}")},
                              environ={}, load_entrypoints=False, plugins=(local_storage_plugin,))
        if self.role != "anonymous":
            secret = new_token(self.app, "admin", name="admin") if self.role == "admin" else member_token(self.app)
            with self.app.extensions["tfregistry"].db.session() as session:
                token = session.scalar(select(ApiToken).where(ApiToken.digest == token_svc.digest(secret)))
                token.digest = token_svc.digest(self.SECRET)
                session.commit()

    def close(self) -> None:
        if self.app is not None:
            self.app.extensions["tfregistry"].close()
            self.app = None

    def __call__(self, environ: dict[str, Any], start_response: Any) -> Any:
        return self.app(environ, start_response)


@pytest.mark.parametrize("role", ROLES)
def test_stateful(request: pytest.FixtureRequest, database_url: str, tmp_path: Path, role: str) -> None:
    """Sequences of calls linked through the values earlier answers return (create, then read/patch/delete),
    each scenario on a fresh registry (:class:`FreshSite`), its jobs awaited after every call."""
    site = FreshSite(request, database_url, role, tmp_path)
    site.reset()
    config: dict[str, Any] = {"checks": CHECKS}
    if role != "anonymous":
        config["auth"] = {"openapi": {"bearer": {"bearer": FreshSite.SECRET}}}
    schema = schemathesis.openapi.from_wsgi("/api/openapi.json", site, config=schemathesis.Config.from_dict(config))

    class Workflow(schema.as_state_machine()):  # type: ignore[misc]
        def setup(self) -> None:
            site.reset()

        def after_call(self, response: Any, case: Any) -> None:
            site.app.extensions["tfregistry"].jobs.wait_idle()

    try:
        Workflow.run(settings=settings(max_examples=EXAMPLES * 5, derandomize=True, deadline=None, database=None,
                                       stateful_step_count=6, suppress_health_check=list(HealthCheck)))
    finally:
        site.close()
