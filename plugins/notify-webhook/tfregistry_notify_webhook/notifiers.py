"""The three notifiers: ``webhook`` (generic JSON, Standard Webhooks signature), ``slack`` (incoming
webhook with Block Kit blocks) and ``teams`` (a Microsoft Teams Workflows webhook with an Adaptive Card).

Standard Webhooks 1.0 (https://github.com/standard-webhooks/standard-webhooks/blob/main/spec/standard-webhooks.md):
headers ``webhook-id`` (the delivery id, the same on every retry), ``webhook-timestamp`` (integer Unix
seconds) and ``webhook-signature`` = ``v1,`` + base64 of HMAC-SHA256 over ``"{id}.{timestamp}.{body}"``,
keyed with the base64-decoded part of the ``whsec_...`` secret.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import time
from typing import Any
from urllib.parse import urlsplit

import requests

from tfregistry.interfaces import Delivery, DeliveryError, Event, Notifier

SECRET_PREFIX = "whsec_"


def sign(secret: str, msg_id: str, timestamp: int, body: bytes) -> str:
    """The ``webhook-signature`` header value for ``body`` (Standard Webhooks ``v1``)."""
    key = base64.b64decode(secret.removeprefix(SECRET_PREFIX))
    mac = hmac.new(key, f"{msg_id}.{timestamp}.".encode() + body, hashlib.sha256).digest()
    return "v1," + base64.b64encode(mac).decode()


def _check_url(value: Any, name: str = "url") -> str:
    if not isinstance(value, str) or not value:
        raise ValueError(f"{name} is required")
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"{name} must be an http(s) URL")
    return value


def _only(target: dict[str, Any], allowed: set[str]) -> None:
    extra = sorted(set(target) - allowed)
    if extra:
        raise ValueError(f"unknown settings: {', '.join(extra)} (allowed: {', '.join(sorted(allowed))})")


def post(url: str, body: bytes, headers: dict[str, str], timeout: float, show_url: bool) -> None:
    """POST ``body``; 2xx is success, 408/429/5xx and network failures are retried, other answers are
    permanent failures.  Messages name the URL only when ``show_url`` (Slack and Teams URLs are secrets)."""
    where = urlsplit(url).hostname if show_url else "the webhook URL"
    try:
        response = requests.post(url, data=body, headers={"Content-Type": "application/json", **headers},
                                 timeout=timeout, allow_redirects=False)
    except requests.Timeout:
        raise DeliveryError(f"{where} did not answer within {timeout:g}s") from None
    except requests.RequestException as exc:
        raise DeliveryError(f"could not reach {where}: {type(exc).__name__}") from None
    if 200 <= response.status_code < 300:
        return
    retry = response.status_code in (408, 429) or response.status_code >= 500
    raise DeliveryError(f"{where} answered HTTP {response.status_code}", permanent=not retry)


class WebhookNotifier(Notifier):
    """Generic JSON: the event as documented in docs/events.md, signed the Standard Webhooks way."""

    secret_fields = ("secret",)

    def __init__(self, timeout: float) -> None:
        self.timeout = timeout

    def validate(self, target: dict[str, Any]) -> dict[str, Any]:
        _only(target, {"url", "secret"})
        secret = target.get("secret")
        if not isinstance(secret, str) or not secret.startswith(SECRET_PREFIX):
            raise ValueError("secret is required: 'whsec_' followed by base64 (24 to 64 random bytes)")
        try:
            raw = base64.b64decode(secret.removeprefix(SECRET_PREFIX), validate=True)
        except (binascii.Error, ValueError):
            raise ValueError("secret must be 'whsec_' followed by base64") from None
        if not 24 <= len(raw) <= 64:
            raise ValueError("secret must hold 24 to 64 bytes")
        return {"url": _check_url(target.get("url")), "secret": secret}

    def send(self, delivery: Delivery) -> None:
        body = json.dumps(delivery.event.to_dict(), separators=(",", ":")).encode()
        timestamp = int(time.time())
        headers = {"webhook-id": delivery.id, "webhook-timestamp": str(timestamp),
                   "webhook-signature": sign(delivery.target["secret"], delivery.id, timestamp, body)}
        post(delivery.target["url"], body, headers, self.timeout, show_url=True)


def _facts(event: Event) -> list[tuple[str, str]]:
    facts = [("Event", event.type), ("By", event.actor), ("At", event.time.isoformat(timespec="seconds"))]
    if event.organization:
        facts.append(("Organization", event.organization))
    if event.namespace:
        facts.append(("Namespace", event.namespace))
    return facts


class ChatNotifier(Notifier):
    """A chat service's incoming webhook: its URL is the credential; :meth:`message` makes the body."""

    secret_fields = ("url",)

    def __init__(self, timeout: float) -> None:
        self.timeout = timeout

    def validate(self, target: dict[str, Any]) -> dict[str, Any]:
        _only(target, {"url"})
        return {"url": _check_url(target.get("url"))}

    @staticmethod
    def message(event: Event) -> dict[str, Any]:
        raise NotImplementedError

    def send(self, delivery: Delivery) -> None:
        body = json.dumps(self.message(delivery.event)).encode()
        post(delivery.target["url"], body, {}, self.timeout, show_url=False)


class SlackNotifier(ChatNotifier):
    """A Slack incoming webhook (https://api.slack.com/messaging/webhooks): ``text`` plus Block Kit blocks."""

    @staticmethod
    def message(event: Event) -> dict[str, Any]:
        """The Slack message for ``event``."""
        subject = event.subject()
        return {"text": subject, "blocks": [
            {"type": "section", "text": {"type": "mrkdwn", "text": f"*{subject}*"}},
            {"type": "section", "fields": [{"type": "mrkdwn", "text": f"*{k}*\n{v}"} for k, v in _facts(event)]},
            {"type": "context", "elements": [{"type": "mrkdwn", "text": f"tfregistry event {event.id}"}]},
        ]}


class TeamsNotifier(ChatNotifier):
    """A Microsoft Teams Workflows webhook ("Post to a channel when a webhook request is received")
    with an Adaptive Card (https://learn.microsoft.com/en-us/connectors/teams/#microsoft-teams-webhook)."""

    @staticmethod
    def message(event: Event) -> dict[str, Any]:
        """The Workflows request body: a message with one Adaptive Card attachment."""
        card = {
            "$schema": "http://adaptivecards.io/schemas/adaptive-card.json", "type": "AdaptiveCard",
            "version": "1.4",
            "body": [
                {"type": "TextBlock", "text": event.subject(), "weight": "Bolder", "size": "Medium", "wrap": True},
                {"type": "FactSet", "facts": [{"title": k, "value": v} for k, v in _facts(event)]},
            ],
        }
        return {"type": "message", "attachments": [
            {"contentType": "application/vnd.microsoft.card.adaptive", "contentUrl": None, "content": card}]}
