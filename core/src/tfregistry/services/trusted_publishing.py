"""Trusted publishing: a CI job exchanges the OIDC token its platform issues for a short-lived publish token.

An organization registers *trusted publishers* on a namespace: an issuer, claim conditions and
what may be published.  :func:`exchange` verifies the CI token (signature through the issuer's
JWKS, ``iss``, ``aud``, ``exp``/``nbf``/``iat`` with a small leeway, ``jti`` not seen before), finds
a publisher whose conditions the claims meet, and mints a service token of the namespace's
organization limited to that namespace, to the publisher's packages and to a short lifetime.
Refusals name the condition that failed; the token itself is never echoed or logged.

The claims are those the platforms document:

* GitHub Actions: https://docs.github.com/en/actions/reference/security/oidc
* GitLab CI/CD ``id_tokens``: https://docs.gitlab.com/ci/secrets/id_token_authentication/
* Azure DevOps workload identity federation (``sub`` is ``sc://ORG/PROJECT/SERVICE-CONNECTION``):
  https://learn.microsoft.com/rest/api/azure/devops/distributedtask/oidctoken/create
"""

from __future__ import annotations

import fnmatch
import json
import re
import threading
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlsplit

from joserfc import jws, jwt
from joserfc.errors import (
    BadSignatureError,
    ExpiredTokenError,
    InvalidClaimError,
    InvalidKeyIdError,
    JoseError,
    MissingAlgorithmError,
    MissingClaimError,
    UnsupportedAlgorithmError,
)
from sqlalchemy import delete, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from tfregistry.models import ApiToken, Namespace, Organization, TrustedPublisher, UsedTokenId, utcnow
from tfregistry.oidc import SAFE_ALGORITHMS, DiscoveryError, IssuerKeys
from tfregistry.services import NotFound, ServiceError
from tfregistry.services.audit import Actor, record
from tfregistry.services.tokens import create_token

#: Longest CI token accepted, in characters (real ones are 1-3 KB).
MAX_TOKEN_LENGTH = 16 * 1024
#: The audience Azure DevOps puts in every service connection's OIDC token (it cannot be chosen).
AZURE_DEVOPS_AUDIENCE = "api://AzureADTokenExchange"
#: Claims copied into the audit entry of an exchange when present.
AUDITED_CLAIMS = ("sub", "repository", "workflow_ref", "ref", "environment", "run_id", "run_attempt", "sha",
                  "project_path", "pipeline_id", "job_id", "rpo_uri", "rpo_ref", "rpo_ver", "def_id")


class Refused(ServiceError):
    """A CI token that cannot be exchanged: HTTP 401 with the condition that failed."""

    status = 401


@dataclass(frozen=True)
class Condition:
    """One condition a platform's publishers may set: how to read the value it is matched against."""

    name: str
    help: str
    read: Callable[[Mapping[str, Any]], str | None]


def _claim(name: str) -> Callable[[Mapping[str, Any]], str | None]:
    def read(claims: Mapping[str, Any]) -> str | None:
        value = claims.get(name)
        return None if value is None else str(value)
    return read


def _github_workflow(claims: Mapping[str, Any]) -> str | None:
    # workflow_ref: "octo-org/octo-repo/.github/workflows/release.yml@refs/heads/main" -> "release.yml"
    value = claims.get("workflow_ref")
    if not isinstance(value, str) or "/.github/workflows/" not in value:
        return None
    return value.split("/.github/workflows/", 1)[1].split("@", 1)[0]


def _azure_part(index: int) -> Callable[[Mapping[str, Any]], str | None]:
    # sub: "sc://<organization>/<project>/<service connection name>"
    def read(claims: Mapping[str, Any]) -> str | None:
        sub = claims.get("sub")
        if not isinstance(sub, str) or not sub.startswith("sc://"):
            return None
        parts = sub[len("sc://"):].split("/", 2)
        return parts[index] if len(parts) == 3 else None
    return read


@dataclass(frozen=True)
class Platform:
    """A CI platform: its issuer (``None``: the publisher names it), its conditions and the required ones."""

    name: str
    label: str
    issuer: str | None
    conditions: tuple[Condition, ...]
    required: tuple[str, ...]
    audited: tuple[str, ...] = field(default=AUDITED_CLAIMS)

    def condition(self, name: str) -> Condition | None:
        return next((c for c in self.conditions if c.name == name), None)


