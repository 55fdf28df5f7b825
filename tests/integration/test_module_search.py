"""Module search (FTS5 on SQLite, tsvector on PostgreSQL): what is found, filters, orders, pages, hostile
queries, tenancy, and an index that follows publishes, deletes, analyses and upgrades."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy import select

from tests.conftest import bearer, create_postgres_database, post_module
from tests.integration.test_identity import Site
from tfregistry.db import Database
from tfregistry.models import Module, ModuleVersion, Namespace
from tfregistry.services import ServiceError
from tfregistry.services import search as search_svc
from tfregistry.services.modules import record_downloads
from tfregistry.services.search import SearchResult, search_modules
from tfregistry.testing.plugin import build_module_archive


def doc(path: str = "", *, inputs: tuple[str, ...] = (), outputs: tuple[str, ...] = (),
        resources: tuple[str, ...] = (), data_sources: tuple[str, ...] = (),
        providers: tuple[tuple[str, str], ...] = ()) -> dict[str, Any]:
    """One DOC of the analysis shape (tfregistry.analysis), with only what search reads filled in."""
    return {
        "path": path, "name": path.rsplit("/", 1)[-1], "readme": "", "empty": False, "required_version": None,
        "inputs": [{"name": n, "type": "string", "description": "", "default": None, "required": True,
                    "sensitive": False, "nullable": True, "ephemeral": False, "validations": 0} for n in inputs],
        "outputs": [{"name": n, "description": "", "sensitive": False, "ephemeral": False} for n in outputs],
        "dependencies": [],
        "provider_dependencies": [{"name": local, "namespace": source.split("/")[0], "source": source,
                                   "version": ""} for local, source in providers],
        "resources": [{"name": "this", "type": t} for t in resources],
        "data_sources": [{"name": "this", "type": t} for t in data_sources],
        "files": ["main.tf"],
    }


def analysis(root: dict[str, Any], *submodules: dict[str, Any]) -> dict[str, Any]:
    return {"analyzer": 1, "root": root, "submodules": list(submodules), "examples": [], "changelog": None,
            "problems": []}


AWS = (("aws", "hashicorp/aws"),)


class Corpus:
    """An app with a few modules; ``find`` searches as the service does (everything readable)."""

    def __init__(self, app: Any) -> None:
        self.app = app
        self.registry = app.extensions["tfregistry"]
        self.client = app.test_client()
        self.admin = Site(app).admin

    def publish(self, namespace: str, name: str, system: str, version: str = "1.0.0", readme: str = "",
                description: str = "", analysed: dict[str, Any] | None = None) -> None:
        archive = build_module_archive(name, files={"README.md": readme or f"# {name}\n"})
        r = post_module(self.client, self.admin, namespace=namespace, name=name, system=system, version=version,
                        archive=archive, description=description)
        assert r.status_code == 201, r.get_json()
        if analysed is not None:
            self.set_analysis(f"{namespace}/{name}/{system}", version, analysed)

    def set_analysis(self, address: str, version: str, value: dict[str, Any] | None) -> None:
        """What (re)analysis does: store the version's analysis, then reindex its module."""
        ns, name, system = address.split("/")
        with self.registry.db.session() as s:
            mv = s.scalars(select(ModuleVersion).join(Module).join(Namespace).where(
                Namespace.name == ns, Module.name == name, Module.system == system,
                ModuleVersion.version == version)).one()
            mv.analysis = value
            s.flush()
            search_svc.reindex_module(s, mv.module_id)
            s.commit()

    def search(self, q: str | None = None, **kwargs: Any) -> SearchResult:
        with self.registry.db.session() as s:
            return search_modules(s, None, q=q, **kwargs)

    def find(self, q: str | None = None, **kwargs: Any) -> list[str]:
        return [f"{m.namespace.name}/{m.name}/{m.system}" for m in self.search(q, **kwargs).modules]

    def index_rows(self) -> int:
        with self.registry.db.session() as s:
            return s.scalar(sa.text("SELECT count(*) FROM module_search"))


