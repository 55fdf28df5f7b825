"""Pure parts of the web UI: placeholders, constraints, example rewriting, compare, usage, colours."""

from __future__ import annotations

from datetime import UTC, date, datetime

import pytest

from tests.webui.sample import ANALYSIS_1_0, analysis_1_1, inp
from tfregistry_webui import compare, provision, usage
from tfregistry_webui.plugin import parse_constraint_template, parse_css_color


@pytest.mark.parametrize(("type_", "value"), [
    ("string", '""'), ("number", "0"), ("bool", "false"), ("list(string)", "[]"), ("set(number)", "[]"),
    ("tuple([string, number])", '["", 0]'), ("map(any)", "{}"), ("object({ a = optional(string, \"x\") })", "{}"),
    ("list(object({ a = string }))", "[]"), ("any", "null"), (None, "null"), ("  string ", '""'),
    # an object gets its required attributes (what the analyser writes, and as a person writes it)
    ('object({name = string, port = optional(number, 443), tags = optional(map(string), {"a" = "b"}), '
     'enabled = optional(bool)})', '{ name = "" }'),
    ("object({\n  net = object({ cidr = string, extra = optional(list(string), [\"a\", \"b\"]) })\n  n = number\n})",
     '{ net = { cidr = "" }, n = 0 }'),
    ("object({ a = tuple([bool, object({ b = set(string) })]) })", "{ a = [false, { b = [] }] }"),
    # not a type this reader knows: the shape of its outer kind
    ("list(string", "[]"), ("object({ a = string }) junk", "{}"), ("custom(x)", "null"),
])
def test_placeholder_has_the_shape_of_the_type(type_, value):
    assert provision.placeholder(type_) == value


def test_version_constraint_from_the_template():
    assert provision.version_constraint("~> {major}.{minor}", "1.4.2") == "~> 1.4"
    assert provision.version_constraint(">= {version}, < {major}.999", "2.0.1") == ">= 2.0.1, < 2.999"
    assert provision.version_constraint("~> {major}.{minor}", "2.0.0-rc.1") == "= 2.0.0-rc.1"
    # an older version is pinned: "~> 1.4" would install the newest 1.x, whose inputs may differ
    assert provision.version_constraint("~> {major}.{minor}", "1.4.2", latest=False) == "= 1.4.2"


def test_provision_snippet_lists_required_inputs_only_with_their_type():
    snippet = provision.provision_snippet(
        label="my-vpc", source="reg.example.com/acme/vpc/aws", constraint="~> 1.0",
        inputs=[inp("cidr", "string"), inp("tags", "map(string)", "{}"),
                inp("rules", "list(object({\n  port = number\n}))")])
    assert snippet == (
        'module "my-vpc" {\n'
        '  source  = "reg.example.com/acme/vpc/aws"\n'
        '  version = "~> 1.0"\n'
        "\n"
        '  cidr  = "" # string\n'
        "  rules = [] # list(object({ port = number }))\n"
        "}\n")
    assert provision.block_label("9lives") == "m_9lives"


def test_example_sources_are_rewritten_to_the_registry_address_and_version():
    text = ('module "a" {\n  source = "../.."\n}\nmodule "b" {\n  source  = "../../modules/db"\n}\n'
            'module "c" {\n  source = "../other-example"\n}\nmodule "d" {\n  source = "../../../outside"\n}\n'
            'module "e" {\n  source = "hashicorp/consul/aws"\n}\n')
    out = provision.rewrite_example_sources(text, example_dir="examples/basic", address="r.example/acme/vpc/aws",
                                            version="1.2.3")
    assert '  source = "r.example/acme/vpc/aws"\n  version = "1.2.3"\n' in out
    assert '  source  = "r.example/acme/vpc/aws//modules/db"\n  version = "1.2.3"\n' in out
    assert 'source = "../other-example"' in out and 'source = "../../../outside"' in out
    assert 'source = "hashicorp/consul/aws"' in out