PLATFORMS: dict[str, Platform] = {p.name: p for p in (
    Platform("github", "GitHub Actions", "https://token.actions.githubusercontent.com", (
        Condition("repository", "owner/repository, e.g. acme/infra (claim repository)", _claim("repository")),
        Condition("workflow", "workflow file name, e.g. release.yml (from claim workflow_ref)", _github_workflow),
        Condition("ref", "git ref pattern, e.g. refs/tags/v* (claim ref)", _claim("ref")),
        Condition("environment", "deployment environment (claim environment)", _claim("environment")),
    ), ("repository",)),
    Platform("gitlab", "GitLab CI/CD", "https://gitlab.com", (
        Condition("project_path", "group/project, e.g. acme/infra (claim project_path)", _claim("project_path")),
        Condition("ref", "branch or tag pattern, e.g. v* (claim ref)", _claim("ref")),
        Condition("environment", "deployment environment (claim environment)", _claim("environment")),
    ), ("project_path",)),
    Platform("azure-devops", "Azure DevOps (workload identity federation)", None, (
        Condition("organization", "Azure DevOps organization name (from claim sub)", _azure_part(0)),
        Condition("project", "project name (from claim sub)", _azure_part(1)),
        Condition("service_connection", "service connection name (from claim sub)", _azure_part(2)),
    ), ("organization", "project", "service_connection")),
    Platform("oidc", "Any OpenID Connect issuer", None, (), ()),
)}

PACKAGE_RE = re.compile(r"^(module:[0-9A-Za-z*?_-]+/[0-9a-z*?]+|provider:[0-9a-z*?_-]+)$")


# --- managing publishers ----------------------------------------------------------------------------


def parse_issuer(value: str) -> str:
    """An ``https`` issuer URL (``http`` only on a loopback address), without a trailing slash."""
    text = (value or "").strip().rstrip("/")
    parts = urlsplit(text)
    loopback = parts.hostname in ("127.0.0.1", "localhost", "::1")
    if parts.scheme not in ("https", "http") or not parts.netloc or parts.query or parts.fragment \
            or (parts.scheme == "http" and not loopback):
        raise ServiceError(f"issuer {text!r} is not an https URL such as https://token.actions.githubusercontent.com")
    return text


def validate_packages(packages: Iterable[str]) -> list[str]:
    """``module:NAME/SYSTEM`` and ``provider:TYPE`` entries (``*``/``?`` wildcards), each once."""
    result: list[str] = []
    for raw in packages:
        for item in str(raw).replace(",", " ").split():
            if not PACKAGE_RE.match(item):
                raise ServiceError(f"package {item!r} is not module:NAME/SYSTEM or provider:TYPE (wildcards * and ? "
                                   "allowed), e.g. module:network/aws or provider:acme")
            if item not in result:
                result.append(item)
    if not result:
        raise ServiceError("a trusted publisher needs at least one package it may publish "
                           "(module:NAME/SYSTEM or provider:TYPE)")
    return result


def validate_conditions(platform: Platform, conditions: Mapping[str, Any]) -> dict[str, str]:
    """The publisher's conditions, checked against what ``platform`` offers; empty values are dropped."""
    result = {str(k).strip(): str(v).strip() for k, v in (conditions or {}).items() if v is not None and str(v).strip()}
    if platform.conditions:
        unknown = [k for k in result if platform.condition(k) is None]
        if unknown:
            offered = ", ".join(c.name for c in platform.conditions)
            raise ServiceError(f"{platform.label} publishers have no condition {unknown[0]!r} (offered: {offered})")
    else:
        bad = [k for k in result if not re.match(r"^[A-Za-z_][A-Za-z0-9_.:-]{0,99}$", k)]
        if bad:
            raise ServiceError(f"{bad[0]!r} is not a claim name")
        if not result:
            raise ServiceError("a publisher of any OpenID Connect issuer needs at least one claim condition, "
                               "e.g. sub=...")
    missing = [name for name in platform.required if name not in result]
    if missing:
        raise ServiceError(f"{platform.label} publishers need the condition {missing[0]!r}")
    return result


