"""OpenTelemetry tracing for tfregistry (see README.md and docs/operations.md, "Tracing")."""

__version__ = "0.1.0"
