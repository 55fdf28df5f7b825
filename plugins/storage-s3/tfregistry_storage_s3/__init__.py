"""tfregistry storage backend for AWS S3 and S3-compatible services."""

__version__ = "0.1.0"
