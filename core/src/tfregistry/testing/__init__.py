"""Opt-in test kit for plugin authors: pytest fixtures and conformance suites."""

import pytest

# Plain ``assert`` in the kit reports values like in a test module, not a bare AssertionError.
pytest.register_assert_rewrite("tfregistry.testing.conformance", "tfregistry.testing.plugin")