@pytest.fixture
def corpus(app: Any) -> Corpus:
    c = Corpus(app)
    c.publish("acme", "s3", "aws", description="Object storage",
              readme="# S3\n\nCreates a bucket with lifecycle rules.\n",
              analysed=analysis(doc(inputs=("bucket_name",), outputs=("bucket_arn",), resources=("aws_s3_bucket",),
                                    providers=AWS)))
    c.publish("acme", "policy", "aws", description="Bucket policies",
              analysed=analysis(doc(resources=("aws_s3_bucket_policy",), providers=AWS)))
    c.publish("acme", "network", "aws", description="VPC and subnets",
              readme="# Network\n\nAlso sets up transit gateway attachments.\n",
              analysed=analysis(doc(inputs=("vpc_cidr",), resources=("aws_vpc",), providers=AWS),
                                doc("modules/subnets", resources=("aws_subnet",),
                                    data_sources=("aws_availability_zones",), providers=AWS)))
    c.publish("other", "network", "google", description="Réseau 网络 for Google Cloud",
              analysed=analysis(doc(resources=("google_compute_network",),
                                    providers=(("google", "hashicorp/google"),))))
    c.publish("acme", "legacy", "aws", description="Published before analysis existed")  # analysis None
    return c


@pytest.mark.parametrize(("q", "expected"), [
    ("network", {"acme/network/aws", "other/network/google"}),            # name
    ("NETWORK", {"acme/network/aws", "other/network/google"}),            # any case
    ("subnets", {"acme/network/aws"}),                                    # description word
    ("transit", {"acme/network/aws"}),                                    # README word
    ("transi", {"acme/network/aws"}),                                     # the last word is also a prefix
    ("vpc_cidr", {"acme/network/aws"}),                                   # input name
    ("cidr", {"acme/network/aws"}),                                       # ... and its parts
    ("bucket_arn", {"acme/s3/aws"}),                                      # output name
    ("aws_s3_bucket", {"acme/s3/aws"}),                                   # resource type, exactly
    ("AWS_S3_Bucket", {"acme/s3/aws"}),
    ("aws_s3_bucket_policy", {"acme/policy/aws"}),
    ("s3", {"acme/s3/aws", "acme/policy/aws"}),                           # part of both types
    ("aws_subnet", {"acme/network/aws"}),                                 # a submodule's resource type
    ("aws_availability_zones", {"acme/network/aws"}),                     # a data source type
    ("bucket policies", {"acme/policy/aws"}),                             # every word is required
    ("acme network", {"acme/network/aws"}),                               # namespace and name
    ("réseau", {"other/network/google"}),                                 # unicode
    ("网络", {"other/network/google"}),
    ("google_compute_network", {"other/network/google"}),
    ("aws_s3", set()),                                                    # identifiers match whole
    ("nothing-like-this", set()),
])
def test_finds_by_name_description_readme_inputs_outputs_and_resource_types(corpus: Corpus, q: str,
                                                                            expected: set[str]):
    assert set(corpus.find(q)) == expected


def test_filters(corpus: Corpus):
    assert corpus.find("network", namespace="other") == ["other/network/google"]
    assert corpus.find("network", system="aws") == ["acme/network/aws"]
    assert set(corpus.find(namespace="acme")) == {"acme/s3/aws", "acme/policy/aws", "acme/network/aws",
                                                  "acme/legacy/aws"}
    assert len(corpus.find(organization="default")) == 5
    assert corpus.find(organization="nobody") == []
    # provider used: a required provider's source or local name; unanalysed modules count their system
    assert set(corpus.find(provider="hashicorp/aws")) == {"acme/s3/aws", "acme/policy/aws", "acme/network/aws"}
    assert set(corpus.find(provider="AWS")) == {"acme/s3/aws", "acme/policy/aws", "acme/network/aws",
                                                "acme/legacy/aws"}
    assert corpus.find(provider="hashicorp/google") == ["other/network/google"]
    assert corpus.find("s3", provider="google") == []
    assert corpus.find(provider="aw") == [] and corpus.find(provider="%") == [] and corpus.find(provider="_") == []


def test_provider_used_without_required_providers_is_implied_by_the_types(app: Any):
    c = Corpus(app)
    c.publish("acme", "ids", "aws", analysed=analysis(doc(resources=("random_id", "terraform_data"),
                                                          data_sources=("aws_region",))))
    c.publish("acme", "broken", "azurerm", analysed={**analysis(doc()), "root": None, "problems": [
        {"path": "", "line": None, "column": None, "message": "analysis failed: boom"}]})
    for provider in ("random", "hashicorp/random", "aws", "hashicorp/aws"):
        assert c.find(provider=provider) == ["acme/ids/aws"], provider
    assert c.find(provider="terraform") == [] and c.find(provider="hashicorp/terraform") == []
    assert c.find(provider="azurerm") == ["acme/broken/azurerm"]  # nothing known: the system


