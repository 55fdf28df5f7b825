"""tfregistry-storage-local: keep the registry's objects as files in a local directory."""

__version__ = "0.1.0"
