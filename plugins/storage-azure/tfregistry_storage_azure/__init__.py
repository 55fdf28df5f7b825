"""tfregistry-storage-azure: keep the registry's objects in an Azure Blob Storage container."""

__version__ = "0.1.0"
