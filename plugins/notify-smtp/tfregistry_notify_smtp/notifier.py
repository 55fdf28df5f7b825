"""The ``smtp`` notifier: one mail per delivery, plain text plus HTML, through the site's SMTP server.

The server is site configuration (``plugins.tfregistry-notify-smtp.*``); a subscription's target names
only the recipients: ``{"to": ["ops@example.com"]}``.  TLS is always on, 1.2 at least: ``starttls``
(port 587) or implicit ``tls`` (port 465), verifying the server's certificate against the system's CAs
or ``ca_file``.  Bodies come from Jinja templates: ``<event type>.txt``/``.html`` if there is one, else
``default.txt``/``.html``; a file of the same name in ``templates_dir`` overrides the built-in one.
"""

from __future__ import annotations

import re
import smtplib
import socket
import ssl
from email.message import EmailMessage
from email.utils import formatdate
from pathlib import Path
from typing import Any

import jinja2

from tfregistry.interfaces import Delivery, DeliveryError, Notifier

#: An address as people write them (the server decides the rest).
ADDRESS = re.compile(r"^[^@\s<>,;]+@[^@\s<>,;]+\.[^@\s<>,;]+$")
SECURITY = ("starttls", "tls")


class SmtpNotifier(Notifier):
    """Mail through one SMTP server, TLS 1.2 or later."""

    def __init__(self, *, host: str, port: int, security: str, sender: str, username: str | None = None,
                 password: str | None = None, ca_file: str | None = None, timeout: float = 10.0,
                 templates_dir: str | None = None) -> None:
        if security not in SECURITY:
            raise ValueError(f"security must be one of {', '.join(SECURITY)}")
        self.host, self.port, self.security, self.sender = host, port, security, sender
        self.username, self.password, self.timeout = username, password, timeout
        self.context = ssl.create_default_context(cafile=ca_file)
        self.context.minimum_version = ssl.TLSVersion.TLSv1_2
        loaders: list[jinja2.BaseLoader] = [jinja2.PackageLoader("tfregistry_notify_smtp", "templates")]
        if templates_dir:
            loaders.insert(0, jinja2.FileSystemLoader(str(Path(templates_dir))))
        self.text_env = jinja2.Environment(loader=jinja2.ChoiceLoader(loaders), autoescape=False,
                                           undefined=jinja2.StrictUndefined, keep_trailing_newline=True)
        self.html_env = jinja2.Environment(loader=jinja2.ChoiceLoader(loaders), autoescape=True,
                                           undefined=jinja2.StrictUndefined)

    def validate(self, target: dict[str, Any]) -> dict[str, Any]:
        extra = sorted(set(target) - {"to"})
        if extra:
            raise ValueError(f"unknown settings: {', '.join(extra)} (allowed: to)")
        to = target.get("to")
        if isinstance(to, str):
            to = [to]
        if not isinstance(to, list) or not to or not all(isinstance(a, str) and ADDRESS.match(a) for a in to):
            raise ValueError("to must be a list of e-mail addresses")
        if len(to) > 50:
            raise ValueError("to may hold at most 50 addresses")
        return {"to": to}

    def render(self, delivery: Delivery) -> EmailMessage:
        """The mail for ``delivery``."""
        event = delivery.event
        values = {"event": event, "subject": event.subject(), "site_url": delivery.site_url,
                  "delivery_id": delivery.id}
        text = self.text_env.select_template([f"{event.type}.txt", "default.txt"]).render(values)
        html = self.html_env.select_template([f"{event.type}.html", "default.html"]).render(values)
        message = EmailMessage()
        message["Subject"] = event.subject()
        message["From"] = self.sender
        message["To"] = ", ".join(delivery.target["to"])
        message["Date"] = formatdate(localtime=False)
        # the same id on every retry: mail systems and people can tell a resend
        message["Message-ID"] = f"<{delivery.id}@{self.sender.rpartition('@')[2] or 'tfregistry'}>"
        message["X-Tfregistry-Event"] = event.type
        message.set_content(text)
        message.add_alternative(html, subtype="html")
        return message

    def _connect(self) -> smtplib.SMTP:
        if self.security == "tls":
            return smtplib.SMTP_SSL(self.host, self.port, timeout=self.timeout, context=self.context)
        smtp = smtplib.SMTP(self.host, self.port, timeout=self.timeout)
        try:
            smtp.ehlo()
            if not smtp.has_extn("starttls"):
                raise DeliveryError(f"SMTP server {self.host}:{self.port} does not offer STARTTLS")
            smtp.starttls(context=self.context)
            smtp.ehlo()
        except BaseException:
            smtp.close()
            raise
        return smtp

    def send(self, delivery: Delivery) -> None:
        message = self.render(delivery)
        where = f"SMTP server {self.host}:{self.port}"
        try:
            with self._connect() as smtp:
                if self.username:
                    smtp.login(self.username, self.password or "")
                smtp.send_message(message)
        except smtplib.SMTPRecipientsRefused as exc:
            codes = {code for code, _ in exc.recipients.values()}
            raise DeliveryError(f"{where} refused the recipients ({', '.join(map(str, sorted(codes)))})",
                                permanent=all(c >= 500 for c in codes)) from None
        except smtplib.SMTPAuthenticationError as exc:
            raise DeliveryError(f"{where} refused the login ({exc.smtp_code})") from None
        except smtplib.SMTPResponseException as exc:
            raise DeliveryError(f"{where} answered {exc.smtp_code}", permanent=exc.smtp_code >= 500) from None
        except ssl.SSLError as exc:
            raise DeliveryError(f"TLS with {where} failed: {exc.reason or type(exc).__name__}") from None
        except (OSError, smtplib.SMTPException) as exc:
            kind = "timed out" if isinstance(exc, socket.timeout | TimeoutError) else type(exc).__name__
            raise DeliveryError(f"could not deliver through {where}: {kind}") from None