def test_sorts_and_pages(corpus: Corpus):
    with corpus.registry.db.session() as s:
        versions = {f"{mv.module.namespace.name}/{mv.module.name}": mv for mv in s.scalars(select(ModuleVersion))}
        start = datetime(2026, 1, 1, tzinfo=UTC)
        for days, key in enumerate(["acme/network", "other/network", "acme/legacy", "acme/s3", "acme/policy"]):
            versions[key].published_at = start + timedelta(days=days)
        for key, count in {"acme/legacy": 3, "other/network": 2, "acme/policy": 1}.items():
            record_downloads(s, [(versions[key].id, None, None, None, start.timestamp())] * count)
        s.commit()

    by_name = ["acme/legacy/aws", "acme/network/aws", "acme/policy/aws", "acme/s3/aws", "other/network/google"]
    assert corpus.find() == by_name  # no query: by name
    assert corpus.find(sort="relevance") == by_name  # relevance without a query: by name too
    assert corpus.find(sort="recent") == ["acme/policy/aws", "acme/s3/aws", "acme/legacy/aws",
                                          "other/network/google", "acme/network/aws"]
    assert corpus.find(sort="downloads") == ["acme/legacy/aws", "other/network/google", "acme/policy/aws",
                                             "acme/network/aws", "acme/s3/aws"]
    assert corpus.find("network", sort="name") == ["acme/network/aws", "other/network/google"]
    with pytest.raises(ServiceError, match="unknown sort"):
        corpus.find(sort="random")

    pages = [corpus.search(offset=offset, limit=2) for offset in (0, 2, 4)]
    assert [p.has_more for p in pages] == [True, True, False]
    assert [f"{m.namespace.name}/{m.name}/{m.system}" for p in pages for m in p.modules] == by_name
    assert corpus.search(offset=10, limit=2).modules == []


def test_relevance_puts_name_matches_before_readme_mentions(corpus: Corpus):
    corpus.publish("acme", "dns", "aws", readme="# DNS\n\nZones. Works with any vpc, no vpc of its own.\n")
    corpus.publish("zeta", "vpc", "aws", description="A VPC")
    found = corpus.find("vpc")
    assert found[0] == "zeta/vpc/aws" and set(found) == {"zeta/vpc/aws", "acme/network/aws", "acme/dns/aws"}
    assert found.index("acme/network/aws") < found.index("acme/dns/aws")  # description beats README


HOSTILE = ['"', '""', 'a"b', "'", "*", "net*", "NEAR", "NEAR(network s3)", "network NEAR/2 s3", "-network",
           "network -s3", "network OR s3", "AND", "NOT network", "(", ")", "{name}: network", "name:network",
           "^network", "\\", "%", "_", "__", "a_", "network:*", "network & !s3", "network <-> s3", "'s3' | 'x'",
           "\x00", "network\x00s3", "x" * 1000, "network " * 300, "🙂", "é", "ﬀ", "ǅ", "\u200b", "$$"]


@pytest.mark.parametrize("q", HOSTILE, ids=range(len(HOSTILE)))
def test_hostile_queries_are_words_never_syntax(corpus: Corpus, q: str):
    found = corpus.find(q)  # no error from the database
    assert all(m in {"acme/s3/aws", "acme/policy/aws", "acme/network/aws", "other/network/google",
                     "acme/legacy/aws"} for m in found)
    r = corpus.client.get("/v1/modules/search", query_string={"q": q}, headers=bearer(corpus.admin))
    # 400 only for a blank q, or a NUL (refused before any view runs)
    assert r.status_code == (400 if "\x00" in q or not q.strip() else 200), r.get_data(as_text=True)


def test_hostile_queries_match_their_words(corpus: Corpus):
    assert set(corpus.find("-network")) == {"acme/network/aws", "other/network/google"}
    assert set(corpus.find("network:*")) == {"acme/network/aws", "other/network/google"}
    assert corpus.find("network OR s3") == []  # OR is a word the modules do not have
    assert corpus.find("NEAR(network s3)") == []
    assert set(corpus.find('"s3"')) == {"acme/s3/aws", "acme/policy/aws"}
    assert corpus.find("*") == [] and corpus.find("_") == []


def test_protocol_search_keeps_the_public_shape_and_filters(corpus: Corpus):
    h = bearer(corpus.admin)
    body = corpus.client.get("/v1/modules/search?q=network&limit=1", headers=h).get_json()
    assert body["meta"]["limit"] == 1 and body["meta"]["next_offset"] == 1
    (first,) = body["modules"]
    assert set(first) >= {"id", "namespace", "name", "provider", "version", "description", "downloads",
                          "published_at", "verified"}
    assert first["id"] in {"acme/network/aws/1.0.0", "other/network/google/1.0.0"}
    found = corpus.client.get("/v1/modules/search?q=aws_s3_bucket", headers=h).get_json()["modules"]
    assert [m["id"] for m in found] == ["acme/s3/aws/1.0.0"]
    by_provider = corpus.client.get("/v1/modules/search?q=network&provider=google", headers=h).get_json()
    assert [m["id"] for m in by_provider["modules"]] == ["other/network/google/1.0.0"]
    in_ns = corpus.client.get("/v1/modules/search?q=network&namespace=acme", headers=h).get_json()
    assert [m["id"] for m in in_ns["modules"]] == ["acme/network/aws/1.0.0"]
    assert corpus.client.get("/v1/modules/search?q=%20", headers=h).status_code == 400


