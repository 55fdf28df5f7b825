"""An example notifier: writes each event it is sent to a log file (a real one posts to a service)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from tfregistry.interfaces import Delivery, DeliveryError, Notifier


class FileNotifier(Notifier):
    """Appends one JSON line per delivery to the target's ``path``; ``token`` shows a secret setting."""

    #: Target settings the core stores encrypted and shows as ********.
    secret_fields = ("token",)

    def validate(self, target: dict[str, Any]) -> dict[str, Any]:
        path = target.get("path")
        if not isinstance(path, str) or not Path(path).is_absolute():
            raise ValueError("path must be an absolute file path")
        return {"path": path, **({"token": str(target["token"])} if target.get("token") else {})}

    def send(self, delivery: Delivery) -> None:
        line = json.dumps({"delivery": delivery.id, "attempt": delivery.attempt, **delivery.event.to_dict()})
        try:
            with open(delivery.target["path"], "a", encoding="utf-8") as fh:
                fh.write(line + "\n")
        except OSError as exc:  # retried by the core; the message goes to the delivery log
            raise DeliveryError(f"cannot write {delivery.target['path']}: {exc.strerror}") from None
