"""Offers the ``webhook``, ``slack`` and ``teams`` notifiers."""

from __future__ import annotations

from typing import Any

from tfregistry import hookimpl
from tfregistry_notify_webhook.notifiers import SlackNotifier, TeamsNotifier, WebhookNotifier

TFR_PLUGIN_API = ">=1.2,<2"

TIMEOUT = "plugins.tfregistry-notify-webhook.timeout"


@hookimpl
def tfr_add_settings(settings: Any) -> None:
    settings.add(TIMEOUT, float, default=10.0,
                 help="Seconds to wait for a webhook receiver to connect and to answer; a slower one is retried.")


@hookimpl
def tfr_register_notifiers(register: Any) -> None:
    """``webhook`` (Standard Webhooks), ``slack`` (incoming webhook), ``teams`` (Workflows webhook)."""

    def factory(cls: type) -> Any:
        return lambda settings: cls(float(settings[TIMEOUT]))

    register.add("webhook", factory(WebhookNotifier), description="JSON POST signed the Standard Webhooks way")
    register.add("slack", factory(SlackNotifier), description="Slack incoming webhook (Block Kit)")
    register.add("teams", factory(TeamsNotifier), description="Microsoft Teams Workflows webhook (Adaptive Card)")


