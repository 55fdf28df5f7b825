"""Reading provider docs archives: layouts, front matter, problems, and what is refused outright."""

from __future__ import annotations

import io
import random
import stat
import tarfile
import zipfile

import pytest

from tfregistry.provider_docs import DocsError, DocsLimits, parse_front_matter, read_docs_archive

INDEX = b'---\npage_title: "Provider: Foo"\ndescription: |-\n  The foo provider\n  manages things.\n---\n\n# Foo\n'
THING = (b'---\npage_title: "foo_thing Resource - terraform-provider-foo"\nsubcategory: "Compute"\n'
         b'description: |-\n  Manages a thing.\n---\n\n# foo_thing (Resource)\n\n## Example\n')


def tgz(files: dict[str, bytes], links: dict[str, str] | None = None, kind: bytes = tarfile.SYMTYPE) -> io.BytesIO:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
        for name, target in (links or {}).items():
            info = tarfile.TarInfo(name)
            info.type, info.linkname = kind, target
            tar.addfile(info)
    buf.seek(0)
    return buf


def zipped(files: dict[str, bytes], symlinks: dict[str, str] | None = None) -> io.BytesIO:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, data in files.items():
            zf.writestr(name, data)
        for name, target in (symlinks or {}).items():
            info = zipfile.ZipInfo(name)
            info.external_attr = (stat.S_IFLNK | 0o777) << 16
            zf.writestr(info, target)
    buf.seek(0)
    return buf


def test_public_registry_layout_with_front_matter() -> None:
    report = read_docs_archive(tgz({
        "docs/index.md": INDEX,
        "docs/resources/thing.md": THING,
        "docs/data-sources/thing.md": b"# foo_thing (Data Source)\n",
        "docs/ephemeral-resources/token.md": b"---\nsubcategory: Auth\n---\nbody\n",
        "docs/guides/getting-started.md": b"---\npage_title: 'Getting Started'\n---\nHello\n",
        "docs/functions/parse_id.md": b"---\npage_title: \"parse_id function\"\n---\n",
    }))
    assert report.problems == []
    pages = {(p.category, p.slug): p for p in report.pages}
    assert set(pages) == {("index", "index"), ("resources", "thing"), ("data-sources", "thing"),
                          ("ephemeral-resources", "token"), ("guides", "getting-started"), ("functions", "parse_id")}
    index = pages["index", "index"]
    assert (index.title, index.description, index.content) == ("Provider: Foo", "The foo provider\nmanages things.",
                                                                "# Foo\n")
    thing = pages["resources", "thing"]
    assert thing.subcategory == "Compute" and thing.path == "resources/thing.md"
    assert thing.title == "foo_thing Resource - terraform-provider-foo" and thing.description == "Manages a thing."
    assert pages["data-sources", "thing"].title == "foo_thing (Data Source)"  # from the first heading
    assert pages["ephemeral-resources", "token"].subcategory == "Auth"
    assert pages["guides", "getting-started"].title == "Getting Started"


@pytest.mark.parametrize("prefix", ["", "docs/", "terraform-provider-foo-1.0.0/docs/", "./"])
def test_docs_folder_anywhere_sensible(prefix: str) -> None:
    report = read_docs_archive(tgz({f"{prefix}index.md": INDEX, f"{prefix}resources/thing.md": THING}))
    assert sorted(p.path for p in report.pages) == ["index.md", "resources/thing.md"]


def test_contents_of_one_category_folder_only() -> None:
    report = read_docs_archive(tgz({"resources/a.md": b"# a", "resources/b.md": b"# b"}))
    assert [p.slug for p in report.pages] == ["a", "b"]


def test_zip_archives_are_read_and_directories_skipped() -> None:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("docs/", b"")
        zf.writestr("docs/resources/", b"")
        zf.writestr("docs/index.md", INDEX)
        zf.writestr("docs/resources/thing.md", THING)
    buf.seek(0)
    assert sorted(p.path for p in read_docs_archive(buf).pages) == ["index.md", "resources/thing.md"]


def test_legacy_website_layout() -> None:
    report = read_docs_archive(tgz({
        "website/docs/index.html.markdown": b'---\nlayout: "foo"\npage_title: "Provider: Foo"\n---\n# Foo\n',
        "website/docs/r/thing.html.markdown": b'---\nsubcategory: "Compute"\nlayout: "foo"\n---\n# foo_thing\n',
        "website/docs/d/thing.html.md": b"# data foo_thing\n",
        "website/docs/guides/intro.markdown": b"# Intro\n",
        "website/foo.erb": b"<% layout %>",
    }))
    pages = {(p.category, p.slug): p for p in report.pages}
    assert set(pages) == {("index", "index"), ("resources", "thing"), ("data-sources", "thing"), ("guides", "intro")}
    assert pages["resources", "thing"].subcategory == "Compute"
    assert report.problems == ["'website/foo.erb' is outside website/docs/; skipped"]


