"""What the module pages tell a person to copy works with the real Terraform CLI.

The showcase module (:mod:`tests.webui.showcase`) is published through the API and analysed at publish.  Its
provision box, taken from the page's HTML exactly as shown (placeholders as they are: they are type-correct
HCL, an object input's required attributes included), and each rendered example (its files as the Code tab
shows them, ``../..`` sources rewritten to the registry address and version) pass ``terraform init`` and
``terraform validate`` against a ``tfr serve`` subprocess (TLS with its own CA, the token as
``TF_TOKEN_<host>``), on SQLite and on PostgreSQL.
"""

from __future__ import annotations

import html
import re
from pathlib import Path

import pytest

from tests.e2e.conftest import RegistryServer, Terraform
from tests.webui import showcase
from tests.webui.showcase import ADDRESS

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def site(registry: RegistryServer) -> RegistryServer:
    """The registry with the showcase modules published (private namespace: Terraform uses a token)."""
    showcase.publish_showcase(registry, public=False)
    return registry


@pytest.fixture
def terraform(site: RegistryServer, tmp_path: Path) -> Terraform:
    return Terraform(site, tmp_path)


def page_html(site: RegistryServer, path: str) -> str:
    response = site.get(path, token=site.admin_token, headers={"Accept": "text/html"})
    assert response.status == 200, response.body[:500]
    return response.body.decode()


def copy_box(page: str, element_id: str) -> str:
    """The text of the ``<pre id=...>`` block a person copies (what the copy button puts on the clipboard)."""
    match = re.search(rf'<pre id="{re.escape(element_id)}"[^>]*><code>(.*?)</code></pre>', page, re.S)
    assert match, f"no #{element_id} on the page"
    return html.unescape(match.group(1))


def example_files(page: str) -> dict[str, str]:
    """The files of an example's Code tab: file name (its heading) to the text of its copy box."""
    found = re.findall(r'<h3>([^<]+)</h3>\s*<div class="snippet">\s*<pre id="(file-\d+)"', page)
    assert found, "no files on the Code tab"
    return {html.unescape(name): copy_box(page, element_id) for name, element_id in found}


def assert_init_and_validate(terraform: Terraform, site: RegistryServer, files: dict[str, str]) -> Path:
    workdir = terraform.workdir(files.pop("main.tf"))
    for name, text in files.items():
        (workdir / name).write_text(text)
    init = terraform.init(workdir, token=site.admin_token)
    assert init.rc == 0, str(init)
    validate = terraform(workdir, "validate", token=site.admin_token)
    assert validate.rc == 0 and "The configuration is valid." in validate.stdout, str(validate)
    return workdir


@pytest.mark.parametrize("version", showcase.VERSIONS)
def test_provision_box_as_shown_passes_init_and_validate(site: RegistryServer, terraform: Terraform, version: str):
    block = copy_box(page_html(site, f"/modules/{ADDRESS}/{version}"), "provision-snippet")
    # the latest release gets the template's range; an older one is pinned (a range would install the latest)
    constraint = "~> 1.1" if version == "1.1.0" else "= 1.0.0"
    assert block.startswith(f'module "webapp" {{\n  source  = "{site.host}/{ADDRESS}"\n'
                            f'  version = "{constraint}"\n'), block
    # every required input, with a placeholder of its type; optional ones are left out
    assert re.search(r'^  name\s+= "" # string$', block, re.M), block
    assert re.search(r"^  zones\s+= \[\] # list\(string\)$", block, re.M), block
    assert re.search(r'^  settings\s+= \{ tier = "" \} # object\(', block, re.M), block
    assert ("environment" in block) == (version == "1.1.0"), block
    assert "instance_count" not in block and "labels" not in block
    workdir = assert_init_and_validate(terraform, site, {"main.tf": block})
    assert (workdir / ".terraform" / "modules" / "webapp" / "variables.tf").exists()


def test_submodule_provision_box_passes_init_and_validate(site: RegistryServer, terraform: Terraform):
    block = copy_box(page_html(site, f"/modules/{ADDRESS}/1.1.0/submodules/network"), "provision-snippet")
    assert f'source  = "{site.host}/{ADDRESS}//modules/network"' in block and 'cidr = "" # string' in block
    assert_init_and_validate(terraform, site, {"main.tf": block})


@pytest.mark.parametrize("version", showcase.VERSIONS)
def test_rendered_example_passes_init_and_validate(site: RegistryServer, terraform: Terraform, version: str):
    files = example_files(page_html(site, f"/modules/{ADDRESS}/{version}/examples/basic/code"))
    assert sorted(files) == ["README.md", "main.tf"]
    main = files["main.tf"]
    assert f'source = "{site.host}/{ADDRESS}"\n  version = "{version}"' in main, main
    assert f'source = "{site.host}/{ADDRESS}//modules/network"\n  version = "{version}"' in main, main
    assert "../.." not in main
    workdir = assert_init_and_validate(terraform, site, files)
    installed = (workdir / ".terraform" / "modules" / "modules.json").read_text()
    assert f'"Version":"{version}"' in installed.replace(" ", "")
