"""Prometheus metrics for tfregistry (see README.md and docs/operations.md)."""

__version__ = "0.1.0"
