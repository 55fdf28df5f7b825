"""tfregistry-webui: the registry's server-rendered web UI (a ``tfregistry`` plugin)."""

__version__ = "0.1.0"
