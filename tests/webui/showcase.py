"""A realistic module for the browser tests and the Terraform proof, published through the API in two versions.

``acme/webapp/generic`` has a submodule (``modules/network``), an example (``examples/basic``, calling the
module with ``source = "../.."`` and the submodule with ``../../modules/network``), required and optional
inputs of every kind of type (string, number, bool, list(string), map(string), an object with ``optional()``
attributes), outputs, a README with a relative image and a relative link, and a CHANGELOG.md.  Its resources
are Terraform's built-in ``terraform_data`` only, so ``terraform init`` and ``terraform validate`` need no
provider from the internet.

1.1.0 adds the required input ``environment`` and changes the default of ``instance_count`` from 1 to 2.
``acme/dns/generic`` (locals and outputs only, no resource) is there so that a search by resource type has
something not to find.  The provider ``acme/toolbox`` (signed with the namespace's registry-managed key)
fills the provider pages.
"""

from __future__ import annotations

import struct
import time
import zlib
from pathlib import Path

from tests.e2e.conftest import RegistryServer
from tests.providers_kit import build_release
from tfregistry.testing.plugin import build_module_archive

NAMESPACE = "acme"
NAME = "webapp"
SYSTEM = "generic"
ADDRESS = f"{NAMESPACE}/{NAME}/{SYSTEM}"
VERSIONS = ("1.0.0", "1.1.0")
OTHER = "dns"
PROVIDER = "toolbox"
PROVIDER_VERSION = "0.4.0"
DESCRIPTIONS = {NAME: "Web tier: instances spread over zones, their network and settings",
                OTHER: "DNS names for the web tier"}
#: A resource type the module manages (search finds the module by it) and one it does not.
RESOURCE_TYPE = "terraform_data"


def diagram_png(width: int = 300, height: int = 60) -> bytes:
    """A valid PNG for the README: three blue boxes (instances, network, settings) on white."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    def pixel(x: int, y: int) -> bytes:
        inside = 10 <= y < height - 10 and (x % 100) in range(10, 90)
        return bytes((45, 95, 212)) if inside else b"\xff\xff\xff"

    rows = b"".join(b"\x00" + b"".join(pixel(x, y) for x in range(width)) for y in range(height))
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(rows)) + chunk(b"IEND", b"")


README = """# Web application

Provisions the web tier: a set of instances, their network and settings.

![Architecture diagram](docs/architecture.png)

See [the network submodule](modules/network/README.md) and the [changelog](CHANGELOG.md).

| Input | Meaning |
|---|---|
| `name` | prefix of every resource |
| `zones` | availability zones |
"""

VERSIONS_TF = """terraform {
  required_version = ">= 1.5"
}
"""


def variables_tf(version: str) -> str:
    """Inputs of each version: 1.1.0 adds ``environment`` (required) and raises ``instance_count``'s default."""
    count_default = 2 if version == "1.1.0" else 1
    environment = """
variable "environment" {
  description = "Deployment environment (dev, staging, prod)."
  type        = string
}
""" if version == "1.1.0" else ""
    return f'''variable "name" {{
  description = "Name prefix of every resource."
  type        = string
}}

variable "zones" {{
  description = "Availability zones to spread the instances over."
  type        = list(string)
}}

variable "settings" {{
  description = "Application settings."
  type = object({{
    tier     = string
    replicas = optional(number, 1)
    debug    = optional(bool, false)
    tags     = optional(map(string), {{}})
  }})
}}

variable "instance_count" {{
  description = "How many instances to run."
  type        = number
  default     = {count_default}

  validation {{
    condition     = var.instance_count > 0
    error_message = "At least one instance."
  }}
}}

variable "enable_monitoring" {{
  description = "Whether to attach monitoring."
  type        = bool
  default     = true
}}

variable "labels" {{
  description = "Labels added to every resource."
  type        = map(string)
  default     = {{}}
}}

variable "admin_password" {{
  description = "Password of the administration console."
  type        = string
  default     = null
  sensitive   = true
}}
{environment}'''


def main_tf(version: str) -> str:
    environment = "\n    environment = var.environment" if version == "1.1.0" else ""
    return f'''locals {{
  instance_names = [for i in range(var.instance_count) : "${{var.name}}-${{i}}"]
}}

module "network" {{
  source = "./modules/network"

  cidr  = "10.0.0.0/16"
  zones = var.zones
}}

resource "terraform_data" "instance" {{
  count = var.instance_count

  input = {{
    name       = local.instance_names[count.index]
    zone       = element(var.zones, count.index)
    tier       = var.settings.tier
    monitoring = var.enable_monitoring
    labels     = var.labels{environment}
  }}
}}

resource "terraform_data" "settings" {{
  input = var.settings
}}
'''


OUTPUTS_TF = '''output "instance_names" {
  description = "Names of the instances."
  value       = local.instance_names
}

output "network_id" {
  description = "Identifier of the network."
  value       = module.network.id
}
'''

NETWORK_TF = '''variable "cidr" {
  description = "Address range of the network."
  type        = string
}

variable "zones" {
  description = "Zones to create a subnet in."
  type        = list(string)
  default     = []
}

resource "terraform_data" "network" {
  input = {
    cidr    = var.cidr
    subnets = [for i, zone in var.zones : cidrsubnet(var.cidr, 8, i)]
  }
}

output "id" {
  description = "Identifier of the network."
  value       = terraform_data.network.id
}
'''

