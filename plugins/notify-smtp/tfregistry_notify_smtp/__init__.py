"""tfregistry notifier for e-mail (SMTP)."""

__version__ = "0.1.0"
