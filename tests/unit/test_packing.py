from __future__ import annotations

import io
import os
import tarfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tfregistry import packing
from tfregistry.archives import ArchiveLimits, inspect_module_archive
from tfregistry.packing import IgnoreRules, iter_module_files, pack_module


def make_tree(root: Path, files: dict[str, str]) -> Path:
    for relpath, content in files.items():
        path = root / relpath
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(content)
    return root


def listed(root: Path) -> list[str]:
    return [p.as_posix() for p in iter_module_files(root)]


def packed(root: Path) -> bytes:
    buf = io.BytesIO()
    pack_module(root, buf)
    return buf.getvalue()


def members(data: bytes) -> list[tarfile.TarInfo]:
    with tarfile.open(fileobj=io.BytesIO(data), mode="r:gz") as tar:
        return tar.getmembers()


# -- .terraformignore rules ---------------------------------------------------------------

# The .terraformignore and the expectations of go-slug's own test (ignorefiles/terraformignore_test.go).
GO_SLUG_IGNORE = """\
# comments are ignored
 # extra spaces are irrelevant
# ignore a file
   baz.txt
# below is an empty line

# ignore a directory
terraform.d/
# negate ignoring a directory at the root
!/terraform.d/
# ignore a file at a subpath
**/foo/bar.tf
# ignore files with specific endings
foo/*.md
# character groups
bar/something-[a-z].txt
# ignore a file
boop.txt
# but not one at the current directory
!/boop.txt
"""


@pytest.mark.parametrize(
    ("path", "is_dir", "excluded"),
    [
        (".terraform", True, True),
        ("included.txt", False, False),
        (".terraform/foo/bar", False, True),
        (".terraform/foo/bar/more/directories/so/many", False, True),
        (".terraform/foo/ignored-subdirectory", True, True),
        ("baz.txt", False, True),
        ("parent/foo/baz.txt", False, True),
        ("parent/foo/bar.tf", False, True),
        ("parent/bar/bar.tf", False, False),
        ("something/with-baz.txt", False, False),
        ("something/baz.x", False, False),
        ("foo/ignored-doc.md", False, True),
        ("bar/something-a.txt", False, True),
        ("bar/something-1.txt", False, False),
        ("some-module/terraform.d/x", False, True),
        ("terraform.d", True, False),
        ("terraform.d/foo", False, False),
        ("terraform.d", False, False),
        ("baz/boop.txt", False, True),
        ("boop.txt", False, False),
    ],
)
def test_rules_agree_with_go_slug(path: str, is_dir: bool, excluded: bool) -> None:
    rules = IgnoreRules(GO_SLUG_IGNORE.splitlines())
    assert rules.excludes(path, is_dir=is_dir) is excluded


@pytest.mark.parametrize(
    ("pattern", "path", "is_dir", "excluded"),
    [
        ("*.log", "a.log", False, True),
        ("*.log", "deep/er/a.log", False, True),
        ("*.log", "a.log.txt", False, False),
        ("/build", "build", True, True),
        ("/build", "build/out.bin", False, True),
        ("/build", "sub/build", True, False),
        ("logs/", "logs", True, True),
        ("logs/", "logs", False, False),  # a file: a trailing "/" matches directories only
        ("logs/", "sub/logs/x.txt", False, True),
        ("secret", "secret", True, True),  # no trailing "/": files and directories
        ("secret", "a/secret/key.pem", False, True),
        ("docs/*.md", "docs/a.md", False, True),
        ("docs/*.md", "docs/deep/a.md", False, False),  # "*" does not cross "/"
        ("docs/**/*.md", "docs/deep/er/a.md", False, True),
        ("docs/**/*.md", "docs/a.md", False, True),
        ("docs/**", "docs/x/y/z", False, True),
        ("a/**/b", "a/b", False, True),
        ("a/**/b", "a/x/y/b", False, True),
        ("**/tmp", "x/y/tmp", True, True),
        ("file?.tf", "file1.tf", False, True),
        ("file?.tf", "file10.tf", False, False),
        ("[!a]*.tf", "b.tf", False, True),
        ("[!a]*.tf", "a.tf", False, False),
        ("\\#notes", "#notes", False, True),
        ("\\!bang", "!bang", False, True),
        ("a+b(c).tf", "a+b(c).tf", False, True),  # regular-expression characters are literal
        ("a+b(c).tf", "aab(c).tf", False, False),
    ],
)
def test_pattern_syntax(pattern: str, path: str, is_dir: bool, excluded: bool) -> None:
    assert IgnoreRules([pattern]).excludes(path, is_dir=is_dir) is excluded


