"""tfregistry-example: a skeleton to copy when starting a tfregistry plugin."""

__version__ = "0.1.0"