def test_another_organizations_private_namespace_is_never_found(app_factory: Any):
    site = Site(app_factory({"tenancy": "multi"}))
    for org in ("blue", "red"):
        site.org(org)
        site.namespace(f"{org}-ns", org)
        archive = build_module_archive("network", files={"README.md": f"# {org}\n\nsecretword {org}word\n"})
        assert post_module(site.client, site.admin, namespace=f"{org}-ns", archive=archive).status_code == 201
    blue = site.service("blue", "modules:read")

    def ids(q: str, token: str | None) -> list[str]:
        r = site.get(f"/v1/modules/search?q={q}", token)
        assert r.status_code == 200
        return [m["id"] for m in r.get_json()["modules"]]

    assert ids("secretword", blue) == ["blue-ns/network/aws/1.0.0"]
    assert ids("redword", blue) == []
    assert ids("red", blue) == []
    assert ids("secretword", None) == []
    assert ids("secretword", site.service("red", "modules:read")) == ["red-ns/network/aws/1.0.0"]
    assert len(ids("secretword", site.admin)) == 2  # a site admin reads everything


def test_the_index_follows_the_latest_version(app: Any):
    c = Corpus(app)
    address = "acme/thing/aws"
    c.publish("acme", "thing", "aws", "1.0.0", readme="alphaword")
    assert c.find("alphaword") == [address]
    c.publish("acme", "thing", "aws", "2.0.0", readme="betaword")
    assert c.find("alphaword") == [] and c.find("betaword") == [address]
    c.publish("acme", "thing", "aws", "3.0.0-rc1", readme="gammaword")  # a pre-release is not the latest
    assert c.find("gammaword") == [] and c.find("betaword") == [address]
    c.publish("acme", "thing", "aws", "1.5.0", readme="olderword")  # nor is a lower version published later
    assert c.find("olderword") == []

    c.set_analysis(address, "2.0.0", analysis(doc(resources=("aws_thing",), providers=AWS)))  # reanalysis
    assert c.find("aws_thing") == [address] and c.find(provider="hashicorp/aws") == [address]
    c.set_analysis(address, "1.5.0", analysis(doc(resources=("aws_other",))))  # not the latest: no change
    assert c.find("aws_other") == []

    h = bearer(c.admin)
    assert c.client.delete(f"/api/v1/modules/{address}/2.0.0", headers=h).status_code == 204
    assert c.find("betaword") == [] and c.find("aws_thing") == [] and c.find("olderword") == [address]
    assert c.find("aws_other") == [address]
    for version in ("1.5.0", "1.0.0"):
        assert c.client.delete(f"/api/v1/modules/{address}/{version}", headers=h).status_code == 204
    assert c.find("gammaword") == [address]  # only a pre-release left: it is the latest
    assert c.client.delete(f"/api/v1/modules/{address}/3.0.0-rc1", headers=h).status_code == 204
    assert c.find("gammaword") == [] and c.index_rows() == 0


@pytest.mark.parametrize("kind", ["sqlite", "postgresql"])
def test_upgrade_indexes_modules_published_before_it(kind: str, tmp_path: Any):
    if kind == "sqlite":
        url, drop = f"sqlite:///{tmp_path / 'old.db'}", (lambda: None)
    else:
        url, drop = create_postgres_database("tfr_search")
    db = Database(url)
    try:
        db.upgrade("0008")
        with db.session() as s:
            ns = Namespace(name="acme", organization_id=None)
            m = Module(namespace=ns, name="bucket", system="aws", description="old module")
            s.add_all([
                ModuleVersion(module=m, version="1.0.0", storage_key="k1", size=1, sha256="0" * 64, readme="oldword",
                              analysis=analysis(doc(resources=("aws_s3_bucket",), providers=AWS))),
                ModuleVersion(module=m, version="0.9.0", storage_key="k2", size=1, sha256="1" * 64,
                              readme="olderword"),
            ])
            s.commit()
        db.upgrade()
        with db.session() as s:
            def find(q: str) -> list[str]:
                return [mod.name for mod in search_modules(s, None, q=q).modules]

            assert find("oldword") == ["bucket"] and find("aws_s3_bucket") == ["bucket"]
            assert find("olderword") == []
    finally:
        db.dispose()
        drop()


