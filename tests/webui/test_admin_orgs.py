"""Administration pages through the Flask test client (SQLite and PostgreSQL): the dashboard, organizations
(create, edit, delete refused while it owns namespaces; members; namespaces; service tokens), users (search,
disable/enable, site-admin flag) and role templates; every change a POST with CSRF, with the API's audit entries;
a viewer and another organization's administrator get 403/404 and nothing changes.

The registry runs in multi tenancy: organizations ``blue`` and ``red``; ``ann`` administers blue, ``vic`` is a
viewer in blue, ``rob`` administers red, ``sam`` is a site administrator.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

import pytest
from sqlalchemy import select

from tests.webui.conftest import assert_page
from tests.webui.test_account import SECRET, form_csrf, personal_token, sign_in
from tfregistry.models import ApiToken, AuditEntry, Membership, Namespace, Organization, RoleTemplate, User
from tfregistry.services import identity as identity_svc
from tfregistry.services.audit import CLI_ACTOR


@dataclass
class Site:
    app: Any
    users: dict[str, int]

    def db(self) -> Any:
        return self.app.extensions["tfregistry"].db.session()

    def client(self, who: str | None) -> Any:
        """A test client signed in as ``who`` (through a personal token: a session of that user)."""
        client = self.app.test_client()
        if who is not None:
            assert sign_in(client, personal_token(self.app, self.users[who])).status_code == 303
        return client

    def audit(self, action: str) -> list[AuditEntry]:
        with self.db() as s:
            return list(s.scalars(select(AuditEntry).where(AuditEntry.action == action)))

    def role_of(self, who: str, org: str) -> str | None:
        with self.db() as s:
            member = s.scalar(select(Membership).join(Organization).where(
                Membership.user_id == self.users[who], Organization.name == org))
            return member.role.name if member else None


@pytest.fixture
def site(ui_factory) -> Site:
    app = ui_factory({"tenancy": "multi"})
    users = {}
    with app.extensions["tfregistry"].db.session() as s:
        blue = identity_svc.create_organization(s, CLI_ACTOR, "blue", "Blue team")
        red = identity_svc.create_organization(s, CLI_ACTOR, "red")
        for name, org, role in (("ann", blue, "admin"), ("vic", blue, "viewer"), ("rob", red, "admin"),
                                ("sam", None, None), ("pat", None, None)):
            user = identity_svc.create_user(s, CLI_ACTOR, f"{name}@example.com", name.title(), site_admin=name == "sam")
            if org is not None:
                identity_svc.set_membership(s, CLI_ACTOR, user, org, identity_svc.get_role(s, role))
            users[name] = user.id
        identity_svc.save_namespace(s, CLI_ACTOR, red, "red-apps", "private")
        s.commit()
    return Site(app, users)


def post(client: Any, path: str, data: dict[str, Any] | None = None, form_page: str | None = None) -> Any:
    """POST a form the way a browser does: with the CSRF token of the page that holds it."""
    token = form_csrf(client.get(form_page or "/admin").get_data(as_text=True))
    return client.post(path, data={"csrf_token": token, **(data or {})})


def field_error(html: str, field: str) -> str:
    found = re.search(rf'<p class="field-error" id="f-{re.escape(field)}-error">([^<]*)</p>', html)
    assert found, f"no error next to {field}"
    return found.group(1)


# --- layout and dashboard ---------------------------------------------------------------------------


def test_the_header_links_administration_only_for_administrators(site):
    assert ">Administration</a>" in assert_page(site.client("ann").get("/"))
    assert ">Administration</a>" not in assert_page(site.client("vic").get("/"))
    assert ">Administration</a>" not in assert_page(site.client(None).get("/"))


def test_the_sidebar_shows_only_usable_sections(site):
    html = assert_page(site.client("ann").get("/admin"))
    nav = re.search(r'<nav class="admin-nav".*?</nav>', html, re.S).group(0)
    assert 'href="/admin/organizations"' in nav and 'href="/admin/keys"' in nav and 'href="/admin/audit"' in nav
    assert 'href="/admin/users"' not in nav and 'href="/admin/system"' not in nav and 'href="/admin/jobs"' not in nav
    nav = re.search(r'<nav class="admin-nav".*?</nav>', assert_page(site.client("sam").get("/admin")), re.S).group(0)
    for path in ("/admin", "/admin/organizations", "/admin/users", "/admin/roles", "/admin/keys", "/admin/mirrors",
                 "/admin/jobs", "/admin/audit", "/admin/system"):
        assert f'href="{path}"' in nav
    assert '<a href="/admin" aria-current="page">Dashboard</a>' in nav


def test_dashboard_for_a_site_admin(site, publish):
    assert publish(namespace="red-apps").status_code == 201
    html = assert_page(site.client("sam").get("/admin"))
    assert re.search(r"<strong>1</strong> modules", html) and re.search(r"<strong>1</strong> module versions", html)
    assert "module downloads in the last 30 days" in html
    assert 'href="/modules/red-apps/network/aws/1.0.0"' in html  # recent publishes link to the version
    assert "Health" in html and "Database" in html and '<span class="badge ok">ok</span>' in html
    assert "No failed jobs." in html and 'href="/admin/jobs?status=failed"' not in html
    assert "Mirrors whose last run failed" in html


def test_dashboard_counts_only_what_the_caller_may_read(site, publish):
    assert publish(namespace="red-apps").status_code == 201
    html = assert_page(site.client("ann").get("/admin"))  # red's private module is not blue's
    assert re.search(r"<strong>0</strong> modules", html) and "red-apps" not in html
    assert "Health" not in html and "Failed jobs" not in html  # registry administrators only


def broken(registry: Any, what: str) -> None:
    """A job that always fails (for the dashboard's failed jobs)."""
    raise RuntimeError(f"broken on purpose: {what}")


def test_dashboard_shows_failed_jobs_failed_mirrors_and_expiring_keys(ui_factory):
    from datetime import timedelta

    from tfregistry.models import GpgKey, MirrorConfig, MirrorRun, utcnow

    app = ui_factory({"jobs.retries": 0, "jobs.backoff_seconds": 0})
    registry = app.extensions["tfregistry"]
    registry.jobs.enqueue("tests.webui.test_admin_orgs:broken", "nightly")
    registry.jobs.wait()
    with registry.db.session() as s:
        ns = identity_svc.save_namespace(s, CLI_ACTOR, identity_svc.default_organization(s), "acme", None)
        s.add(GpgKey(namespace_id=ns.id, fingerprint="AB" * 20, key_id="ABABABABABABABAB", ascii_armor="-",
                     expires_at=utcnow() + timedelta(days=3)))
        s.add(GpgKey(namespace_id=ns.id, fingerprint="CD" * 20, key_id="CDCDCDCDCDCDCDCD", ascii_armor="-",
                     expires_at=utcnow() + timedelta(days=300)))
        for upstream, status in (("bad.example", "failed"), ("good.example", "succeeded")):
            config = MirrorConfig(upstream_host=upstream, namespace="hashicorp", type="null")
            s.add(config)
            s.flush()
            s.add(MirrorRun(config_id=config.id, status=status, errors=["upstream unreachable"] if status != "succeeded"
                            else []))
        s.commit()
    from tests.conftest import new_token

    client = app.test_client()
    assert sign_in(client, new_token(app, "admin", name="site-admin")).status_code == 303
    html = assert_page(client.get("/admin"))
    jobs = html.split('id="jobs-heading"', 1)[1].split("</section>", 1)[0]
    assert "broken" in jobs and "broken on purpose: nightly" in jobs and 'href="/admin/jobs?status=failed"' in jobs
    mirrors = html.split('id="mirrors-heading"', 1)[1].split("</section>", 1)[0]
    assert "bad.example/hashicorp/null" in mirrors and "upstream unreachable" in mirrors
    assert "good.example" not in mirrors
    expiring = html.split('id="expiring-heading"', 1)[1].split("</section>", 1)[0]
    assert "acme · ABABABABABABABAB" in expiring and "CDCDCDCDCDCDCDCD" not in expiring


def test_dashboard_refuses_viewers_and_anonymous(site):
    html = assert_page(site.client("vic").get("/admin"), 403)
    assert "administers nothing" in html
    assert_page(site.client(None).get("/admin"), 401)


def test_dashboard_lists_tokens_expiring_within_the_notice_window(site):
    from datetime import timedelta

    from tfregistry.services import tokens as token_svc

    with site.db() as s:
        blue = identity_svc.get_organization(s, "blue")
        token_svc.create_token(s, CLI_ACTOR, name="ci-soon", scopes=["modules:read"], kind="service",
                               organization=blue, expires_in=timedelta(days=2))
        token_svc.create_token(s, CLI_ACTOR, name="ci-later", scopes=["modules:read"], kind="service",
                               organization=blue, expires_in=timedelta(days=60))
        s.commit()
    html = assert_page(site.client("ann").get("/admin"))
    assert "ci-soon" in html and "ci-later" not in html
    assert 'href="/admin/organizations/blue#tokens"' in html
    assert "ci-soon" not in assert_page(site.client("rob").get("/admin"))  # not red's token


# --- organizations ---------------------------------------------------------------------------------------


def test_organization_list_shows_what_the_caller_administers(site):
    html = assert_page(site.client("ann").get("/admin/organizations"))
    assert 'href="/admin/organizations/blue"' in html and "/admin/organizations/red" not in html
    assert "Create an organization" not in html  # orgs:manage registry-wide only
    html = assert_page(site.client("sam").get("/admin/organizations"))
    assert 'href="/admin/organizations/red"' in html and "Create an organization" in html
    assert_page(site.client("vic").get("/admin/organizations"), 403)


def test_site_admin_creates_an_organization(site):
    client = site.client("sam")
    bad = post(client, "/admin/organizations", {"name": "Green Team", "display_name": "Greens"})
    html = assert_page(bad, 400)
    assert "Lower-case letters" in field_error(html, "name") and 'value="Green Team"' in html
    done = post(client, "/admin/organizations", {"name": "green", "display_name": "Greens"})
    assert done.status_code == 303 and done.headers["Location"] == "/admin/organizations/green"
    assert "Organization “green” is created." in assert_page(client.get("/admin/organizations/green"))
    assert [e.target for e in site.audit("org.create")][-1] == "org:green"
    taken = assert_page(post(client, "/admin/organizations", {"name": "green"}), 409)
    assert "already exists" in field_error(taken, "name")


def test_organization_admin_may_not_create_organizations(site):
    assert_page(post(site.client("ann"), "/admin/organizations", {"name": "green"}), 403)
    with site.db() as s:
        assert s.scalar(select(Organization).where(Organization.name == "green")) is None


def test_edit_the_display_name(site):
    client = site.client("ann")
    assert post(client, "/admin/organizations/blue", {"display_name": "Blue networking"}).status_code == 303
    assert "Blue networking" in assert_page(client.get("/admin/organizations/blue"))
    assert site.audit("org.update")[-1].details == {"display_name": "Blue networking"}


def test_another_organizations_page_and_actions_are_not_found(site):
    client = site.client("ann")
    for path in ("/admin/organizations/red", "/admin/organizations/red/delete",
                 "/admin/organizations/nowhere"):
        html = assert_page(client.get(path), 404)
        assert "red" not in html.split("<main", 1)[1]
    for path, data in (("/admin/organizations/red", {"display_name": "mine"}),
                       ("/admin/organizations/red/members", {"email": "ann@example.com", "role": "admin"}),
                       ("/admin/organizations/red/namespaces", {"namespace": "red-apps", "visibility": "public"}),
                       ("/admin/organizations/red/tokens", {"name": "x", "scopes": "modules:read"})):
        assert_page(post(client, path, data), 404)
    assert site.role_of("ann", "red") is None
    with site.db() as s:
        assert s.scalar(select(Namespace.visibility).where(Namespace.name == "red-apps")) == "private"
        assert identity_svc.get_organization(s, "red").display_name == "red"
        assert s.scalar(select(ApiToken.id).where(ApiToken.kind == "service")) is None


def test_a_viewer_gets_403_and_nothing_changes(site):
    client = site.client("vic")
    assert_page(client.get("/admin/organizations/blue"), 403)
    for path, data in (("/admin/organizations/blue", {"display_name": "mine"}),
                       ("/admin/organizations/blue/members", {"email": "vic@example.com", "role": "admin"}),
                       (f"/admin/organizations/blue/members/{site.users['ann']}", {"role": "viewer"}),
                       (f"/admin/organizations/blue/members/{site.users['ann']}/remove", {}),
                       ("/admin/organizations/blue/namespaces", {"namespace": "blue-apps"}),
                       ("/admin/organizations/blue/tokens", {"name": "x", "scopes": "modules:read"}),
                       ("/admin/organizations/blue/delete", {})):
        assert_page(post(client, path, data, form_page="/account/tokens"), 403)
    assert site.role_of("vic", "blue") == "viewer" and site.role_of("ann", "blue") == "admin"
    with site.db() as s:
        assert identity_svc.get_organization(s, "blue").display_name == "Blue team"
        assert s.scalar(select(Namespace).where(Namespace.name == "blue-apps")) is None


def test_admin_adds_a_member_changes_the_role_and_removes_them(site):
    client = site.client("ann")
    html = assert_page(client.get("/admin/organizations/blue"))
    assert "Add a member" in html and "Create a namespace" in html and "Service tokens" in html

    unknown = assert_page(post(client, "/admin/organizations/blue/members",
                               {"email": "nobody@example.com", "role": "publisher"}), 400)
    assert "No user has the e-mail address nobody@example.com" in field_error(unknown, "email")
    assert 'value="nobody@example.com"' in unknown

    added = post(client, "/admin/organizations/blue/members", {"email": "Pat@Example.com", "role": "publisher"})
    assert added.status_code == 303 and added.headers["Location"].endswith("/admin/organizations/blue#members")
    assert site.role_of("pat", "blue") == "publisher"
    entry = site.audit("membership.set")[-1]
    assert entry.actor == "user:ann@example.com" and entry.details["role"] == "publisher"

    pat = site.users["pat"]
    assert post(client, f"/admin/organizations/blue/members/{pat}", {"role": "viewer"}).status_code == 303
    assert site.role_of("pat", "blue") == "viewer"

    confirm = assert_page(client.get(f"/admin/organizations/blue/members/{pat}/remove"))
    assert "Remove pat@example.com" in confirm and site.role_of("pat", "blue") == "viewer"  # not yet
    assert post(client, f"/admin/organizations/blue/members/{pat}/remove").status_code == 303
    assert site.role_of("pat", "blue") is None
    assert site.audit("membership.remove")[-1].details["user"] == pat


def test_a_role_with_scopes_the_caller_lacks_cannot_be_given(site):
    with site.db() as s:
        people = identity_svc.save_role(s, CLI_ACTOR, "people", ["users:manage", "modules:read", "providers:read",
                                                                     "mirrors:read"])
        identity_svc.set_membership(s, CLI_ACTOR, identity_svc.get_user(s, site.users["pat"]),
                                    identity_svc.get_organization(s, "blue"), people)
        s.commit()
    client = site.client("pat")  # may manage members, holds no modules:write
    html = assert_page(client.get("/admin/organizations/blue"))
    assert '<option value="admin"' not in html and '<option value="viewer"' in html
    refused = assert_page(post(client, "/admin/organizations/blue/members",
                               {"email": "sam@example.com", "role": "admin"}), 403)
    assert "cannot grant scopes you do not hold" in field_error(refused, "role")
    assert site.role_of("sam", "blue") is None
    assert_page(post(client, f"/admin/organizations/blue/members/{site.users['ann']}", {"role": "viewer"}), 403)
    assert site.role_of("ann", "blue") == "admin"


def test_identity_provider_memberships_are_shown_and_not_editable(site):
    with site.db() as s:
        user = identity_svc.get_user(s, site.users["pat"])
        identity_svc.set_membership(s, CLI_ACTOR, user, identity_svc.get_organization(s, "blue"),
                                    identity_svc.get_role(s, "publisher"), source="idp:oidc")
        s.commit()
    client = site.client("ann")
    html = assert_page(client.get("/admin/organizations/blue"))
    row = re.search(r"<tr>\s*<th scope=\"row\">pat@example.com.*?</tr>", html, re.S).group(0)
    assert "identity provider" in row and "oidc group mapping" in row and "not editable here" in row
    assert "<select" not in row and "Remove" not in row
    pat = site.users["pat"]
    refused = assert_page(post(client, f"/admin/organizations/blue/members/{pat}", {"role": "viewer"}), 409)
    assert "comes from the identity provider" in refused
    assert_page(client.get(f"/admin/organizations/blue/members/{pat}/remove"), 409)
    assert_page(post(client, "/admin/organizations/blue/members", {"email": "pat@example.com", "role": "viewer"}),
                409)
    assert site.role_of("pat", "blue") == "publisher"


def test_namespaces_created_and_visibility_changed(site):
    client = site.client("ann")
    assert post(client, "/admin/organizations/blue/namespaces",
                {"namespace": "blue-apps", "visibility": "authenticated"}).status_code == 303
    html = assert_page(client.get("/admin/organizations/blue"))
    assert 'href="/namespaces/blue-apps"' in html and 'value="authenticated" selected' in html
    assert post(client, "/admin/organizations/blue/namespaces",
                {"namespace": "blue-apps", "visibility": "public"}).status_code == 303
    with site.db() as s:
        ns = s.scalar(select(Namespace).where(Namespace.name == "blue-apps"))
        assert ns.visibility == "public" and ns.organization_id == identity_svc.get_organization(s, "blue").id
    assert [e.details["visibility"] for e in site.audit("namespace.save")][-2:] == ["authenticated", "public"]
    bad = assert_page(post(client, "/admin/organizations/blue/namespaces", {"namespace": "no way"}), 400)
    assert "invalid namespace" in field_error(bad, "namespace") and 'value="no way"' in bad
    taken = assert_page(post(client, "/admin/organizations/blue/namespaces", {"namespace": "red-apps"}), 409)
    assert "already taken" in field_error(taken, "namespace")


def test_delete_is_refused_while_the_organization_owns_namespaces(site):
    client = site.client("sam")
    html = assert_page(client.get("/admin/organizations/red/delete"))
    assert "cannot be deleted while it owns namespaces: red-apps" in html and 'class="danger"' not in html
    refused = assert_page(post(client, "/admin/organizations/red/delete"), 409)
    assert "still owns namespaces" in refused
    assert_page(post(site.client("rob"), "/admin/organizations/red/delete"), 403)  # orgs:manage registry-wide
    with site.db() as s:
        assert identity_svc.get_organization(s, "red") is not None
    with site.db() as s:
        s.delete(s.scalar(select(Namespace).where(Namespace.name == "red-apps")))
        s.commit()
    assert 'class="danger">Delete organization “red”' in assert_page(client.get("/admin/organizations/red/delete"))
    done = post(client, "/admin/organizations/red/delete")
    assert done.status_code == 303 and done.headers["Location"] == "/admin/organizations"
    assert site.audit("org.delete")[-1].target == "org:red"


def test_service_tokens_created_rotated_and_revoked(site):
    client = site.client("ann")
    missing = assert_page(post(client, "/admin/organizations/blue/tokens", {"name": "ci", "expires_in": "30d"}), 400)
    assert "Choose at least one scope" in field_error(missing, "scopes") and 'value="ci"' in missing

    created = post(client, "/admin/organizations/blue/tokens",
                   {"name": "ci-blue", "scopes": ["modules:write"], "expires_in": "30d"})
    html = assert_page(created)
    assert created.headers["Cache-Control"] == "no-store"
    secret = SECRET.search(html).group(0)
    assert 'href="/admin/organizations/blue#tokens"' in html and "Back to organization blue" in html
    me = site.app.test_client().get("/api/v1/me", headers={"Authorization": f"Bearer {secret}"}).get_json()
    assert me["kind"] == "service" and me["organizations"][0]["name"] == "blue"
    with site.db() as s:
        token = s.scalar(select(ApiToken).where(ApiToken.name == "ci-blue"))
        token_id, blue_id = token.id, identity_svc.get_organization(s, "blue").id
        assert token.kind == "service" and token.organization_id == blue_id
    assert site.audit("token.create")[-1].organization_id == blue_id

    page = assert_page(client.get("/admin/organizations/blue"))
    assert "ci-blue" in page and secret not in page
    rotated = assert_page(post(client, f"/admin/organizations/blue/tokens/{token_id}/rotate", {"grace": ""}))
    new_secret = SECRET.search(rotated).group(0)
    assert new_secret != secret and site.audit("token.rotate")

    confirm = assert_page(client.get(f"/admin/organizations/blue/tokens/{token_id}/revoke"))
    assert f'action="/admin/organizations/blue/tokens/{token_id}/revoke"' in confirm
    assert 'href="/admin/organizations/blue#tokens"' in confirm
    assert post(client, f"/admin/organizations/blue/tokens/{token_id}/revoke").status_code == 303
    assert site.app.test_client().get("/api/v1/me", headers={"Authorization": f"Bearer {new_secret}"}).status_code \
        == 401
    # red's administrator cannot touch blue's tokens, even by id
    assert_page(post(site.client("rob"), f"/admin/organizations/red/tokens/{token_id}/rotate", {"grace": ""}), 404)


def test_forms_need_their_csrf_token(site):
    client = site.client("sam")
    refused = client.post("/admin/organizations", data={"name": "green"})
    assert refused.status_code == 403
    with site.db() as s:
        assert s.scalar(select(Organization).where(Organization.name == "green")) is None


# --- users -------------------------------------------------------------------------------------------------


def test_users_list_with_search(site):
    client = site.client("sam")
    html = assert_page(client.get("/admin/users"))
    for name in ("ann", "vic", "rob", "pat"):
        assert f"{name}@example.com" in html
    html = assert_page(client.get("/admin/users?q=ROB"))
    assert "rob@example.com" in html and "ann@example.com" not in html
    assert "never" in html  # last sign-in
    assert "No user matches" in assert_page(client.get("/admin/users?q=zzz"))


def test_site_admin_adds_a_user(site):
    client = site.client("sam")
    taken = assert_page(post(client, "/admin/users", {"email": "ann@example.com", "name": "Again"}), 409)
    assert "already exists" in field_error(taken, "email") and 'value="Again"' in taken
    bad = assert_page(post(client, "/admin/users", {"email": "not-an-address"}), 400)
    assert "invalid e-mail address" in field_error(bad, "email")
    done = post(client, "/admin/users", {"email": "New@Example.com", "name": "Newcomer"})
    assert done.status_code == 303
    assert "new@example.com is added" in assert_page(client.get(done.headers["Location"]))
    assert site.audit("user.create")[-1].details == {"email": "new@example.com"}


def test_users_pages_need_users_manage_registry_wide(site):
    for who in ("ann", "vic"):
        client = site.client(who)
        assert_page(client.get("/admin/users"), 403)
        assert_page(client.get(f"/admin/users/{site.users['pat']}"), 403)
        assert_page(post(client, f"/admin/users/{site.users['pat']}/disable", form_page="/account/tokens"), 403)
        assert_page(post(client, f"/admin/users/{site.users['pat']}/site-admin", {"site_admin": "1"},
                         form_page="/account/tokens"), 403)
        assert_page(post(client, "/admin/users", {"email": "x@example.com"}, form_page="/account/tokens"), 403)
    with site.db() as s:
        pat = identity_svc.get_user(s, site.users["pat"])
        assert not pat.disabled and not pat.site_admin


def test_disabling_a_user_ends_their_session_and_tokens(site):
    from tfregistry.models import UserIdentity

    with site.db() as s:
        s.add(UserIdentity(user_id=site.users["vic"], provider="oidc", subject="vic-sub"))
        s.commit()
    vic = site.client("vic")
    vic_token = personal_token(site.app, site.users["vic"], scopes="modules:read")
    assert vic.get("/api/v1/me").status_code == 200
    admin = site.client("sam")
    page = assert_page(admin.get(f"/admin/users/{site.users['vic']}"))
    assert "oidc: <code>vic-sub</code>" in page and "blue</a>: viewer" in page
    confirm = assert_page(admin.get(f"/admin/users/{site.users['vic']}/disable"))
    assert "sessions end" in confirm
    done = post(admin, f"/admin/users/{site.users['vic']}/disable")
    assert done.status_code == 303
    assert "is disabled" in assert_page(admin.get(done.headers["Location"]))
    assert vic.get("/api/v1/me").status_code == 401
    assert site.app.test_client().get("/api/v1/me", headers={"Authorization": f"Bearer {vic_token}"}).status_code \
        == 401
    assert site.audit("user.disable")[-1].target == f"user:{site.users['vic']}"
    assert post(admin, f"/admin/users/{site.users['vic']}/enable").status_code == 303
    assert site.app.test_client().get("/api/v1/me", headers={"Authorization": f"Bearer {vic_token}"}).status_code \
        == 200
    assert site.audit("user.enable")


def test_site_admin_flag(site):
    admin = site.client("sam")
    assert "Make site administrator" in assert_page(admin.get(f"/admin/users/{site.users['pat']}"))
    assert post(admin, f"/admin/users/{site.users['pat']}/site-admin", {"site_admin": "1"}).status_code == 303
    with site.db() as s:
        assert identity_svc.get_user(s, site.users["pat"]).site_admin
    assert site.audit("user.site_admin")[-1].details == {"site_admin": True}
    assert "/admin/system" in assert_page(site.client("pat").get("/admin"))  # the new admin sees everything


# --- role templates -------------------------------------------------------------------------------------


def test_roles_listed_with_the_scope_vocabulary(site):
    html = assert_page(site.client("ann").get("/admin/roles"))
    for role in ("admin", "mirror-manager", "publisher", "viewer"):
        assert f'href="/admin/roles/{role}"' in html
    assert "<dt>keys:manage</dt>" in html and "Manage signing keys" in html and "includes modules:read" in html
    assert "Define a custom role template" not in html  # admin registry-wide only
    assert_page(site.client("vic").get("/admin/roles"), 403)


def test_site_admin_defines_and_edits_a_custom_role(site):
    client = site.client("sam")
    bad = assert_page(post(client, "/admin/roles", {"name": "auditor", "description": "Reads the log"}), 400)
    assert "Tick at least one scope" in field_error(bad, "scopes") and "Reads the log" in bad
    assert post(client, "/admin/roles", {"name": "auditor", "description": "Reads the log",
                                         "scopes": ["audit:read", "modules:read"]}).status_code == 303
    with site.db() as s:
        assert identity_svc.get_role(s, "auditor").scopes == ["modules:read", "audit:read"]
    assert site.audit("role.save")[-1].target == "role:auditor"
    taken = assert_page(post(client, "/admin/roles", {"name": "auditor", "scopes": ["audit:read"]}), 409)
    assert "already exists" in field_error(taken, "name")

    assert post(client, "/admin/roles/auditor", {"description": "Log readers", "scopes": ["audit:read"]},
                form_page="/admin/roles/auditor").status_code == 303
    with site.db() as s:
        role = identity_svc.get_role(s, "auditor")
        assert role.scopes == ["audit:read"] and role.description == "Log readers"
    assert "Save role template" not in assert_page(client.get("/admin/roles/viewer"))  # built-in
    assert_page(post(client, "/admin/roles/viewer", {"scopes": ["admin"]}), 400)
    with site.db() as s:
        assert identity_svc.get_role(s, "viewer").scopes == ["modules:read", "providers:read", "mirrors:read"]

    assert "Delete role template “auditor”" in assert_page(client.get("/admin/roles/auditor/delete"))
    assert post(client, "/admin/roles/auditor/delete").status_code == 303
    with site.db() as s:
        assert s.scalar(select(RoleTemplate).where(RoleTemplate.name == "auditor")) is None


def test_organization_admins_may_not_define_roles(site):
    client = site.client("ann")
    assert_page(post(client, "/admin/roles", {"name": "auditor", "scopes": ["audit:read"]}), 403)
    assert_page(post(client, "/admin/roles/viewer", {"scopes": ["admin"]}), 403)
    with site.db() as s:
        assert s.scalar(select(RoleTemplate).where(RoleTemplate.name == "auditor")) is None
        assert s.scalar(select(User).where(User.site_admin.is_(True))).email == "sam@example.com"
