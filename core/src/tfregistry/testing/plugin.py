"""Pytest fixtures for plugin authors.

Opt in from the top-level ``conftest.py`` (or a test module)::

    pytest_plugins = ["tfregistry.testing.plugin"]
"""

from __future__ import annotations

import gzip
import io
import tarfile
from collections.abc import Callable, Mapping

import pytest

__all__ = ["build_module_archive", "make_module_archive"]


def build_module_archive(
    name: str = "example",
    files: Mapping[str, str | bytes] | None = None,
) -> bytes:
    """Build a small, valid Terraform module archive (``.tar.gz``) in memory.

    It holds a ``main.tf`` and a ``README.md`` at the top level, plus ``files``
    (relative path to content), which may also replace those two.  The bytes are
    reproducible: the same arguments give the same archive.
    """
    contents: dict[str, str | bytes] = {
        "main.tf": f'variable "name" {{\n  type    = string\n  default = "{name}"\n}}\n\n'
        'output "name" {\n  value = var.name\n}\n',
        "README.md": f"# {name}\n\nA module built by tfregistry.testing for tests.\n",
    }
    contents.update(files or {})
    tar_bytes = io.BytesIO()
    with tarfile.open(fileobj=tar_bytes, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for path in sorted(contents):
            data = contents[path]
            raw = data.encode() if isinstance(data, str) else data
            info = tarfile.TarInfo(path)
            info.size = len(raw)
            info.mode = 0o644
            info.mtime = 0
            tar.addfile(info, io.BytesIO(raw))
    return gzip.compress(tar_bytes.getvalue(), mtime=0)


@pytest.fixture
def make_module_archive() -> Callable[..., bytes]:
    """Factory fixture returning ``.tar.gz`` bytes of a small module.

    ``make_module_archive(name="vpc", files={"variables.tf": "..."})``; see :func:`build_module_archive`.
    """
    return build_module_archive