def test_cli_reindex_rebuilds_the_index(corpus: Corpus, database_url: str, tmp_path: Any):
    from click.testing import CliRunner

    from tfregistry.cli import Context, cli

    with corpus.registry.db.session() as s:
        s.execute(sa.text("DELETE FROM module_search"))
        s.commit()
    assert corpus.find("network") == []
    env = {"TFR_DATA_DIR": str(tmp_path / "data"), "TFR_DATABASE_URL": database_url,
           "TFR_PLUGINS": "tfregistry-storage-local"}
    result = CliRunner(env=env).invoke(cli, ["search", "reindex"], obj=Context(None), catch_exceptions=False)
    assert result.exit_code == 0 and "indexed 5 module(s)" in result.output
    assert set(corpus.find("network")) == {"acme/network/aws", "other/network/google"}
    assert corpus.find("aws_s3_bucket") == ["acme/s3/aws"]


def test_api_lists_and_searches_with_every_filter_and_sort(corpus: Corpus):
    h = bearer(corpus.admin)

    def ids(**query: Any) -> tuple[list[str], dict[str, Any]]:
        r = corpus.client.get("/api/v1/modules", query_string=query, headers=h)
        assert r.status_code == 200, r.get_json()
        body = r.get_json()
        return [m["id"] for m in body["modules"]], body["meta"]

    assert ids(q="aws_s3_bucket")[0] == ["acme/s3/aws/1.0.0"]
    assert ids(q="network", system="google")[0] == ["other/network/google/1.0.0"]
    assert ids(provider="hashicorp/google")[0] == ["other/network/google/1.0.0"]
    assert len(ids(organization="default")[0]) == 5 and ids(organization="nobody")[0] == []
    page, meta = ids(sort="name", limit=2)
    assert page == ["acme/legacy/aws/1.0.0", "acme/network/aws/1.0.0"] and meta == {
        "offset": 0, "limit": 2, "next_offset": 2}
    assert "next_offset" not in ids(sort="name", offset=4, limit=2)[1]
    bad = corpus.client.get("/api/v1/modules?sort=random", headers=h)
    assert bad.status_code == 422 and "sort" in bad.get_json()["errors"]["query"]
    assert ids()[0] and corpus.client.get("/api/v1/modules").get_json()["modules"] == []  # anonymous: nothing


def test_the_service_query_uses_fts5_on_sqlite_and_the_gin_index_on_postgresql(corpus: Corpus):
    """The index is what the docs say (an FTS5 table; a tsvector column with a GIN index) and the service's own
    search statement, captured as it runs, is answered from it (the query plan names it)."""
    engine = corpus.registry.db.engine
    captured: list[tuple[str, Any]] = []

    def capture(conn: Any, cursor: Any, statement: str, parameters: Any, context: Any, executemany: bool) -> None:
        if "module_search" in statement:
            captured.append((statement, parameters))

    sa.event.listen(engine, "before_cursor_execute", capture)
    try:
        assert corpus.find("aws_s3_bucket") == ["acme/s3/aws"]
    finally:
        sa.event.remove(engine, "before_cursor_execute", capture)
    assert len(captured) == 1, captured
    statement, parameters = captured[0]
    raw = engine.raw_connection()
    try:
        cursor = raw.cursor()
        if engine.dialect.name == "postgresql":
            cursor.execute("SELECT indexdef FROM pg_indexes WHERE tablename = 'module_search'")
            assert any("USING gin (document)" in row[0] for row in cursor.fetchall())
            cursor.execute("SELECT data_type FROM information_schema.columns "
                           "WHERE table_name = 'module_search' AND column_name = 'document'")
            assert cursor.fetchone()[0] == "tsvector"
            assert "module_search.document @@" in statement
            cursor.execute("SET LOCAL enable_seqscan = off")  # a few rows: make the planner show it can use it
            cursor.execute("EXPLAIN " + statement, parameters)
        else:
            cursor.execute("SELECT sql FROM sqlite_master WHERE name = 'module_search'")
            assert "USING fts5" in cursor.fetchone()[0]
            assert "MATCH" in statement
            cursor.execute("EXPLAIN QUERY PLAN " + statement, parameters)
        plan = "\n".join(" ".join(str(col) for col in row) for row in cursor.fetchall())
    finally:
        raw.rollback()
        raw.close()
    if engine.dialect.name == "postgresql":
        assert "ix_module_search_document" in plan, plan
    else:
        assert "VIRTUAL TABLE INDEX" in plan and "module_search" in plan, plan
