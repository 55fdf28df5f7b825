"""The provision box and the rendered example code, as a user copies them from the page, pass the real
Terraform CLI's ``init`` and ``validate`` against a real server subprocess (SQLite and PostgreSQL)."""

from __future__ import annotations

import html
import re
from typing import Any

import pytest
from sqlalchemy import select

from tests.conftest import DATABASES
from tests.e2e.conftest import RegistryServer, Terraform, running_server, unique
from tests.webui.sample import doc, inp
from tfregistry.db import Database
from tfregistry.models import ModuleVersion
from tfregistry.testing.plugin import build_module_archive

pytestmark = pytest.mark.e2e

VARIABLES = '''variable "name" {
  type = string
}
variable "size" {
  type = number
}
variable "enabled" {
  type = bool
}
variable "zones" {
  type = list(string)
}
variable "labels" {
  type = map(string)
}
variable "ports" {
  type = set(number)
}
variable "settings" {
  type = object({ tier = optional(string, "basic"), replicas = optional(number) })
}
variable "anything" {
}
variable "region" {
  type    = string
  default = "eu-west-1"
}
output "summary" {
  value = "${var.name}-${var.size}-${var.enabled}-${length(var.zones)}-${var.region}"
}
'''
SUBMODULE = 'variable "cidr" {\n  type = string\n}\noutput "cidr" {\n  value = var.cidr\n}\n'
EXAMPLE = '''module "app" {
  source = "../.."

  name     = "demo"
  size     = 2
  enabled  = true
  zones    = ["a"]
  labels   = {}
  ports    = [80]
  settings = {}
  anything = null
}

module "net" {
  source = "../../modules/net"
  cidr   = "10.0.0.0/16"
}

output "summary" {
  value = module.app.summary
}
'''

ANALYSIS: dict[str, Any] = {
    "analyzer": 1,
    "root": doc(inputs=[inp("name", "string"), inp("size", "number"), inp("enabled", "bool"),
                        inp("zones", "list(string)"), inp("labels", "map(string)"), inp("ports", "set(number)"),
                        inp("settings", 'object({ tier = optional(string, "basic"), replicas = optional(number) })'),
                        inp("anything", None), inp("region", "string", '"eu-west-1"')],
                outputs=[{"name": "summary", "description": "", "sensitive": False, "ephemeral": False}]),
    "submodules": [doc("modules/net", inputs=[inp("cidr", "string")])],
    "examples": [doc("examples/complete")],
    "changelog": None,
    "problems": [],
}


@pytest.fixture(scope="module", params=DATABASES)
def server(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Any:
    """A registry server subprocess with the web UI installed (entry points, as `tfr serve` loads them)."""
    with running_server(request.param, tmp_path_factory.mktemp(f"ui-{request.param}")) as srv:
        yield srv


@pytest.fixture
def terraform(server: RegistryServer, tmp_path: Any) -> Terraform:
    return Terraform(server, tmp_path)


def set_analysis(server: RegistryServer, namespace: str, analysis: dict[str, Any]) -> None:
    """What the analyser stores at publish, written straight into the server's database."""
    url = server.env.get("TFR_DATABASE_URL") or f"sqlite:///{server.data_dir / 'registry.db'}"
    db = Database(url)
    try:
        with db.session() as session:
            for mv in session.scalars(select(ModuleVersion)):
                if mv.module.namespace.name == namespace:
                    mv.analysis = analysis
            session.commit()
    finally:
        db.dispose()


def copied(page: str, element_id: str) -> str:
    """The text a person copies from the ``<pre id=...>`` block of a page."""
    match = re.search(rf'<pre id="{element_id}"[^>]*><code>(.*?)</code></pre>', page, re.S)
    assert match, f"no #{element_id} on the page"
    return html.unescape(match.group(1))


def test_provision_box_and_example_pass_terraform_init_and_validate(server: RegistryServer, terraform: Terraform):
    namespace = unique("ui")
    archive = build_module_archive("app", {"main.tf": VARIABLES, "modules/net/main.tf": SUBMODULE,
                                           "examples/complete/main.tf": EXAMPLE})
    assert server.publish(namespace, "app", "generic", "1.2.0", archive) == 201
    set_analysis(server, namespace, ANALYSIS)
    base = f"/modules/{namespace}/app/generic/1.2.0"

    page = server.get(base, token=server.admin_token, headers={"Accept": "text/html"})
    assert page.status == 200, page.body[:500]
    snippet = copied(page.body.decode(), "provision-snippet")
    assert f'source  = "{server.host}/{namespace}/app/generic"' in snippet and 'version = "~> 1.2"' in snippet
    workdir = terraform.workdir(snippet)
    init = terraform.init(workdir, token=server.admin_token)
    assert init.rc == 0, str(init)
    validate = terraform(workdir, "validate", token=server.admin_token)
    assert validate.rc == 0 and "The configuration is valid" in validate.stdout, str(validate)

    sub = server.get(f"{base}/submodules/net", token=server.admin_token).body.decode()
    sub_snippet = copied(sub, "provision-snippet")
    assert "//modules/net" in sub_snippet
    sub_dir = terraform.workdir(sub_snippet)
    assert terraform.init(sub_dir, token=server.admin_token).rc == 0
    assert terraform(sub_dir, "validate", token=server.admin_token).rc == 0

    code = server.get(f"{base}/examples/complete/code", token=server.admin_token).body.decode()
    example = copied(code, "file-1")
    assert f'source = "{server.host}/{namespace}/app/generic"' in example and 'version = "1.2.0"' in example
    example_dir = terraform.workdir(example)
    init = terraform.init(example_dir, token=server.admin_token)
    assert init.rc == 0, str(init)
    validate = terraform(example_dir, "validate", token=server.admin_token)
    assert validate.rc == 0, str(validate)
