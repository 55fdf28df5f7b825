"""tfregistry storage backend for Google Cloud Storage."""

__version__ = "0.1.0"