NETWORK_README = "# Network\n\nOne network with a subnet per zone.\n"


def example_tf(version: str) -> str:
    environment = '\n  environment = "dev"' if version == "1.1.0" else ""
    return f'''module "webapp" {{
  source = "../.."

  name  = "demo"
  zones = ["zone-a", "zone-b"]
  settings = {{
    tier = "web"
  }}{environment}
}}

module "extra_network" {{
  source = "../../modules/network"

  cidr = "10.1.0.0/16"
}}

output "instance_names" {{
  value = module.webapp.instance_names
}}
'''


EXAMPLE_README = "# Basic example\n\nThe smallest useful configuration.\n"


def changelog(version: str) -> str:
    newer = ("## 1.1.0\n\n- New required input `environment`.\n- `instance_count` defaults to 2.\n\n"
             if version == "1.1.0" else "")
    return f"# Changelog\n\n{newer}## 1.0.0\n\n- First release.\n"


def webapp_files(version: str) -> dict[str, str | bytes]:
    """The archive's files at ``version``."""
    return {
        "README.md": README,
        "CHANGELOG.md": changelog(version),
        "versions.tf": VERSIONS_TF,
        "variables.tf": variables_tf(version),
        "main.tf": main_tf(version),
        "outputs.tf": OUTPUTS_TF,
        "docs/architecture.png": diagram_png(),
        "modules/network/main.tf": NETWORK_TF,
        "modules/network/README.md": NETWORK_README,
        "examples/basic/main.tf": example_tf(version),
        "examples/basic/README.md": EXAMPLE_README,
    }


DNS_FILES: dict[str, str | bytes] = {
    "main.tf": 'variable "zone" {\n  type = string\n}\n\nlocals {\n  fqdn = "app.${var.zone}"\n}\n\n'
               'output "fqdn" {\n  value = local.fqdn\n}\n',
    "README.md": "# DNS\n\nNames for the web tier.\n",
}


def publish_showcase(server: RegistryServer, *, public: bool = True) -> None:
    """Publish acme/webapp (1.0.0 and 1.1.0) and acme/dns (1.0.0) through the API; ``public`` opens the
    namespace to anonymous readers."""
    for version in VERSIONS:
        archive = build_module_archive(NAME, webapp_files(version))
        status = server.publish(NAMESPACE, NAME, SYSTEM, version, archive, description=DESCRIPTIONS[NAME])
        assert status == 201, f"publishing {ADDRESS} {version} answered {status}\n{server.output()}"
    assert server.publish(NAMESPACE, OTHER, SYSTEM, "1.0.0", build_module_archive(OTHER, DNS_FILES),
                          description=DESCRIPTIONS[OTHER]) == 201
    if public:
        server.set_visibility(NAMESPACE, "public")


#: The provider's documentation folder (the public registry's layout, with front matter).
PROVIDER_DOCS = {
    "index.md": "---\npage_title: \"Provider: toolbox\"\ndescription: |-\n  Tools for the web tier.\n---\n\n"
                "# toolbox Provider\n\nTools for the web tier.\n",
    "resources/widget.md": "---\npage_title: \"toolbox_widget Resource\"\nsubcategory: \"Widgets\"\n"
                           "description: |-\n  Manages a widget.\n---\n\n# toolbox_widget\n\nManages a widget.\n",
}


def publish_provider(server: RegistryServer, workdir: Path) -> None:
    """Publish acme/toolbox with its documentation, signed with the namespace's registry-managed key, as
    tests/e2e does."""
    server.cli("gpg", "create-key", "--namespace", NAMESPACE)
    release = build_release(workdir / "dist", PROVIDER, PROVIDER_VERSION, platforms=("linux_amd64", "darwin_arm64"),
                            protocols=["6.0"])
    docs = workdir / "docs"
    for name, text in PROVIDER_DOCS.items():
        (docs / name).parent.mkdir(parents=True, exist_ok=True)
        (docs / name).write_text(text)
    output = server.publish_provider(release.dist, NAMESPACE, "--docs", str(docs))
    assert "published" in output and "docs: 2 pages" in output, output


#: Downloads recorded by :func:`record_downloads`: (version, User-Agent) each.
DOWNLOADS = [("1.1.0", "Terraform/1.9.5"), ("1.1.0", "Terraform/1.9.5"), ("1.1.0", "OpenTofu/1.8.0"),
             ("1.0.0", "Terraform/1.5.7")]


def record_downloads(server: RegistryServer) -> None:
    """Ask for the archive's location as Terraform and OpenTofu do (the registry counts each answer)."""
    for version, agent in DOWNLOADS:
        response = server.get(f"/v1/modules/{ADDRESS}/{version}/download", token=server.admin_token,
                              headers={"User-Agent": agent})
        assert response.status in (200, 204) and "x-terraform-get" in response.headers, response.status
    # Downloads are counted in memory and written in batches (``downloads.flush_interval``, 2 s): wait until
    # the home page's "Most downloaded" shows them, as a person would after that interval.
    deadline = time.monotonic() + 30
    while f"{len(DOWNLOADS)} downloads" not in server.get("/").body.decode():
        assert time.monotonic() < deadline, "the recorded downloads were never written"
        time.sleep(0.2)
