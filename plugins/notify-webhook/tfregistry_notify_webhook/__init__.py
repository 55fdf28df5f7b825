"""tfregistry notifiers for webhooks (Standard Webhooks), Slack and Microsoft Teams."""

__version__ = "0.1.0"