def add_publisher(session: Session, actor: Actor, namespace: Namespace, *, platform: str,
                  conditions: Mapping[str, Any], packages: Iterable[str], issuer: str | None = None,
                  discovery_url: str | None = None, description: str = "") -> TrustedPublisher:
    """Register a trusted publisher on ``namespace`` (audited).  The caller checked the permission."""
    kind = PLATFORMS.get(platform)
    if kind is None:
        raise ServiceError(f"platform must be one of {', '.join(PLATFORMS)}")
    chosen = parse_issuer(issuer) if issuer else kind.issuer
    if chosen is None:
        example = "https://vstoken.dev.azure.com/<organization id>" if platform == "azure-devops" else \
            "https://issuer.example.com"
        raise ServiceError(f"{kind.label} publishers need an issuer, e.g. {example}")
    publisher = TrustedPublisher(
        namespace_id=namespace.id, platform=platform, issuer=chosen,
        discovery_url=parse_issuer(discovery_url) if discovery_url else None,
        conditions=validate_conditions(kind, conditions), packages=validate_packages(packages),
        description=(description or "").strip(), created_by=actor.name,
    )
    session.add(publisher)
    session.flush()
    record(session, actor, "trusted_publisher.add", f"trusted_publisher:{publisher.id}", namespace=namespace.name,
           platform=platform, issuer=chosen, conditions=publisher.conditions, packages=publisher.packages)
    return publisher


def list_publishers(session: Session, namespace: Namespace) -> list[TrustedPublisher]:
    return list(session.scalars(select(TrustedPublisher).where(TrustedPublisher.namespace_id == namespace.id)
                                .order_by(TrustedPublisher.id)))


def get_publisher(session: Session, namespace: Namespace, publisher_id: int) -> TrustedPublisher:
    publisher = session.get(TrustedPublisher, publisher_id)
    if publisher is None or publisher.namespace_id != namespace.id:
        raise NotFound(f"trusted publisher {publisher_id} not found in namespace {namespace.name!r}")
    return publisher


def remove_publisher(session: Session, actor: Actor, publisher: TrustedPublisher) -> None:
    """Delete ``publisher`` (audited); tokens it minted keep working until they expire (minutes)."""
    record(session, actor, "trusted_publisher.remove", f"trusted_publisher:{publisher.id}",
           namespace=publisher.namespace.name, platform=publisher.platform, issuer=publisher.issuer)
    session.delete(publisher)


# --- what a minted token may publish ----------------------------------------------------------------


def package_allowed(patterns: Iterable[str] | None, kind: str, name: str) -> bool:
    """Whether a token limited to ``patterns`` (``None``: not limited) may write ``kind`` (``module`` with
    ``name`` ``NAME/SYSTEM``, or ``provider`` with ``name`` ``TYPE``)."""
    if patterns is None:
        return True
    wanted = f"{kind}:{name}"
    return any(fnmatch.fnmatchcase(wanted, pattern) for pattern in patterns)


# --- the exchange ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class ExchangeSettings:
    audience: str
    token_ttl: timedelta
    leeway: int = 30
    timeout: float = 10.0


@dataclass
class Exchanged:
    token: ApiToken
    secret: str
    publisher: TrustedPublisher
    claims: dict[str, Any]


_keys_lock = threading.Lock()


def issuer_keys(cache: dict[str, IssuerKeys], issuer: str, discovery_url: str | None, timeout: float) -> IssuerKeys:
    """The (cached) :class:`IssuerKeys` of an issuer: its JWKS is fetched once, and again on an unknown key id."""
    url = discovery_url or f"{issuer}/.well-known/openid-configuration"
    with _keys_lock:
        keys = cache.get(url)
        if keys is None:
            keys = cache[url] = IssuerKeys(url, timeout=timeout, hint=f"trusted publishers of issuer {issuer}",
                                           validate=_issuer_document_problems(issuer))
        return keys


def _issuer_document_problems(issuer: str) -> Callable[[dict[str, Any]], list[str]]:
    def problems(document: dict[str, Any]) -> list[str]:
        found = []
        if str(document.get("issuer", "")).rstrip("/") != issuer:
            found.append(f"the discovery document of {issuer} names the issuer {document.get('issuer')!r}")
        jwks_uri = document.get("jwks_uri")
        if not isinstance(jwks_uri, str):
            found.append(f"the discovery document of {issuer} has no 'jwks_uri'")
        else:
            try:
                parse_issuer(jwks_uri)
            except ServiceError:
                found.append(f"the discovery document of {issuer} names a jwks_uri that is not https: {jwks_uri}")
        return found
    return problems