def test_negation_and_last_match_wins() -> None:
    rules = IgnoreRules(["*.md", "!README.md", "docs/", "!docs/keep.md"])
    assert rules.excludes("CHANGELOG.md")
    assert not rules.excludes("README.md")
    assert not rules.excludes("sub/README.md")
    assert rules.excludes("docs", is_dir=True)
    assert rules.excludes("docs/other.txt")
    assert not rules.excludes("docs/keep.md")
    # A negation may come later: the directory must still be walked.
    assert not rules.prunes("docs")
    assert IgnoreRules(["docs/"]).prunes("docs")


def test_defaults_apply_with_or_without_a_file() -> None:
    for rules in (IgnoreRules([]), IgnoreRules(["*.bak"])):
        assert rules.excludes(".git", is_dir=True) and rules.prunes(".git")
        assert rules.excludes("modules/x/.terraform", is_dir=True)
        assert not rules.excludes(".gitignore")
        assert not rules.excludes(".github/workflows/ci.yml")
    assert not IgnoreRules(["!.terraform/modules/"]).excludes(".terraform/modules/m/main.tf")


def test_invalid_pattern_names_the_line(tmp_path: Path) -> None:
    (tmp_path / ".terraformignore").write_text("*.bak\n\nfoo[z-a].tf\n")
    with pytest.raises(ValueError, match=r"\.terraformignore line 3: invalid pattern 'foo\[z-a\]\.tf'"):
        list(iter_module_files(tmp_path))


# -- walking a directory ------------------------------------------------------------------


def test_default_ignores(tmp_path: Path) -> None:
    make_tree(tmp_path, {
        "main.tf": "", ".git/HEAD": "", ".terraform/modules/m/main.tf": "", "sub/.git/config": "",
        "sub/.terraform/x": "", "sub/main.tf": "", ".gitignore": "", ".terraform.lock.hcl": "",
    })
    assert listed(tmp_path) == [".gitignore", ".terraform.lock.hcl", "main.tf", "sub/main.tf"]


def test_terraformignore_applies_with_the_defaults(tmp_path: Path) -> None:
    make_tree(tmp_path, {
        ".terraformignore": "# state\n*.tfstate\n/build\nlogs/\n!logs/keep.txt\n**/fixtures/**/*.json\n",
        "main.tf": "", "terraform.tfstate": "", "sub/x.tfstate": "", ".git/HEAD": "",
        "build/out": "", "sub/build/out": "", "logs/a.txt": "", "logs/keep.txt": "",
        "test/fixtures/a/b/data.json": "", "test/fixtures/a/b/data.yaml": "",
    })
    assert listed(tmp_path) == [
        ".terraformignore", "logs/keep.txt", "main.tf", "sub/build/out", "test/fixtures/a/b/data.yaml",
    ]


def test_directory_only_pattern_keeps_a_file_of_that_name(tmp_path: Path) -> None:
    make_tree(tmp_path, {".terraformignore": "cache/\n", "cache": "a file", "sub/cache/x": ""})
    assert listed(tmp_path) == [".terraformignore", "cache"]


def test_paths_are_sorted_component_by_component(tmp_path: Path) -> None:
    make_tree(tmp_path, {"b.tf": "", "a-b.tf": "", "a/z.tf": "", "a/b/c.tf": "", "A.tf": ""})
    paths = list(iter_module_files(tmp_path))
    assert paths == sorted(paths)
    assert [p.as_posix() for p in paths] == ["A.tf", "a/b/c.tf", "a/z.tf", "a-b.tf", "b.tf"]
    assert all(not p.is_absolute() for p in paths)


