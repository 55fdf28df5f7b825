"""Offers the ``smtp`` notifier, configured from ``plugins.tfregistry-notify-smtp.*``."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from tfregistry import StartupError, hookimpl
from tfregistry_notify_smtp.notifier import SECURITY, SmtpNotifier

TFR_PLUGIN_API = ">=1.2,<2"

PREFIX = "plugins.tfregistry-notify-smtp."


@hookimpl
def tfr_add_settings(settings: Any) -> None:
    add = settings.add
    add(PREFIX + "host", str, help="SMTP server host name. Unset: the smtp notifier refuses to send.")
    add(PREFIX + "port", int, default=587, help="SMTP server port (587 for starttls, 465 for tls).")
    add(PREFIX + "security", str, default="starttls", choices=list(SECURITY),
        help="starttls (upgrade a plain connection) or tls (implicit TLS); TLS 1.2 at least, always.")
    add(PREFIX + "sender", str, help="From address of notification mail.")
    add(PREFIX + "username", str, help="SMTP login, if the server wants one (only after TLS is up).")
    add(PREFIX + "password", str, secret=True, help="SMTP password.")
    add(PREFIX + "ca_file", str, help="PEM file of the CA that signed the server's certificate (default: the "
        "system's CAs).")
    add(PREFIX + "timeout", float, default=10.0, help="Seconds to wait on the server at each step.")
    add(PREFIX + "templates_dir", str, help="Directory of templates overriding the built-in ones "
        "(<event type>.txt/.html, default.txt/.html).")


def make_notifier(settings: Mapping[str, Any]) -> SmtpNotifier:
    """The notifier from settings; without host and sender it is still offered but refuses to send."""
    host, sender = settings[PREFIX + "host"], settings[PREFIX + "sender"]
    if not host or not sender:
        return UnconfiguredSmtp()
    try:
        return SmtpNotifier(host=host, port=settings[PREFIX + "port"], security=settings[PREFIX + "security"],
                            sender=sender, username=settings[PREFIX + "username"],
                            password=settings[PREFIX + "password"], ca_file=settings[PREFIX + "ca_file"],
                            timeout=float(settings[PREFIX + "timeout"]),
                            templates_dir=settings[PREFIX + "templates_dir"])
    except (OSError, ValueError) as exc:
        raise StartupError(f"tfregistry-notify-smtp: {exc}") from exc


class UnconfiguredSmtp(SmtpNotifier):
    """The ``smtp`` notifier of a site that has not configured a server: subscriptions are refused."""

    def __init__(self) -> None:
        pass

    def validate(self, target: dict[str, Any]) -> dict[str, Any]:
        raise ValueError(f"no SMTP server is configured: set {PREFIX}host and {PREFIX}sender")

    def send(self, delivery: Any) -> None:
        from tfregistry.interfaces import DeliveryError

        raise DeliveryError(f"no SMTP server is configured: set {PREFIX}host and {PREFIX}sender")


@hookimpl
def tfr_register_notifiers(register: Any) -> None:
    """``smtp``: mail to the addresses a subscription names."""
    register.add("smtp", make_notifier, description="e-mail through the site's SMTP server")