def test_compare_lists_what_a_reviewer_needs():
    c = compare.compare_docs(ANALYSIS_1_0["root"], analysis_1_1()["root"])
    assert [i["name"] for i in c.inputs_added] == ["subnet_count", "settings"]
    assert [i["name"] for i in c.inputs_removed] == ["legacy"]
    assert c.inputs_now_required == ["tags"]
    assert [(ch.name, ch.old, ch.new) for ch in c.types_changed] == [("tags", "map(string)", "map(any)")]
    assert [(ch.name, ch.old, ch.new) for ch in c.defaults_changed] == [("enable_nat", "false", "true")]
    assert [o["name"] for o in c.outputs_added] == ["nat_ids"] and c.outputs_removed == []
    assert [(ch.name, ch.old, ch.new) for ch in c.providers_changed] == [("hashicorp/aws", ">= 4.0", ">= 5.0")]
    assert c.required_version is None and c.breaking and not c.empty


def test_compare_of_identical_versions_is_empty_and_whitespace_does_not_count():
    root = ANALYSIS_1_0["root"]
    assert compare.compare_docs(root, root).empty
    a = {"inputs": [inp("x", "object({a=string})", None)]}
    b = {"inputs": [inp("x", "object({a=string})", None)], "required_version": ">= 1.6",
         "provider_dependencies": [{"name": "aws", "source": "hashicorp/aws", "version": ""}]}
    c = compare.compare_docs(a, b)
    assert not c.types_changed and c.required_version.new == ">= 1.6"
    assert [(ch.name, ch.old, ch.new) for ch in c.providers_changed] == [("hashicorp/aws", None, "")]
    assert not c.breaking


def test_usage_counts_per_week_month_client_and_version():
    today = date(2026, 12, 4)  # a Friday
    events = [
        (datetime(2026, 12, 1, tzinfo=UTC), "Terraform/1.9.5 (+https://www.terraform.io)", "1.1.0"),
        (datetime(2026, 11, 30, tzinfo=UTC), "OpenTofu/1.8.0", "1.1.0"),
        (datetime(2026, 11, 29, tzinfo=UTC), "Terraform/1.9.5", "1.0.0"),
        (datetime(2026, 10, 2, tzinfo=UTC), "Go-http-client/1.1", "1.0.0"),
        (datetime(2020, 1, 1, tzinfo=UTC), "Terraform/0.12.0", "0.1.0"),  # outside every window but totals
    ]
    stats = usage.aggregate(events, today)
    assert len(stats.weeks) == usage.WEEKS and stats.weeks[-1].start == date(2026, 11, 30)
    assert stats.weeks[-1].total == 2 and stats.weeks[-2].total == 1
    assert [p.start for p in stats.months][-2:] == [date(2026, 11, 1), date(2026, 12, 1)]
    assert stats.months[-1].total == 1 and stats.months[-2].total == 2 and stats.months[-3].by_client["Other"] == 1
    assert stats.clients == {"Terraform": 3, "OpenTofu": 1, "Other": 1}
    assert stats.client_versions[("Terraform", "1.9.5")] == 2
    assert usage.group_client_versions(stats)["OpenTofu"] == [("1.8.0", 1)]
    assert stats.versions["1.0.0"] == 2 and stats.total == 5


def test_bar_chart_is_an_accessible_svg_without_styles():
    stats = usage.aggregate([(datetime(2026, 12, 1, tzinfo=UTC), "Terraform/1.9.5", "1.0.0")], date(2026, 12, 4))
    svg = str(usage.bar_chart(stats.weeks, title="Weekly <downloads>", label_format="%d %b", chart_id="c"))
    assert svg.startswith('<svg viewBox="0 0 720 220" role="img" aria-labelledby="c-title"')
    assert '<title id="c-title">Weekly &lt;downloads&gt;</title>' in svg
    assert svg.count('<rect class="bar"') == 1 and "style" not in svg


@pytest.mark.parametrize("value", ["#2d5fd4", "#abc", "rgb(45 95 212)", "hsl(220, 60%, 50%)", "teal"])
def test_css_colours_accepted(value):
    assert parse_css_color(value) == value


@pytest.mark.parametrize("value", ["red;}", "url(x)", "#12345", "var(--x)", "rgb(1,2,3));x{"])
def test_css_colours_refused(value):
    with pytest.raises(ValueError, match="not a CSS colour"):
        parse_css_color(value)


def test_constraint_template_fields():
    assert parse_constraint_template("~> {major}.{minor}") == "~> {major}.{minor}"
    for bad in ("~> 1.0", "{nope}", "{major"):
        with pytest.raises(ValueError):
            parse_constraint_template(bad)