def _unverified(token: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """The header and claims of a compact JWS before verification (only to choose the issuer's keys)."""
    if not isinstance(token, str) or not token or len(token) > MAX_TOKEN_LENGTH or token.count(".") != 2:
        raise Refused("the OIDC token is not a signed JWT (three base64url parts separated by dots)")
    try:
        compact = jws.extract_compact(token.encode())
        header = dict(compact.protected)
        claims = json.loads(compact.payload)
    except (JoseError, ValueError, TypeError):
        raise Refused("the OIDC token is not a signed JWT (malformed header or claims)") from None
    if not isinstance(claims, dict):
        raise Refused("the OIDC token's payload is not a JSON object of claims")
    alg = header.get("alg")
    if not isinstance(alg, str) or alg.lower() == "none" or not token.rsplit(".", 1)[1]:
        raise Refused("the OIDC token is unsigned (alg 'none'); refused")
    if alg not in SAFE_ALGORITHMS:
        raise Refused(f"the OIDC token is signed with algorithm {alg!r}, which is not accepted "
                      f"(accepted: {', '.join(SAFE_ALGORITHMS)})")
    return header, claims


def _verify(keys: IssuerKeys, token: str) -> dict[str, Any]:
    try:
        return dict(keys.decode(token).claims)
    except DiscoveryError as exc:
        raise ServiceError(f"the issuer's signing keys cannot be fetched right now: {exc}", status=503) from None
    except InvalidKeyIdError:
        raise Refused("the OIDC token is signed with a key its issuer does not publish in its JWKS") from None
    except BadSignatureError:
        raise Refused("the OIDC token's signature does not verify with its issuer's published keys") from None
    except (UnsupportedAlgorithmError, MissingAlgorithmError):
        raise Refused("the OIDC token is signed with an algorithm that is not accepted") from None
    except (JoseError, ValueError, TypeError):
        raise Refused("the OIDC token is malformed") from None


def _check_claims(claims: dict[str, Any], issuer: str, audience: str, leeway: int) -> None:
    registry = jwt.JWTClaimsRegistry(
        leeway=leeway,
        iss={"essential": True, "value": issuer},
        aud={"essential": True, "values": [audience]},
        exp={"essential": True},
        iat={"essential": True},
        jti={"essential": True},
    )
    try:
        registry.validate(claims)
    except ExpiredTokenError:
        raise Refused("the OIDC token has expired (exp is in the past)") from None
    except MissingClaimError as exc:
        raise Refused(f"the OIDC token lacks the required claim {exc.claim!r}") from None
    except InvalidClaimError as exc:
        if exc.claim == "aud":
            raise Refused(f"the OIDC token's audience {claims.get('aud')!r} is not this registry's audience "
                          f"{audience!r}") from None
        if exc.claim == "iss":
            raise Refused(f"the OIDC token's issuer {claims.get('iss')!r} is not {issuer!r}") from None
        if exc.claim == "nbf":
            raise Refused("the OIDC token is not valid yet (nbf is in the future)") from None
        if exc.claim == "iat":
            raise Refused("the OIDC token was issued in the future (iat; check the clocks)") from None
        raise Refused(f"the OIDC token's claim {exc.claim!r} is not valid") from None
    except JoseError:
        raise Refused("the OIDC token's claims are not valid") from None


def mismatch(publisher: TrustedPublisher, claims: Mapping[str, Any]) -> str | None:
    """The first condition of ``publisher`` the claims do not meet, described; ``None`` when all match."""
    platform = PLATFORMS[publisher.platform]
    for name, pattern in publisher.conditions.items():
        condition = platform.condition(name)
        value = condition.read(claims) if condition else _claim(name)(claims)
        if value is None:
            return f"{name}: the token has no value for it (expected {pattern!r})"
        if not fnmatch.fnmatchcase(value, pattern):
            return f"{name}: {value!r} does not match {pattern!r}"
    return None


def audience_for(publisher: TrustedPublisher, settings: ExchangeSettings) -> str:
    """The ``aud`` a publisher's tokens carry: the registry's audience; Azure DevOps tokens always carry
    :data:`AZURE_DEVOPS_AUDIENCE`."""
    return AZURE_DEVOPS_AUDIENCE if publisher.platform == "azure-devops" else settings.audience


def exchange(session: Session, token: str, settings: ExchangeSettings, keys_cache: dict[str, IssuerKeys],
             organization_of: Callable[[Namespace], Organization], actor: Actor,
             namespace: str | None = None) -> Exchanged:
    """Verify a CI platform's OIDC token and mint a publish token for the publisher it matches (in
    ``namespace`` when given; without it, publishers of several namespaces matching is refused as ambiguous).

    Raises :class:`Refused` naming the failed condition.  The minted token and the exchange are audited
    (the exchange with the claims that matched); the caller commits.
    """
    _, unverified = _unverified(token)
    issuer = str(unverified.get("iss", "")).rstrip("/")
    query = select(TrustedPublisher).where(TrustedPublisher.issuer == issuer).order_by(TrustedPublisher.id)
    if namespace:
        query = query.join(Namespace, Namespace.id == TrustedPublisher.namespace_id).where(Namespace.name == namespace)
    candidates = list(session.scalars(query)) if issuer else []
    if not candidates:
        where = f" in namespace {namespace!r}" if namespace else ""
        raise Refused(f"no trusted publisher{where} trusts the issuer {unverified.get('iss')!r}")
    claims = _verify(issuer_keys(keys_cache, issuer, candidates[0].discovery_url, settings.timeout), token)
    audiences = {audience_for(p, settings) for p in candidates}
    audience = next((a for a in audiences if a == claims.get("aud") or
                     (isinstance(claims.get("aud"), list) and a in claims["aud"])), settings.audience)
    _check_claims(claims, issuer, audience, settings.leeway)
    reasons = []
    matching: list[TrustedPublisher] = []
    for candidate in candidates:
        wanted = audience_for(candidate, settings)
        if wanted != audience:
            reasons.append(f"publisher {candidate.id}: aud: {claims.get('aud')!r} is not {wanted!r}")
            continue
        reason = mismatch(candidate, claims)
        if reason is None:
            matching.append(candidate)
        else:
            reasons.append(f"publisher {candidate.id} ({candidate.namespace.name}): {reason}")
    if not matching:
        raise Refused("no trusted publisher matches the OIDC token: " + "; ".join(reasons))
    namespaces = sorted({p.namespace.name for p in matching})
    if len(namespaces) > 1:
        raise Refused(f"trusted publishers of several namespaces match the OIDC token ({', '.join(namespaces)}): "
                      "name the namespace to publish in")
    publisher = matching[0]
    _remember_jti(session, issuer, str(claims["jti"]), claims.get("exp"))
    namespace = publisher.namespace
    organization = organization_of(namespace)
    scopes = sorted({"modules:write" if p.startswith("module:") else "providers:write" for p in publisher.packages})
    run = claims.get("run_id") or claims.get("pipeline_id") or claims.get("job_id") or ""
    matched = {name: claims[name] for name in AUDITED_CLAIMS if name in claims}
    matched.update({name: PLATFORMS[publisher.platform].condition(name).read(claims)  # type: ignore[union-attr]
                    for name in publisher.conditions if PLATFORMS[publisher.platform].condition(name)})
    minted_by = Actor(name=f"trusted-publisher:{publisher.id}", organization_id=organization.id, ip=actor.ip,
                      request_id=actor.request_id)
    api_token, secret = create_token(
        session, minted_by, name=f"trusted publisher {publisher.id} {publisher.platform} {run}".strip(),
        scopes=scopes, kind="service", organization=organization, namespace=namespace.name,
        expires_in=settings.token_ttl)
    api_token.packages = list(publisher.packages)
    record(session, minted_by, "trusted_publishing.exchange", f"token:{api_token.id}", publisher=publisher.id,
           namespace=namespace.name, issuer=issuer, claims=matched, packages=publisher.packages,
           expires_at=api_token.expires_at.isoformat() if api_token.expires_at else None)
    return Exchanged(api_token, secret, publisher, matched)


def _remember_jti(session: Session, issuer: str, jti: str, exp: Any) -> None:
    """Refuse a ``jti`` already exchanged; keep it until its token expires (a unique row in the database)."""
    now = utcnow()
    session.execute(delete(UsedTokenId).where(UsedTokenId.expires_at < now - timedelta(hours=1)))
    try:
        expires = datetime.fromtimestamp(int(exp), UTC)
    except (TypeError, ValueError, OverflowError):
        expires = now + timedelta(hours=1)
    try:
        with session.begin_nested():
            session.add(UsedTokenId(issuer=issuer, jti=jti[:255], expires_at=max(expires, now)))
    except IntegrityError:
        raise Refused("the OIDC token was already exchanged once (its jti was seen before): a replay") from None
