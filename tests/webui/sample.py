"""A module with submodules and examples, and its analysis in the shape of tfregistry.analysis
(``ModuleVersion.analysis``), set directly so these tests do not depend on the analyser."""

from __future__ import annotations

import copy
from typing import Any

EXAMPLE_MAIN = '''module "network" {
  source = "../.."

  cidr = "10.0.0.0/16"
}

module "subnets" {
  source = "../../modules/subnets"
}

module "elsewhere" {
  source  = "terraform-aws-modules/vpc/aws"
  version = "5.0.0"
}
'''

FILES = {
    "main.tf": 'variable "cidr" {\n  type = string\n}\n',
    "README.md": "# Network\n\nBuilds a VPC. ![diagram](docs/diagram.png)\n",
    "docs/diagram.png": b"\x89PNG\r\n\x1a\nnot really a png",
    "docs/notes.html": "<script>alert(1)</script>",
    "modules/subnets/main.tf": 'variable "count_per_az" {\n  type = number\n}\n',
    "examples/complete/main.tf": EXAMPLE_MAIN,
    "examples/complete/README.md": "# Complete example\n",
    "CHANGELOG.md": "# Changelog\n\n## 1.1.0\n\n- Added the region selector\n",
}


def doc(path: str = "", **fields: Any) -> dict[str, Any]:
    base = {"path": path, "name": path.rsplit("/", 1)[-1] if path else "", "readme": "", "empty": False,
            "required_version": None, "inputs": [], "outputs": [], "dependencies": [],
            "provider_dependencies": [], "resources": [], "data_sources": [], "files": ["main.tf"]}
    base.update(fields)
    return base


def inp(name: str, type_: str | None, default: str | None = None, **fields: Any) -> dict[str, Any]:
    return {"name": name, "type": type_, "description": fields.pop("description", f"The {name}."),
            "default": default, "required": default is None, "sensitive": False, "nullable": True,
            "ephemeral": False, "validations": 0, **fields}


ANALYSIS_1_0: dict[str, Any] = {
    "analyzer": 1,
    "root": doc(
        required_version=">= 1.5",
        inputs=[inp("cidr", "string"), inp("azs", "list(string)"), inp("tags", "map(string)", "{}"),
                inp("enable_nat", "bool", "false"), inp("legacy", "string", '"x"')],
        outputs=[{"name": "vpc_id", "description": "The VPC.", "sensitive": False, "ephemeral": False}],
        provider_dependencies=[{"name": "aws", "namespace": "hashicorp", "source": "hashicorp/aws",
                                "version": ">= 4.0"}],
        resources=[{"name": "this", "type": "aws_vpc"}],
        data_sources=[{"name": "azs", "type": "aws_availability_zones"}],
    ),
    "submodules": [doc("modules/subnets", inputs=[inp("count_per_az", "number")],
                       readme="# Subnets\n", resources=[{"name": "this", "type": "aws_subnet"}])],
    "examples": [doc("examples/complete", readme="# Complete example\n",
                     dependencies=[{"name": "network", "source": "../..", "version": ""}])],
    "changelog": "# Changelog\n\n## 1.1.0\n\n- Added the region selector\n",
    "problems": [],
}


def analysis_1_1() -> dict[str, Any]:
    """1.1.0: ``legacy`` removed, ``tags`` now required and typed differently, ``count`` added, an output
    added, the AWS constraint raised, a problem in one file."""
    a = copy.deepcopy(ANALYSIS_1_0)
    root = a["root"]
    root["inputs"] = [inp("cidr", "string"), inp("azs", "list(string)"), inp("tags", "map(any)"),
                      inp("enable_nat", "bool", "true"), inp("subnet_count", "number", "2"),
                      inp("settings", "object({ a = optional(string) })")]
    root["outputs"].append({"name": "nat_ids", "description": "NAT gateways.", "sensitive": True,
                            "ephemeral": False})
    root["provider_dependencies"][0]["version"] = ">= 5.0"
    a["problems"] = [{"path": "broken.tf", "line": 3, "column": 5, "message": "Unexpected token"}]
    return a