def test_files_out_of_place_are_listed_problems() -> None:
    report = read_docs_archive(tgz({
        "docs/index.md": INDEX,
        "docs/resources/thing.md": THING,
        "docs/stray.md": b"x",
        "docs/resource/typo.md": b"x",
        "docs/resources/nested/deep.md": b"x",
        "docs/resources/diagram.png": b"\x89PNG",
        "docs/guides/bad name.md": b"x",
        "docs/guides/latin1.md": "caf\xe9".encode("latin-1"),
        "docs/guides/nul.md": b"a\x00b",
        "docs/guides/open.md": b"---\npage_title: x\nno end\n",
        "README.md": b"x",
    }))
    assert sorted(p.path for p in report.pages) == ["guides/open.md", "index.md", "resources/thing.md"]
    problems = "\n".join(report.problems)
    for expected in ("'README.md' is outside docs/", "'docs/stray.md' is not in a known folder",
                     "'docs/resource/typo.md' is in 'resource/', not a known folder",
                     "'docs/resources/nested/deep.md' is in a sub-folder", "'docs/resources/diagram.png' is not a "
                     "Markdown page", "'docs/guides/bad name.md': page names are", "'docs/guides/latin1.md' is not "
                     "UTF-8", "'docs/guides/nul.md' contains NUL", "'docs/guides/open.md': front matter starts"):
        assert expected in problems, expected
    assert len(report.problems) == 9


@pytest.mark.parametrize(("archive", "message"), [
    (lambda: tgz({"docs/../evil.md": b"x"}), "'..' component"),
    (lambda: tgz({"/etc/docs/index.md": b"x"}), "absolute path"),
    (lambda: tgz({"docs/index.md": INDEX}, {"docs/resources/link.md": "../index.md"}), "symbolic link"),
    (lambda: tgz({"docs/index.md": INDEX}, {"docs/resources/hard.md": "docs/index.md"}, tarfile.LNKTYPE),
     "hard link"),
    (lambda: zipped({"docs/../../evil.md": b"x"}), "'..' component"),
    (lambda: zipped({"C:/docs/index.md": b"x"}), "absolute path"),
    (lambda: zipped({"docs/index.md": INDEX}, {"docs/guides/link.md": "/etc/passwd"}), "symbolic link"),
    (lambda: io.BytesIO(b"just text"), "must be a .tar.gz or a .zip"),
    (lambda: io.BytesIO(b"\x1f\x8bnot really gzip"), "invalid docs archive"),
    (lambda: io.BytesIO(b"PK\x03\x04broken"), "not a valid zip"),
    (lambda: tgz({"README.md": b"x", "main.go": b"package main"}), "no documentation pages found"),
])
def test_refused_archives(archive, message: str) -> None:
    with pytest.raises(DocsError, match=message) as caught:
        read_docs_archive(archive())
    assert caught.value.status == 400


def test_limits_are_413() -> None:
    limits = DocsLimits(max_pages=2, max_page_bytes=100, max_total_bytes=250)
    cases = [
        tgz({"docs/index.md": b"x" * 101}),
        zipped({"docs/index.md": b"x" * 101}),
        tgz({"docs/guides/a.md": b"a", "docs/guides/b.md": b"b", "docs/guides/c.md": b"c"}),
        tgz({f"docs/guides/{n}.md": b"x" * 90 for n in "abc"}),
    ]
    for archive, message in zip(cases, ["more than the limit of 100 bytes per page"] * 2
                                + ["more than 2 pages", "add up to more than 250 bytes"], strict=True):
        with pytest.raises(DocsError, match=message) as caught:
            read_docs_archive(archive, limits)
        assert caught.value.status == 413


def test_decompression_bomb_is_refused() -> None:
    bomb = tgz({"docs/index.md": INDEX, "docs/filler.bin": b"\x00" * (50 * 1024 * 1024)})
    with pytest.raises(DocsError, match="compressed more than") as caught:
        read_docs_archive(bomb)
    assert caught.value.status == 400


def test_skipped_big_files_count_against_the_unpacked_limit() -> None:
    noise = random.Random(1).randbytes(3 * 1024 * 1024)
    with pytest.raises(DocsError, match="larger than") as caught:
        read_docs_archive(tgz({"docs/index.md": INDEX, "docs/x.bin": noise}), DocsLimits(max_unpacked_bytes=2**20))
    assert caught.value.status == 413


@pytest.mark.parametrize(("text", "front", "body"), [
    ("no front matter\n", {}, "no front matter\n"),
    ('---\npage_title: "a \\"quoted\\" title" # not a comment\n---\nbody', {"page_title": 'a "quoted" title'},
     "body"),
    ("---\npage_title: plain # comment\nsubcategory: 'It''s'\n---\n\nbody", {"page_title": "plain",
                                                                             "subcategory": "It's"}, "body"),
    ("---\ndescription: >-\n  folded\n  text\nlayout: x\n---\nb", {"description": "folded text"}, "b"),
    ("---\nother: [1, 2]\n  - item\n---\nb", {}, "b"),
])
def test_front_matter(text: str, front: dict[str, str], body: str) -> None:
    assert parse_front_matter(text) == (front, body, None)


def test_oversized_markdown_outside_the_docs_folder_is_only_skipped() -> None:
    report = read_docs_archive(tgz({"repo/CHANGELOG.md": b"x" * 200, "repo/docs/index.md": b"# Foo\n"}),
                               DocsLimits(max_page_bytes=100))
    assert [p.path for p in report.pages] == ["index.md"]
    assert report.problems == ["'repo/CHANGELOG.md' is outside repo/docs/; skipped"]


def test_problems_are_capped() -> None:
    files = {"docs/index.md": INDEX, **{f"docs/img/{n}.png": b"x" for n in range(250)}}
    problems = read_docs_archive(tgz(files)).problems
    assert len(problems) == 201 and problems[-1] == "... and 50 more files skipped"
