"""tfregistry storage backend for Azure Blob Storage."""

__version__ = "0.1.0"
