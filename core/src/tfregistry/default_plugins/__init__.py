"""Built-in plugins: core features implemented with the same hooks third parties use."""
