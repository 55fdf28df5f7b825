"""SQLAlchemy 2 models.  Alembic migrations in :mod:`tfregistry.migrations` create them.

Timestamps are stored in UTC and always come back timezone-aware, on SQLite too.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    DateTime,
    ForeignKey,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Text,
    TypeDecorator,
    UniqueConstraint,
    false,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


def utcnow() -> datetime:
    return datetime.now(UTC)


class UTCDateTime(TypeDecorator[datetime]):
    """A timezone-aware UTC timestamp on every database."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to a UTCDateTime column")
        return value.astimezone(UTC)

    def process_result_value(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)


class Organization(Base):
    __tablename__ = "organizations"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(64), unique=True)
    display_name: Mapped[str] = mapped_column(String(200), default="")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class User(Base):
    """A person.  ``site_admin`` users administer the whole registry (every organization)."""

    __tablename__ = "users"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    email: Mapped[str | None] = mapped_column(String(320), unique=True)
    name: Mapped[str] = mapped_column(String(200), default="")
    disabled: Mapped[bool] = mapped_column(Boolean, default=False)
    site_admin: Mapped[bool] = mapped_column(Boolean, default=False)
    #: Bumped on every disable and enable: browser sessions opened before it end for good.
    session_epoch: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    last_login_at: Mapped[datetime | None] = mapped_column(UTCDateTime)

    memberships: Mapped[list[Membership]] = relationship(back_populates="user", cascade="all, delete-orphan",
                                                         lazy="selectin")


