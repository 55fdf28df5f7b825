"""Settings of the ``azure`` backend, parsed and checked without importing the Azure SDK.

:func:`config_from_settings` turns the ``storage.azure.*`` settings into an
:class:`AzureConfig`, choosing how to authenticate, and raises
:class:`tfregistry.StartupError` naming the setting (and its environment
variable) when something is missing or contradictory.  The backend module
builds the SDK client from the :class:`AzureConfig`.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from tfregistry import StartupError

__all__ = [
    "AUTH_MODES",
    "AzureConfig",
    "account_name_from_url",
    "config_from_settings",
    "env_var",
    "parse_access_tier",
    "parse_container",
    "parse_prefix",
    "parse_seconds",
    "parse_size",
]

SETTING_PREFIX = "storage.azure."

#: Values of ``storage.azure.auth``.
AUTH_MODES = ("auto", "connection_string", "account_key", "sas_token", "identity")

#: Limits of ``storage.azure.block_size``: the service accepts up to 4000 MiB per
#: block, but an upload holds ``block_size * (upload_concurrency + 1)`` bytes in memory.
MIN_BLOCK_SIZE = 64 * 1024
MAX_BLOCK_SIZE = 256 * 1024 * 1024
DEFAULT_BLOCK_SIZE = 4 * 1024 * 1024
MAX_UPLOAD_CONCURRENCY = 32

#: A user-delegation SAS (and the key that signs it) is valid for at most seven days.
MAX_SAS_LIFETIME = 7 * 24 * 3600

#: Access tiers a blob can be written with (``Archive`` is refused, see :func:`parse_access_tier`).
ACCESS_TIERS = ("Hot", "Cool", "Cold")

_SIZE_UNITS = {
    "": 1, "b": 1,
    "k": 1000, "kb": 1000, "kib": 1024,
    "m": 1000**2, "mb": 1000**2, "mib": 1024**2,
    "g": 1000**3, "gb": 1000**3, "gib": 1024**3,
}  # fmt: skip
_DURATION_UNITS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}
_CONTAINER = re.compile(r"^(?=.{3,63}$)[a-z0-9](?:[a-z0-9]|-(?=[a-z0-9]))*$")
_PREFIX_SEGMENT = re.compile(r"^[A-Za-z0-9._+@=-]+$")


def env_var(key: str) -> str:
    """The environment variable of a setting: ``storage.azure.container`` -> ``TFR_STORAGE__AZURE__CONTAINER``."""
    return "TFR_" + key.upper().replace(".", "__")


def _name(key: str) -> str:
    return f"{key} ({env_var(key)})"


def parse_size(value: Any) -> int:
    """A byte size between 64 KiB and 256 MiB: ``4194304``, ``"4MiB"``, ``"8MB"``, ``"512KiB"``."""
    if isinstance(value, bool):
        raise ValueError(f"{value!r} is not a size")
    if isinstance(value, int):
        result = value
    else:
        m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([A-Za-z]*)\s*", str(value))
        if not m or m.group(2).lower() not in _SIZE_UNITS:
            raise ValueError(f"{value!r} is not a size (examples: 4194304, 4MiB, 8MB)")
        result = int(float(m.group(1)) * _SIZE_UNITS[m.group(2).lower()])
    if not MIN_BLOCK_SIZE <= result <= MAX_BLOCK_SIZE:
        raise ValueError(f"{value!r} is outside 64KiB..256MiB")
    return result


def parse_seconds(value: Any) -> float:
    """A positive number of seconds: ``5``, ``2.5``, ``"90s"``, ``"15m"``, ``"1h"``, ``"7d"``."""
    if isinstance(value, bool):
        raise ValueError(f"{value!r} is not a duration")
    if isinstance(value, int | float):
        result = float(value)
    else:
        m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([a-z]?)\s*", str(value).lower())
        if not m:
            raise ValueError(f"{value!r} is not a duration (examples: 5, 2.5, 90s, 15m, 1h, 7d)")
        result = float(m.group(1)) * _DURATION_UNITS[m.group(2)]
    if result <= 0:
        raise ValueError(f"{value!r} is not a positive duration")
    return result


def parse_access_tier(value: Any) -> str:
    """``Hot``, ``Cool`` or ``Cold`` (any case); empty means the account's default tier.

    ``Archive`` is refused: an archived blob cannot be read until it is rehydrated,
    which takes hours, so every download (and the start-up probe) would fail.
    """
    text = str(value).strip()
    if not text:
        return ""
    for tier in ACCESS_TIERS:
        if text.lower() == tier.lower():
            return tier
    if text.lower() == "archive":
        raise ValueError(
            "'Archive' cannot be used: archived blobs cannot be downloaded until they are rehydrated "
            "(hours); use Hot, Cool or Cold, and move old objects to Archive with a lifecycle rule if needed"
        )
    raise ValueError(f"{text!r} is not an access tier (use Hot, Cool or Cold)")


def parse_container(value: Any) -> str:
    """An Azure container name: 3-63 of ``a-z0-9-``, starting and ending with a letter or digit, no ``--``."""
    text = str(value).strip()
    if text and not _CONTAINER.match(text):
        raise ValueError(
            f"{text!r} is not a valid container name (3-63 lower-case letters, digits and single hyphens, "
            "starting and ending with a letter or digit)"
        )
    return text


def parse_prefix(value: Any) -> str:
    """A key prefix such as ``registry`` or ``tenants/a``; kept as ``registry/`` (or ``""``)."""
    text = str(value).strip().strip("/")
    if not text:
        return ""
    for segment in text.split("/"):
        if segment in (".", "..") or not _PREFIX_SEGMENT.match(segment):
            raise ValueError(f"{value!r} is not a valid key prefix (segments of A-Z a-z 0-9 . _ + @ = -)")
    return text + "/"


@dataclass(frozen=True)
class AzureConfig:
    """Everything the backend needs to connect; secrets are kept out of ``repr``.

    ``auth`` is resolved: ``connection_string``, ``account_key``, ``sas_token`` or
    ``identity`` (never ``auto``).  ``auto_selected`` tells whether ``auth`` was
    chosen by ``auto`` (for messages).
    """

    container: str
    auth: str
    account_url: str = ""
    account_name: str = ""
    connection_string: str = ""
    account_key: str = ""
    sas_token: str = ""
    managed_identity_client_id: str = ""
    prefix: str = ""
    block_size: int = DEFAULT_BLOCK_SIZE
    upload_concurrency: int = 4
    access_tier: str = ""
    connect_timeout: float = 5.0
    read_timeout: float = 60.0
    retries: int = 3
    presigned_urls: bool = True
    sas_lifetime: float | None = None
    auto_selected: bool = False

    def __repr__(self) -> str:
        return (
            f"AzureConfig(container={self.container!r}, auth={self.auth!r}, account_url={self.account_url!r}, "
            f"account_name={self.account_name!r}, prefix={self.prefix!r})"
        )


def account_name_from_url(url: str) -> str:
    """The storage account of a blob endpoint URL.

    ``https://acct.blob.core.windows.net`` -> ``acct``; for emulator-style URLs whose
    host is an IP address or ``localhost`` (``http://127.0.0.1:10000/devstoreaccount1``),
    the first path segment.
    """
    parts = urlsplit(url)
    host = parts.hostname or ""
    if host == "localhost" or re.fullmatch(r"[0-9.]+|[0-9a-fA-F:]+", host) or "." not in host:
        return parts.path.strip("/").split("/")[0]
    return host.split(".")[0]


def _text(settings: Mapping[str, Any], name: str) -> str:
    value = settings.get(SETTING_PREFIX + name)
    return "" if value is None else str(value).strip()


def _optional(settings: Mapping[str, Any], name: str) -> Any:
    return settings.get(SETTING_PREFIX + name)


def config_from_settings(settings: Mapping[str, Any]) -> AzureConfig:
    """Check the ``storage.azure.*`` settings and choose how to authenticate.

    With ``storage.azure.auth = "auto"`` (the default) the one of
    ``connection_string``, ``account_key`` and ``sas_token`` that is set is used;
    with none of them, ``DefaultAzureCredential`` (managed identity, workload
    identity...).  Setting more than one of them is an error, so a forgotten value
    never wins silently.  Raises :class:`StartupError` naming the setting at fault.
    """
    p = SETTING_PREFIX
    container = _text(settings, "container")
    if not container:
        raise StartupError(f'{_name(p + "container")} is required when storage.backend = "azure"')
    auth = _text(settings, "auth") or "auto"
    if auth not in AUTH_MODES:
        raise StartupError(f"{_name(p + 'auth')}: {auth!r} is not one of: {', '.join(AUTH_MODES)}")
    secrets = {
        "connection_string": _text(settings, "connection_string"),
        "account_key": _text(settings, "account_key"),
        "sas_token": _text(settings, "sas_token").lstrip("?"),
    }
    account_url = _text(settings, "account_url").rstrip("/")
    account_name = _text(settings, "account_name")

    auto_selected = auth == "auto"
    if auto_selected:
        given = [name for name, value in secrets.items() if value]
        if len(given) > 1:
            raise StartupError(
                "storage.azure: "
                + " and ".join(_name(p + n) for n in given)
                + (" are both set" if len(given) == 2 else " are all set")
                + f"; set only one, or choose one with {_name(p + 'auth')}"
            )
        auth = given[0] if given else "identity"
    elif auth in secrets and not secrets[auth]:
        raise StartupError(f'{_name(p + auth)} is required when storage.azure.auth = "{auth}"')

    if account_url:
        parts = urlsplit(account_url)
        if parts.scheme not in ("http", "https") or not parts.netloc or parts.query:
            raise StartupError(
                f"{_name(p + 'account_url')}: {account_url!r} is not a blob endpoint URL such as "
                "https://myaccount.blob.core.windows.net"
            )
    if auth != "connection_string":
        if not account_url and account_name:
            account_url = f"https://{account_name}.blob.core.windows.net"
        if not account_url:
            chosen = " (chosen because no connection_string, account_key or sas_token is set)" if auto_selected else ""
            raise StartupError(
                f"{_name(p + 'account_name')} or {_name(p + 'account_url')} is required "
                f'when storage.azure.auth = "{auth}"{chosen}'
            )
        account_name = account_name or account_name_from_url(account_url)
        if not account_name:
            raise StartupError(
                f"{_name(p + 'account_name')}: cannot tell the storage account from {account_url!r}; set it"
            )
        if auth == "identity" and urlsplit(account_url).scheme != "https":
            raise StartupError(
                f"{_name(p + 'account_url')} must be https:// when authenticating with DefaultAzureCredential "
                "(storage.azure.auth = \"identity\"): Azure refuses bearer tokens over plain HTTP"
            )

    sas_lifetime = _optional(settings, "sas_lifetime")
    if sas_lifetime is not None and sas_lifetime > MAX_SAS_LIFETIME:
        raise StartupError(f"{_name(p + 'sas_lifetime')}: at most 7 days (604800 s)")
    retries = _optional(settings, "retries")
    if retries is not None and not 0 <= retries <= 10:
        raise StartupError(f"{_name(p + 'retries')}: must be between 0 and 10")
    concurrency = _optional(settings, "upload_concurrency")
    if concurrency is not None and not 1 <= concurrency <= MAX_UPLOAD_CONCURRENCY:
        raise StartupError(f"{_name(p + 'upload_concurrency')}: must be between 1 and {MAX_UPLOAD_CONCURRENCY}")

    names = (
        "prefix", "block_size", "upload_concurrency", "access_tier", "connect_timeout", "read_timeout",
        "retries", "presigned_urls",
    )  # fmt: skip
    optional = {name: _optional(settings, name) for name in names if _optional(settings, name) is not None}
    return AzureConfig(
        container=container,
        auth=auth,
        account_url=account_url,
        account_name=account_name,
        connection_string=secrets["connection_string"] if auth == "connection_string" else "",
        account_key=secrets["account_key"] if auth == "account_key" else "",
        sas_token=secrets["sas_token"] if auth == "sas_token" else "",
        managed_identity_client_id=_text(settings, "managed_identity_client_id"),
        sas_lifetime=sas_lifetime,
        auto_selected=auto_selected,
        **optional,
    )
