"""Signing keys per namespace: uploaded public keys and registry-managed keys."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

from sqlalchemy import select
from sqlalchemy.orm import Session

from tfregistry import gpg
from tfregistry.models import GpgKey, Namespace, ProviderVersion, utcnow
from tfregistry.services import Conflict, NotFound, ServiceError
from tfregistry.services.audit import Actor, record
from tfregistry.services.modules import get_or_create_namespace


def encryption_key(configured: str | None, secret_key: bytes) -> bytes:
    """The key that encrypts managed private keys: ``gpg.encryption_key``, else derived from ``secret_key``."""
    if configured:
        return configured.encode()
    return hashlib.sha256(b"tfregistry gpg encryption key\0" + secret_key).digest()


def active_keys(session: Session, namespace: Namespace) -> list[GpgKey]:
    """Keys of ``namespace`` that are not revoked, oldest first."""
    return list(session.scalars(
        select(GpgKey).where(GpgKey.namespace_id == namespace.id, GpgKey.revoked_at.is_(None)).order_by(GpgKey.id)
    ))


def list_keys(session: Session, namespaces: Sequence[str] | None = None) -> list[GpgKey]:
    stmt = select(GpgKey).join(GpgKey.namespace).order_by(GpgKey.id)
    if namespaces is not None:
        stmt = stmt.where(Namespace.name.in_(namespaces))
    return list(session.scalars(stmt))


def _check_namespace(namespace: str) -> None:
    """Keys belong to provider namespaces: refuse any other name (400) before it reaches gpg or storage."""
    from tfregistry.provider_packages import PackageError, validate_provider_address

    try:
        validate_provider_address(namespace, "key")
    except PackageError as exc:
        raise ServiceError(str(exc)) from None


def get_key(session: Session, key_id: int) -> GpgKey:
    key = session.get(GpgKey, key_id)
    if key is None:
        raise NotFound(f"no signing key with id {key_id}")
    return key


def add_public_key(
    session: Session, actor: Actor, namespace: str, ascii_armor: str, source: str = "", source_url: str = ""
) -> GpgKey:
    """Register an uploaded public key for ``namespace`` after checking it can sign and is current."""
    _check_namespace(namespace)
    try:
        parsed = gpg.parse_public_key(ascii_armor)
    except gpg.GpgError as exc:
        raise ServiceError(f"unusable signing key: {exc}") from None
    ns = get_or_create_namespace(session, namespace)
    existing = session.scalar(select(GpgKey).where(GpgKey.namespace_id == ns.id,
                                                   GpgKey.fingerprint == parsed.fingerprint))
    if existing is not None:
        raise Conflict(f"key {parsed.key_id} is already registered for namespace {namespace} (id {existing.id})")
    key = GpgKey(namespace=ns, fingerprint=parsed.fingerprint, key_id=parsed.key_id, ascii_armor=parsed.ascii_armor,
                 source=source, source_url=source_url, expires_at=parsed.expires, created_by=actor.name)
    session.add(key)
    session.flush()
    record(session, actor, "gpg_key.add", f"{namespace}/{parsed.key_id}", fingerprint=parsed.fingerprint)
    session.commit()
    return key


def create_managed_key(session: Session, actor: Actor, namespace: str, enc_key: bytes,
                       key_type: str = "ed25519") -> GpgKey:
    """Generate a signing key the registry holds, so unsigned uploads to ``namespace`` get signed."""
    _check_namespace(namespace)
    ns = get_or_create_namespace(session, namespace)
    if any(k.managed for k in active_keys(session, ns)):
        raise Conflict(f"namespace {namespace} already has a registry-managed signing key; revoke it first")
    try:
        managed = gpg.generate_key(f"tfregistry signing key for {namespace}", f"{namespace}@tfregistry.invalid",
                                   key_type=key_type)
    except gpg.GpgError as exc:
        raise ServiceError(f"cannot generate a signing key: {exc}", status=500) from None
    key = GpgKey(namespace=ns, fingerprint=managed.public.fingerprint, key_id=managed.public.key_id,
                 ascii_armor=managed.public.ascii_armor, source="tfregistry (registry-managed)",
                 private_key_encrypted=gpg.encrypt_private_key(managed.private_armor, enc_key), created_by=actor.name)
    session.add(key)
    session.flush()
    record(session, actor, "gpg_key.create_managed", f"{namespace}/{key.key_id}", fingerprint=key.fingerprint)
    session.commit()
    return key


def revoke_key(session: Session, actor: Actor, key: GpgKey) -> None:
    """Stop offering ``key``; versions signed only by it no longer install."""
    if key.revoked_at is None:
        key.revoked_at = utcnow()
        record(session, actor, "gpg_key.revoke", f"{key.namespace.name}/{key.key_id}", fingerprint=key.fingerprint)
        session.commit()


def managed_key(session: Session, namespace: Namespace) -> GpgKey | None:
    return next((k for k in active_keys(session, namespace) if k.managed), None)


def signed_versions(session: Session, keys: Sequence[GpgKey]) -> dict[int, list[ProviderVersion]]:
    """The provider versions each of ``keys`` signed (key id -> versions, newest publish first)."""
    from tfregistry.models import Provider

    found: dict[int, list[ProviderVersion]] = {key.id: [] for key in keys}
    if not found:
        return found
    stmt = (select(ProviderVersion).join(ProviderVersion.provider).where(ProviderVersion.signing_key_id.in_(found))
            .order_by(Provider.type, ProviderVersion.published_at.desc()))
    for pv in session.scalars(stmt):
        found[pv.signing_key_id].append(pv)
    return found