def test_pruned_directories_are_not_entered(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    make_tree(tmp_path, {
        ".terraformignore": "vendor/\n", "main.tf": "", "vendor/a/b.tf": "", ".git/objects/x": "",
    })
    entered: list[str] = []
    real_scandir = os.scandir

    def spy(path: Path) -> Iterator[os.DirEntry[str]]:
        entered.append(Path(path).relative_to(tmp_path).as_posix())
        return real_scandir(path)

    monkeypatch.setattr(packing.os, "scandir", spy)
    assert listed(tmp_path) == [".terraformignore", "main.tf"]
    assert entered == ["."]


def test_symlinks_are_listed_not_followed_and_special_files_skipped(tmp_path: Path) -> None:
    make_tree(tmp_path, {"main.tf": "", "shared/vars.tf": ""})
    (tmp_path / "link.tf").symlink_to("main.tf")
    (tmp_path / "linkdir").symlink_to("shared")
    os.mkfifo(tmp_path / "fifo")
    assert listed(tmp_path) == ["link.tf", "linkdir", "main.tf", "shared/vars.tf"]


# -- packing ------------------------------------------------------------------------------


def test_pack_module(tmp_path: Path) -> None:
    make_tree(tmp_path, {
        "main.tf": 'variable "x" {}\n', "README.md": "# Hello\n", "modules/a/main.tf": "# a\n",
        "scripts/run.sh": "#!/bin/sh\n", ".git/HEAD": "ref", ".terraformignore": "*.bak\n", "old.bak": "",
    })
    (tmp_path / "scripts/run.sh").chmod(0o700)
    (tmp_path / "main.tf").chmod(0o600)
    (tmp_path / "modules/a/vars.tf").symlink_to("../../main.tf")
    buf = io.BytesIO()
    assert pack_module(tmp_path, buf) == 6
    data = buf.getvalue()

    infos = members(data)
    assert [i.name for i in infos] == [
        ".terraformignore", "README.md", "main.tf",
        "modules/a/main.tf", "modules/a/vars.tf", "scripts/run.sh",
    ]
    assert all(i.isreg() for i in infos)  # symlinked files are stored as copies; no directories
    assert {(i.mtime, i.uid, i.gid, i.uname, i.gname) for i in infos} == {(0, 0, 0, "", "")}
    assert {i.name: i.mode for i in infos}["scripts/run.sh"] == 0o755
    assert {i.name: i.mode for i in infos}["main.tf"] == 0o644
    with tarfile.open(fileobj=io.BytesIO(data), mode="r:gz") as tar:
        vars_tf = tar.extractfile("modules/a/vars.tf")
        assert vars_tf is not None and vars_tf.read() == b'variable "x" {}\n'

    report = inspect_module_archive(io.BytesIO(data), ArchiveLimits())
    assert report.file_count == 6
    assert report.readme == "# Hello\n"
    assert report.has_root_tf


def test_pack_module_is_deterministic(tmp_path: Path) -> None:
    make_tree(tmp_path, {"main.tf": "x", "z/y.tf": "y", "a/b.tf": "b", "é/ünïcode.tf": "u"})
    (tmp_path / "long" / ("d" * 120)).mkdir(parents=True)
    (tmp_path / "long" / ("d" * 120) / "f.tf").write_text("long")
    first = packed(tmp_path)
    os.utime(tmp_path / "main.tf", (1_000_000_000, 1_000_000_000))
    assert packed(tmp_path) == first
    assert first[4:8] == b"\0\0\0\0"  # gzip header mtime
    assert inspect_module_archive(io.BytesIO(first), ArchiveLimits()).file_count == 5


def test_symlink_outside_the_module_is_an_error(tmp_path: Path) -> None:
    outside = tmp_path / "outside.tf"
    outside.write_text("secret")
    module = make_tree(tmp_path / "module", {"main.tf": ""})
    (module / "evil.tf").symlink_to("../outside.tf")
    buf = io.BytesIO()
    with pytest.raises(ValueError, match=r"symlink evil.tf -> \.\./outside.tf points outside"):
        pack_module(module, buf)
    assert buf.getvalue() == b""
    (module / "evil.tf").unlink()
    (module / "abs.tf").symlink_to(outside)
    with pytest.raises(ValueError, match="points outside"):
        pack_module(module, io.BytesIO())


@pytest.mark.parametrize("target", ["shared", "missing.tf"])
def test_symlink_to_a_directory_or_nothing_is_an_error(tmp_path: Path, target: str) -> None:
    make_tree(tmp_path, {"main.tf": "", "shared/vars.tf": ""})
    (tmp_path / "link").symlink_to(target)
    with pytest.raises(ValueError, match=f"symlink link -> {target} does not point to a file"):
        pack_module(tmp_path, io.BytesIO())


def test_ignored_symlinks_are_not_checked(tmp_path: Path) -> None:
    make_tree(tmp_path, {"main.tf": "", ".terraformignore": "outside\n"})
    (tmp_path / "outside").symlink_to("/etc")
    assert pack_module(tmp_path, io.BytesIO()) == 2
