from __future__ import annotations

import random

import pytest

from tfregistry import semver
from tfregistry.semver import InvalidVersion, Version, latest, parse


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("0.0.0", Version(0, 0, 0)),
        ("1.2.3", Version(1, 2, 3)),
        ("10.20.30", Version(10, 20, 30)),
        ("1.0.0-alpha", Version(1, 0, 0, ("alpha",))),
        ("1.0.0-alpha.1", Version(1, 0, 0, ("alpha", "1"))),
        ("1.0.0-0.3.7", Version(1, 0, 0, ("0", "3", "7"))),
        ("1.0.0-x-y-z.--", Version(1, 0, 0, ("x-y-z", "--"))),
        ("1.0.0-alpha+001", Version(1, 0, 0, ("alpha",), "001")),
        ("1.0.0+20130313144700", Version(1, 0, 0, (), "20130313144700")),
        ("1.0.0-beta+exp.sha.5114f85", Version(1, 0, 0, ("beta",), "exp.sha.5114f85")),
        ("1.0.0+21AF26D3----117B344092BD", Version(1, 0, 0, (), "21AF26D3----117B344092BD")),
        ("99999999999999999999.0.0", Version(99999999999999999999, 0, 0)),
    ],
)
def test_parse_valid(text: str, expected: Version) -> None:
    version = parse(text)
    assert version == expected
    assert str(version) == text


@pytest.mark.parametrize(
    "text",
    [
        "", "1", "1.0", "1.2.3.4", "01.2.3", "1.02.3", "1.2.03", "1.2.3-01", "1.2.3-", "1.2.3+",
        "1.2.3-a..b", "1.2.3+a..b", "1.2.3-a_b", " 1.2.3", "1.2.3 ", "1.2.3\n", "-1.2.3",
        "1.2.3-\u0661", "\u0661.2.3", "a.b.c", "1.2.3-+",
    ],
)
def test_parse_invalid(text: str) -> None:
    with pytest.raises(InvalidVersion, match="is not a valid semantic version"):
        parse(text)


def test_invalid_version_is_a_value_error_with_a_helpful_message() -> None:
    with pytest.raises(ValueError) as excinfo:
        parse("1.0")
    assert str(excinfo.value) == (
        '"1.0" is not a valid semantic version (expected MAJOR.MINOR.PATCH, e.g. 1.2.3)'
    )


def test_leading_v_gets_a_hint() -> None:
    with pytest.raises(InvalidVersion, match="drop the leading 'v': 1.2.3"):
        parse("v1.2.3")


def test_error_message_escapes_and_shortens_input() -> None:
    with pytest.raises(InvalidVersion) as excinfo:
        parse("1\n" + "x" * 1000)
    message = str(excinfo.value)
    assert "\n" not in message
    assert len(message) < 200


def test_precedence_follows_the_spec_example() -> None:
    # The example list from semver.org, item 11.
    ordered = [
        "1.0.0-alpha", "1.0.0-alpha.1", "1.0.0-alpha.beta", "1.0.0-beta", "1.0.0-beta.2",
        "1.0.0-beta.11", "1.0.0-rc.1", "1.0.0", "1.0.1", "1.1.0", "1.10.0", "2.0.0",
    ]
    shuffled = ordered[:]
    random.Random(0).shuffle(shuffled)
    assert sorted(shuffled, key=semver.sort_key) == ordered
    assert [str(v) for v in sorted(parse(t) for t in shuffled)] == ordered
    for lower, higher in zip(ordered, ordered[1:], strict=False):
        assert parse(lower) < parse(higher)
        assert parse(higher) > parse(lower)
        assert parse(lower) <= parse(higher)
        assert not parse(lower) >= parse(higher)


def test_numeric_identifiers_sort_before_alphanumeric_ones() -> None:
    assert parse("1.0.0-2") < parse("1.0.0-10") < parse("1.0.0-1a") < parse("1.0.0-a")
    assert parse("1.0.0-A") < parse("1.0.0-a")  # ASCII order


def test_build_metadata_is_ignored_for_precedence_not_for_equality() -> None:
    a, b = parse("1.0.0+a"), parse("1.0.0+b")
    assert not a < b and not b < a
    assert a <= b and b <= a
    assert a.sort_key() == b.sort_key()
    assert a != b
    assert a == parse("1.0.0+a")
    assert hash(a) == hash(parse("1.0.0+a"))


def test_is_prerelease_and_immutability() -> None:
    assert parse("1.0.0-rc.1").is_prerelease
    assert not parse("1.0.0+build").is_prerelease
    with pytest.raises(AttributeError):
        parse("1.0.0").major = 2  # type: ignore[misc]


def test_comparison_with_other_types_is_not_supported() -> None:
    with pytest.raises(TypeError):
        _ = parse("1.0.0") < "1.0.1"  # type: ignore[operator]


def test_latest_skips_prereleases_by_default() -> None:
    versions = ["1.0.0", "1.10.0", "1.9.0", "2.0.0-rc.1", "1.2.0"]
    assert latest(versions) == "1.10.0"
    assert latest(versions, include_prereleases=True) == "2.0.0-rc.1"


def test_latest_with_only_prereleases_or_nothing() -> None:
    assert latest(["1.0.0-rc.1", "1.0.0-beta"]) is None
    assert latest(["1.0.0-rc.1", "1.0.0-beta"], include_prereleases=True) == "1.0.0-rc.1"
    assert latest([]) is None
    assert latest(iter(["0.1.0"])) == "0.1.0"


def test_latest_rejects_invalid_versions() -> None:
    with pytest.raises(InvalidVersion):
        latest(["1.0.0", "latest"])
