"""Version selection for mirror configurations (Terraform's constraint syntax)."""

from __future__ import annotations

import pytest

from tfregistry.services import ServiceError
from tfregistry.services.mirroring import matches, select_versions

VERSIONS = ["0.9.0", "1.0.0", "1.1.0", "1.2.0-rc.1", "1.2.0", "2.0.0", "2.1.3"]


@pytest.mark.parametrize(("constraint", "expected"), [
    (None, ["2.1.3", "2.0.0", "1.2.0", "1.1.0", "1.0.0", "0.9.0"]),
    ("~> 1.0", ["1.2.0", "1.1.0", "1.0.0"]),
    ("~> 1.1.0", ["1.1.0"]),
    (">= 1.1, < 2.0", ["1.2.0", "1.1.0"]),
    ("!= 2.0.0, >= 2.0", ["2.1.3"]),
    ("1.2.0-rc.1", ["1.2.0-rc.1"]),
    ("= 1.0.0", ["1.0.0"]),
])
def test_constraints(constraint, expected):
    assert select_versions(VERSIONS, constraint, None) == expected


def test_latest_n():
    assert select_versions(VERSIONS, None, 2) == ["2.1.3", "2.0.0"]
    assert select_versions(VERSIONS, "~> 1.0", 1) == ["1.2.0"]


def test_bad_constraint():
    with pytest.raises(ServiceError, match="invalid version constraint"):
        matches("1.0.0", ">= 1.0, ??")
