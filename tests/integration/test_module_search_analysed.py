"""Search over what the real analyser finds in published HCL, and after ``reanalyse_versions``.

Written before the analyser (branch wip/analysis) was merged: it is skipped until ``tfregistry.analysis``
exists, and then checks the hand-off: publish stores the analysis before the search document is written,
and re-analysis reindexes (``reanalyse_versions`` must call ``reindex_module``).
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa

from tests.conftest import bearer, post_module
from tfregistry.models import ModuleVersion
from tfregistry.services import modules as svc
from tfregistry.services.search import reindex_all
from tfregistry.testing.plugin import build_module_archive

S3 = """
terraform {
  required_providers {
    aws = { source = "hashicorp/aws", version = ">= 5.0" }
  }
}

variable "bucket_name" {
  type = string
}

resource "aws_s3_bucket" "this" {
  bucket = var.bucket_name
}

output "bucket_arn" {
  value = aws_s3_bucket.this.arn
}
"""
POLICY = 'resource "aws_s3_bucket_policy" "this" {\n  bucket = "x"\n  policy = "{}"\n}\n'
SUBNET = 'resource "aws_subnet" "this" {\n  vpc_id     = "x"\n  cidr_block = "10.0.0.0/24"\n}\n'


def test_published_hcl_is_searchable_and_reanalysis_reindexes(app: Any, client: Any, admin_token: str):
    for name, files in (("s3", {"main.tf": S3}), ("policy", {"main.tf": POLICY}),
                        ("net", {"modules/subnet/main.tf": SUBNET})):
        archive = build_module_archive(name, files)
        assert post_module(client, admin_token, name=name, archive=archive).status_code == 201

    def ids(**query: Any) -> list[str]:
        r = client.get("/api/v1/modules", query_string=query, headers=bearer(admin_token))
        assert r.status_code == 200, r.get_json()
        return sorted(m["id"] for m in r.get_json()["modules"])

    assert ids(q="aws_s3_bucket") == ["acme/s3/aws/1.0.0"]
    assert ids(q="s3") == ["acme/policy/aws/1.0.0", "acme/s3/aws/1.0.0"]
    assert ids(q="bucket_name") == ids(q="bucket_arn") == ["acme/s3/aws/1.0.0"]
    assert ids(q="aws_subnet") == ["acme/net/aws/1.0.0"]  # a submodule's resource
    assert ids(provider="hashicorp/aws") == ["acme/net/aws/1.0.0", "acme/policy/aws/1.0.0", "acme/s3/aws/1.0.0"]

    registry = app.extensions["tfregistry"]
    with registry.db.session() as s:  # as before the analyser existed: no analysis, index without symbols
        s.execute(sa.update(ModuleVersion).values(analysis=sa.null()))
        reindex_all(s)
        s.commit()
    assert ids(q="aws_s3_bucket") == []
    with registry.db.session() as s:
        svc.reanalyse_versions(s, registry.storage, svc.archive_limits(registry.settings),
                               svc.versions_to_analyse(s))
    assert ids(q="aws_s3_bucket") == ["acme/s3/aws/1.0.0"]