class UserIdentity(Base):
    """A user's id at an identity provider (``oidc`` + ``sub``, ``azuread`` + ``tid/oid``)."""

    __tablename__ = "user_identities"
    __table_args__ = (UniqueConstraint("provider", "subject"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    provider: Mapped[str] = mapped_column(String(64))
    subject: Mapped[str] = mapped_column(String(255))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class RoleTemplate(Base):
    """A named set of scopes given to organization members (built-in: admin, mirror-manager, publisher, viewer)."""

    __tablename__ = "role_templates"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(64), unique=True)
    description: Mapped[str] = mapped_column(Text, default="")
    scopes: Mapped[list[str]] = mapped_column(JSON, default=list)
    builtin: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class Membership(Base):
    """A user's role in an organization.  ``source`` is ``manual`` or ``idp:<provider>`` (kept in step
    with the identity provider's claims at every sign-in)."""

    __tablename__ = "memberships"
    __table_args__ = (UniqueConstraint("user_id", "organization_id"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    organization_id: Mapped[int] = mapped_column(ForeignKey("organizations.id", ondelete="CASCADE"), index=True)
    role_id: Mapped[int] = mapped_column(ForeignKey("role_templates.id"))
    source: Mapped[str] = mapped_column(String(64), default="manual")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    user: Mapped[User] = relationship(back_populates="memberships")
    organization: Mapped[Organization] = relationship(lazy="joined")
    role: Mapped[RoleTemplate] = relationship(lazy="joined")


class Namespace(Base):
    """A module/provider namespace (the ``acme`` in ``acme/network/aws``).

    ``visibility`` is ``inherit`` (follow ``auth.anonymous_read``), ``public``
    (anyone may read, even without a token), ``authenticated`` (anyone with a valid
    token or session, of any organization) or ``private`` (members of its organization).
    """

    __tablename__ = "namespaces"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(64), unique=True)
    organization_id: Mapped[int | None] = mapped_column(ForeignKey("organizations.id"))
    visibility: Mapped[str] = mapped_column(String(16), default="inherit")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class ApiToken(Base):
    """An API token; only the SHA-256 digest of its secret is stored.

    ``kind``: ``site`` (registry-wide, made by ``tfr token create``), ``personal`` (acts as
    ``user_id``, never wider than the user's roles) or ``service`` (belongs to ``organization_id``).
    After a rotation with a grace period, ``previous_digest`` keeps working until
    ``previous_expires_at``.
    """

    __tablename__ = "api_tokens"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    #: The first characters of the secret, safe to show ("tfr_AbCd…").
    display_prefix: Mapped[str] = mapped_column(String(16))
    digest: Mapped[str] = mapped_column(String(64), unique=True)
    kind: Mapped[str] = mapped_column(String(16), default="site")
    scopes: Mapped[list[str]] = mapped_column(JSON, default=list)
    namespace: Mapped[str | None] = mapped_column(String(64))
    user_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    organization_id: Mapped[int | None] = mapped_column(ForeignKey("organizations.id"))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    last_used_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    last_used_ip: Mapped[str | None] = mapped_column(String(64))
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    rotated_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    previous_digest: Mapped[str | None] = mapped_column(String(64), index=True)
    previous_expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    #: What the token may publish in its namespace (``module:NAME/SYSTEM``, ``provider:TYPE``, ``*`` wildcards);
    #: ``None``: anything its scopes allow.  Set on tokens minted by trusted publishing.
    packages: Mapped[list[str] | None] = mapped_column(JSON)


class Module(Base):
    __tablename__ = "modules"
    __table_args__ = (UniqueConstraint("namespace_id", "name", "system"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    namespace_id: Mapped[int] = mapped_column(ForeignKey("namespaces.id"))
    name: Mapped[str] = mapped_column(String(64))
    system: Mapped[str] = mapped_column(String(64))
    description: Mapped[str] = mapped_column(Text, default="")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    namespace: Mapped[Namespace] = relationship(lazy="joined")
    versions: Mapped[list[ModuleVersion]] = relationship(back_populates="module", cascade="all, delete-orphan")


class ModuleVersion(Base):
    """One published, immutable version of a module."""

    __tablename__ = "module_versions"
    __table_args__ = (UniqueConstraint("module_id", "version"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    module_id: Mapped[int] = mapped_column(ForeignKey("modules.id", ondelete="CASCADE"))
    version: Mapped[str] = mapped_column(String(128))
    prerelease: Mapped[bool] = mapped_column(Boolean, default=False)
    description: Mapped[str] = mapped_column(Text, default="")
    storage_key: Mapped[str] = mapped_column(String(1024))
    size: Mapped[int] = mapped_column(BigInteger)
    sha256: Mapped[str] = mapped_column(String(64))
    readme: Mapped[str | None] = mapped_column(Text)
    deprecated: Mapped[bool] = mapped_column(Boolean, default=False)
    deprecation_reason: Mapped[str | None] = mapped_column(Text)
    published_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, index=True)
    published_by: Mapped[str] = mapped_column(String(200), default="")
    #: What :mod:`tfregistry.analysis` read from the archive (root, submodules, examples, problems);
    #: ``None`` until the version is analysed.  Loaded only when asked for: it can be large.
    analysis: Mapped[dict[str, Any] | None] = mapped_column(JSON, deferred=True)

    module: Mapped[Module] = relationship(back_populates="versions")


class GpgKey(Base):
    """A namespace's OpenPGP signing key: uploaded (public part only) or registry-managed."""

    __tablename__ = "gpg_keys"
    __table_args__ = (UniqueConstraint("namespace_id", "fingerprint"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    namespace_id: Mapped[int] = mapped_column(ForeignKey("namespaces.id"), index=True)
    fingerprint: Mapped[str] = mapped_column(String(40))
    key_id: Mapped[str] = mapped_column(String(16))
    ascii_armor: Mapped[str] = mapped_column(Text)
    source: Mapped[str] = mapped_column(String(200), default="")
    source_url: Mapped[str] = mapped_column(String(500), default="")
    #: Who registered the key (the actor's name; empty for keys added before migration 0017).
    created_by: Mapped[str] = mapped_column(String(200), default="", server_default="")
    #: Registry-managed keys keep their private part here, encrypted (Fernet) with a key from settings.
    private_key_encrypted: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime)

    namespace: Mapped[Namespace] = relationship(lazy="joined")

    @property
    def managed(self) -> bool:
        return self.private_key_encrypted is not None


class Provider(Base):
    """A provider: ``hostname`` is empty for the registry's own, else the origin registry it mirrors."""

    __tablename__ = "providers"
    __table_args__ = (UniqueConstraint("hostname", "namespace_id", "type"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    hostname: Mapped[str] = mapped_column(String(255), default="")
    namespace_id: Mapped[int] = mapped_column(ForeignKey("namespaces.id"))
    type: Mapped[str] = mapped_column(String(64))
    description: Mapped[str] = mapped_column(Text, default="")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    namespace: Mapped[Namespace] = relationship(lazy="joined")
    versions: Mapped[list[ProviderVersion]] = relationship(back_populates="provider", cascade="all, delete-orphan")


class ProviderVersion(Base):
    """One version of a provider: its protocols and its signed SHA256SUMS (absent for mirror imports)."""

    __tablename__ = "provider_versions"
    __table_args__ = (UniqueConstraint("provider_id", "version"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    provider_id: Mapped[int] = mapped_column(ForeignKey("providers.id", ondelete="CASCADE"))
    version: Mapped[str] = mapped_column(String(128))
    prerelease: Mapped[bool] = mapped_column(Boolean, default=False)
    protocols: Mapped[list[str]] = mapped_column(JSON, default=list)
    shasums_key: Mapped[str | None] = mapped_column(String(1024))
    signature_key: Mapped[str | None] = mapped_column(String(1024))
    shasums: Mapped[str | None] = mapped_column(Text)
    signing_key_id: Mapped[int | None] = mapped_column(ForeignKey("gpg_keys.id"))
    #: For versions mirrored from an upstream registry: the armored upstream key that verified them.
    upstream_key_armor: Mapped[str | None] = mapped_column(Text)
    deprecated: Mapped[bool] = mapped_column(Boolean, default=False)
    deprecation_reason: Mapped[str | None] = mapped_column(Text)
    published_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    published_by: Mapped[str] = mapped_column(String(200), default="")

    provider: Mapped[Provider] = relationship(back_populates="versions")
    signing_key: Mapped[GpgKey | None] = relationship(lazy="joined")
    packages: Mapped[list[ProviderPackage]] = relationship(
        back_populates="version", cascade="all, delete-orphan", lazy="selectin"
    )


class ProviderPackage(Base):
    """One platform's zip of a provider version, with the hashes lock files and mirrors use."""

    __tablename__ = "provider_packages"
    __table_args__ = (UniqueConstraint("provider_version_id", "os", "arch"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    provider_version_id: Mapped[int] = mapped_column(ForeignKey("provider_versions.id", ondelete="CASCADE"))
    os: Mapped[str] = mapped_column(String(32))
    arch: Mapped[str] = mapped_column(String(32))
    filename: Mapped[str] = mapped_column(String(255))
    storage_key: Mapped[str] = mapped_column(String(1024))
    size: Mapped[int] = mapped_column(BigInteger)
    #: Hex SHA-256 of the zip: the SHA256SUMS entry, and ``zh:`` in lock files.
    sha256: Mapped[str] = mapped_column(String(64))
    #: ``h1:`` (dirhash Hash1 of the contents).
    h1: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    version: Mapped[ProviderVersion] = relationship(back_populates="packages")



class ProviderDownloadTotal(Base):
    """How many times Terraform asked for a provider version's package (the registry protocol's
    ``download`` answer), counted by the download recorder in batches."""

    __tablename__ = "provider_download_totals"

    provider_version_id: Mapped[int] = mapped_column(ForeignKey("provider_versions.id", ondelete="CASCADE"),
                                                     primary_key=True)
    provider_id: Mapped[int] = mapped_column(ForeignKey("providers.id", ondelete="CASCADE"), index=True)
    count: Mapped[int] = mapped_column(BigInteger)


class ProviderDocPage(Base):
    """One page of a provider version's documentation (the public registry's ``docs/`` layout)."""

    __tablename__ = "provider_doc_pages"
    __table_args__ = (UniqueConstraint("provider_version_id", "path"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    provider_version_id: Mapped[int] = mapped_column(ForeignKey("provider_versions.id", ondelete="CASCADE"))
    #: The page's path inside ``docs/``, e.g. ``resources/instance.md``.
    path: Mapped[str] = mapped_column(String(512))
    #: ``index``, ``resources``, ``data-sources``, ``ephemeral-resources``, ``guides`` or ``functions``.
    category: Mapped[str] = mapped_column(String(32))
    #: The page's name in its category (``instance``); ``index`` for ``index.md``.
    slug: Mapped[str] = mapped_column(String(255))
    title: Mapped[str] = mapped_column(String(500), default="")
    subcategory: Mapped[str] = mapped_column(String(255), default="")
    description: Mapped[str] = mapped_column(Text, default="")
    content: Mapped[str] = mapped_column(Text)

class RegistryState(Base):
    """Small facts the registry keeps about itself, e.g. the storage backend a migration switched to."""

    __tablename__ = "registry_state"

    key: Mapped[str] = mapped_column(String(100), primary_key=True)
    value: Mapped[str] = mapped_column(Text)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)


class CatalogState(Base):
    """One row: ``generation`` grows with every change to what the protocols answer, or to who may read
    it.  Database triggers bump it in the writing transaction (migration 0006), so cached answers
    (:mod:`tfregistry.readcache`) can tell they are stale whatever code wrote the change."""

    __tablename__ = "catalog_state"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    generation: Mapped[int] = mapped_column(BigInteger)


class MirrorConfig(Base):
    """Which providers to copy from an upstream registry, and how often."""

    __tablename__ = "mirror_configs"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    #: The origin host providers are known by (``registry.terraform.io``); also where discovery goes
    #: unless ``upstream_url`` says otherwise.
    upstream_host: Mapped[str] = mapped_column(String(255))
    upstream_url: Mapped[str | None] = mapped_column(String(500))
    upstream_token_encrypted: Mapped[str | None] = mapped_column(Text)
    namespace: Mapped[str] = mapped_column(String(64))
    type: Mapped[str] = mapped_column(String(64))
    version_constraint: Mapped[str | None] = mapped_column(String(200))
    latest: Mapped[int | None] = mapped_column(Integer)
    platforms: Mapped[list[str]] = mapped_column(JSON, default=list)
    trusted_fingerprints: Mapped[list[str]] = mapped_column(JSON, default=list)
    interval_seconds: Mapped[int | None] = mapped_column(Integer)
    enabled: Mapped[bool] = mapped_column(Boolean, default=True)
    #: ``approved`` (synced), ``pending`` (waits for a mirror manager) or ``rejected``.
    status: Mapped[str] = mapped_column(String(16), default="approved")
    requested_by: Mapped[str] = mapped_column(String(200), default="")
    decided_by: Mapped[str | None] = mapped_column(String(200))
    decided_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    decision_note: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    last_run_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class MirrorPolicy(Base):
    """An allow or deny rule for what may be mirrored: ``pattern`` is ``host[/namespace[/type]]`` with
    ``*`` wildcards.  Deny rules win; once any allow rule exists, only what one allows may be mirrored."""

    __tablename__ = "mirror_policies"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    effect: Mapped[str] = mapped_column(String(8))
    pattern: Mapped[str] = mapped_column(String(400))
    description: Mapped[str] = mapped_column(Text, default="")
    created_by: Mapped[str] = mapped_column(String(200), default="")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class OAuthCode(Base):
    """A pending ``terraform login`` authorization code (single use, short-lived)."""

    __tablename__ = "oauth_codes"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    code: Mapped[str] = mapped_column(String(120), unique=True)
    client_id: Mapped[str] = mapped_column(String(64))
    redirect_uri: Mapped[str] = mapped_column(String(500))
    scope: Mapped[str] = mapped_column(String(500), default="")
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    code_challenge: Mapped[str | None] = mapped_column(String(128))
    code_challenge_method: Mapped[str | None] = mapped_column(String(16))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class MirrorRun(Base):
    """One sync of a mirror configuration: what it copied and what went wrong."""

    __tablename__ = "mirror_runs"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    config_id: Mapped[int] = mapped_column(ForeignKey("mirror_configs.id", ondelete="CASCADE"), index=True)
    #: running, succeeded, partial, failed, interrupted (its worker died)
    status: Mapped[str] = mapped_column(String(16), default="running")
    started_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    versions: Mapped[int] = mapped_column(Integer, default=0)
    packages: Mapped[int] = mapped_column(Integer, default=0)
    skipped: Mapped[int] = mapped_column(Integer, default=0)
    bytes: Mapped[int] = mapped_column(BigInteger, default=0)
    errors: Mapped[list[str]] = mapped_column(JSON, default=list)


class DownloadEvent(Base):
    """One answered module download request (Terraform asked where to fetch a version)."""

    __tablename__ = "download_events"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    module_version_id: Mapped[int] = mapped_column(ForeignKey("module_versions.id", ondelete="CASCADE"), index=True)
    at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    token_id: Mapped[int | None] = mapped_column(Integer)
    client_ip: Mapped[str | None] = mapped_column(String(64))
    user_agent: Mapped[str | None] = mapped_column(String(300))


class DownloadTotal(Base):
    """How many downloads a module version has had: kept with the events, read by lists and details."""

    __tablename__ = "download_totals"

    module_version_id: Mapped[int] = mapped_column(ForeignKey("module_versions.id", ondelete="CASCADE"),
                                                   primary_key=True)
    module_id: Mapped[int] = mapped_column(ForeignKey("modules.id", ondelete="CASCADE"), index=True)
    count: Mapped[int] = mapped_column(BigInteger)


class AuditEntry(Base):
    """Append-only audit log.  Database triggers refuse UPDATE and DELETE."""

    __tablename__ = "audit_log"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, index=True)
    actor: Mapped[str] = mapped_column(String(200))
    token_id: Mapped[int | None] = mapped_column(Integer)
    organization_id: Mapped[int | None] = mapped_column(Integer)
    action: Mapped[str] = mapped_column(String(64), index=True)
    target: Mapped[str] = mapped_column(String(500), default="")
    details: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    ip: Mapped[str | None] = mapped_column(String(64))
    request_id: Mapped[str | None] = mapped_column(String(64))


class NotificationSubscription(Base):
    """Who is told about which events, and how: ``organization_id`` ``None`` is a site-wide subscription
    (site administrators'); ``namespace`` narrows it to one namespace; ``notifier`` names a
    :class:`tfregistry.interfaces.Notifier` and ``target`` its settings without the secret ones, which
    are kept encrypted in ``secrets_encrypted`` (a JSON object, Fernet as mirror upstream tokens)."""

    __tablename__ = "notification_subscriptions"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    organization_id: Mapped[int | None] = mapped_column(ForeignKey("organizations.id", ondelete="CASCADE"),
                                                        index=True)
    events: Mapped[list[str]] = mapped_column(JSON, default=list)
    namespace: Mapped[str | None] = mapped_column(String(64))
    notifier: Mapped[str] = mapped_column(String(64))
    target: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    secrets_encrypted: Mapped[str | None] = mapped_column(Text)
    enabled: Mapped[bool] = mapped_column(Boolean, default=True)
    created_by: Mapped[str] = mapped_column(String(200), default="")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    organization: Mapped[Organization | None] = relationship(lazy="joined")


class NotificationDelivery(Base):
    """One event for one subscription: the delivery log.  ``id`` is the stable delivery id (the
    ``webhook-id``); ``status`` is ``pending``, ``delivered`` or ``dead`` (the dead-letter list)."""

    __tablename__ = "notification_deliveries"
    __table_args__ = (UniqueConstraint("event_id", "subscription_id"),)

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    subscription_id: Mapped[int] = mapped_column(
        ForeignKey("notification_subscriptions.id", ondelete="CASCADE"), index=True)
    event_id: Mapped[str] = mapped_column(String(40))
    event_type: Mapped[str] = mapped_column(String(64))
    event: Mapped[dict[str, Any]] = mapped_column(JSON)
    status: Mapped[str] = mapped_column(String(16), default="pending", index=True)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    last_error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    last_attempt_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    delivered_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class ExpiryNotice(Base):
    """An expiry notice raised: ``item`` (``token:12``, ``gpg_key:FINGERPRINT``) in the ``window_days``
    window before ``expires_at``.  The unique key makes each notice happen once, across restarts."""

    __tablename__ = "expiry_notices"
    __table_args__ = (UniqueConstraint("item", "window_days", "expires_at"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    item: Mapped[str] = mapped_column(String(80))
    window_days: Mapped[int] = mapped_column(Integer)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime)
    sent_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


__all__ = [
    "ApiToken",
    "AuditEntry",
    "Base",
    "CatalogState",
    "DownloadEvent",
    "ExpiryNotice",
    "GpgKey",
    "Membership",
    "MirrorConfig",
    "MirrorPolicy",
    "MirrorRun",
    "Module",
    "ModuleVersion",
    "Namespace",
    "NotificationDelivery",
    "NotificationSubscription",
    "OAuthCode",
    "Organization",
    "Provider",
    "ProviderPackage",
    "ProviderVersion",
    "RegistryState",
    "RoleTemplate",
    "User",
    "UserIdentity",
    "utcnow",
]


class TrustedPublisher(Base):
    """A CI identity allowed to exchange its OIDC token for a short-lived publish token in a namespace.

    ``platform``: ``github``, ``gitlab``, ``azure-devops`` or ``oidc`` (any issuer); ``conditions`` maps
    claim names to the pattern each must match; ``packages`` is what the minted token may publish.
    """

    __tablename__ = "trusted_publishers"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    namespace_id: Mapped[int] = mapped_column(ForeignKey("namespaces.id", ondelete="CASCADE"), index=True)
    platform: Mapped[str] = mapped_column(String(32))
    issuer: Mapped[str] = mapped_column(String(500), index=True)
    #: The discovery document's URL when it is not ``{issuer}/.well-known/openid-configuration``.
    discovery_url: Mapped[str | None] = mapped_column(String(500))
    conditions: Mapped[dict[str, str]] = mapped_column(JSON, default=dict)
    packages: Mapped[list[str]] = mapped_column(JSON, default=list)
    description: Mapped[str] = mapped_column(Text, default="")
    created_by: Mapped[str] = mapped_column(String(200), default="")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    namespace: Mapped[Namespace] = relationship(lazy="joined")


class UsedTokenId(Base):
    """An OIDC token id (``jti``) already exchanged, kept until the token expires: a replay is refused
    on every replica (the primary key is the lock)."""

    __tablename__ = "used_token_ids"

    issuer: Mapped[str] = mapped_column(String(500), primary_key=True)
    jti: Mapped[str] = mapped_column(String(255), primary_key=True)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime, index=True)


# --- SCM publishing ------------------------------------------------------------------------------


class ScmConnection(Base):
    """An organization's credentials for one source-control system (``provider``: a registered
    :class:`tfregistry.interfaces.ScmProvider` name)."""

    __tablename__ = "scm_connections"
    __table_args__ = (UniqueConstraint("organization_id", "name"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    organization_id: Mapped[int] = mapped_column(ForeignKey("organizations.id", ondelete="CASCADE"), index=True)
    name: Mapped[str] = mapped_column(String(64))
    provider: Mapped[str] = mapped_column(String(64))
    auth_method: Mapped[str] = mapped_column(String(16))
    base_url: Mapped[str | None] = mapped_column(String(500))
    username: Mapped[str | None] = mapped_column(String(200))
    #: JSON of the secrets (token, ssh_private_key), Fernet-encrypted like mirror upstream tokens.
    secrets_encrypted: Mapped[str | None] = mapped_column(Text)
    expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    #: ``oauth`` connections only: ``pending`` (authorization not completed), ``active``, or
    #: ``reauthorize`` (the refresh failed: an operator must run the authorization again).
    oauth_status: Mapped[str | None] = mapped_column(String(16))
    created_by: Mapped[str] = mapped_column(String(200), default="")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class ScmLink(Base):
    """A module published from a repository: tags matching ``tag_pattern`` become versions."""

    __tablename__ = "scm_links"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    connection_id: Mapped[int] = mapped_column(ForeignKey("scm_connections.id", ondelete="CASCADE"), index=True)
    repository: Mapped[str] = mapped_column(String(500))
    repository_url: Mapped[str] = mapped_column(String(500), default="")
    namespace: Mapped[str] = mapped_column(String(64))
    name: Mapped[str] = mapped_column(String(64))
    system: Mapped[str] = mapped_column(String(64))
    subdirectory: Mapped[str] = mapped_column(String(500), default="")
    tag_pattern: Mapped[str] = mapped_column(String(200), default="v{version}")
    webhook_secret_encrypted: Mapped[str] = mapped_column(Text)
    hook_id: Mapped[str | None] = mapped_column(String(200))
    enabled: Mapped[bool] = mapped_column(Boolean, default=True)
    #: Branch mode: versions may also be published from a chosen commit of a branch (POST .../publish).
    branch_mode: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    #: Monorepo discovery: every module folder directly under :attr:`subdirectory` is a module named after
    #: its folder (:attr:`name` is ``"*"``), published by the tags whose ``{name}`` is that name.
    discover_modules: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    created_by: Mapped[str] = mapped_column(String(200), default="")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    last_reconciled_at: Mapped[datetime | None] = mapped_column(UTCDateTime)

    connection: Mapped[ScmConnection] = relationship(lazy="joined")


class ScmDelivery(Base):
    """One webhook request received for a link: headers (secrets removed), outcome and latency."""

    __tablename__ = "scm_deliveries"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    link_id: Mapped[int] = mapped_column(ForeignKey("scm_links.id", ondelete="CASCADE"), index=True)
    delivery_id: Mapped[str | None] = mapped_column(String(200), index=True)
    received_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, index=True)
    headers: Mapped[dict[str, str]] = mapped_column(JSON, default=dict)
    body: Mapped[bytes] = mapped_column(LargeBinary)
    status_code: Mapped[int] = mapped_column(Integer)
    #: ``rejected: <reason>``, ``duplicate``, ``ignored``, ``queued: ...``, ``tag moved: ...``.
    outcome: Mapped[str] = mapped_column(Text, default="")
    latency_ms: Mapped[int] = mapped_column(Integer, default=0)
    redelivery_of: Mapped[int | None] = mapped_column(Integer)


class ScmViolation(Base):
    """A tag that moved after its version was published: the version keeps the original commit."""

    __tablename__ = "scm_violations"
    __table_args__ = (UniqueConstraint("module_version_id", "current_sha"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    link_id: Mapped[int | None] = mapped_column(ForeignKey("scm_links.id", ondelete="SET NULL"), index=True)
    module_version_id: Mapped[int] = mapped_column(ForeignKey("module_versions.id", ondelete="CASCADE"), index=True)
    tag: Mapped[str] = mapped_column(String(200))
    published_sha: Mapped[str] = mapped_column(String(64))
    current_sha: Mapped[str] = mapped_column(String(64))
    #: ``webhook`` or ``reconcile``.
    detected_by: Mapped[str] = mapped_column(String(16))
    delivery_id: Mapped[str | None] = mapped_column(String(200))
    detected_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class ScmProvenance(Base):
    """Where an SCM-published version came from."""

    __tablename__ = "scm_provenance"

    module_version_id: Mapped[int] = mapped_column(ForeignKey("module_versions.id", ondelete="CASCADE"),
                                                   primary_key=True)
    link_id: Mapped[int | None] = mapped_column(ForeignKey("scm_links.id", ondelete="SET NULL"), index=True)
    repository_url: Mapped[str] = mapped_column(String(500))
    commit_sha: Mapped[str] = mapped_column(String(64))
    #: ``""`` for a version published in branch mode (then :attr:`branch` is set).
    tag: Mapped[str] = mapped_column(String(200))
    #: The branch a branch-mode version was published from, else ``None``.
    branch: Mapped[str | None] = mapped_column(String(200))
    subdirectory: Mapped[str] = mapped_column(String(500), default="")
    delivery_id: Mapped[str | None] = mapped_column(String(200))
    triggered_by: Mapped[str] = mapped_column(String(200), default="")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
