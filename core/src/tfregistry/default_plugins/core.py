"""Core settings and the default answers of the protocol hooks."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from tfregistry import hookimpl
from tfregistry.settings import ByteSize, Duration, parse_networks, parse_secret, parse_url

if TYPE_CHECKING:
    from tfregistry.registry import ModuleVersionRef, Registry
    from tfregistry.settings import SettingsDeclarations


def parse_compression_ratio(value: Any) -> float:
    """``limits.max_compression_ratio``: 0 (the check is off) or a ratio of at least 1."""
    ratio = float(value)
    if not (ratio == 0 or 1 <= ratio < float("inf")):
        raise ValueError(f"{value!r} is not a compression ratio: use 0 (off) or a number of at least 1, such as 100")
    return ratio


def parse_token_ttl(value: Any) -> Duration:
    """``trusted_publishing.token_ttl``: a duration from 1 minute to 1 hour."""
    from tfregistry.settings import parse_duration

    ttl = parse_duration(value)
    if not 60 <= ttl <= 3600:
        raise ValueError(f"{value!r} is out of range: a minted publish token lives from 1m to 1h")
    return ttl


def parse_expiry_days(value: Any) -> list[int]:
    """A list of positive whole numbers of days (``[30, 7, 1]`` or ``"30,7,1"``)."""
    items = value if isinstance(value, list | tuple) else str(value).split(",")
    try:
        days = sorted({int(str(item).strip()) for item in items if str(item).strip()}, reverse=True)
    except ValueError:
        raise ValueError(f"{value!r} is not a list of whole numbers of days") from None
    if any(d <= 0 for d in days):
        raise ValueError(f"{value!r}: days must be positive")
    return days


@hookimpl
def tfr_add_settings(settings: SettingsDeclarations) -> None:
    add = settings.add
    add("public_url", parse_url, help="External base URL, e.g. https://registry.example.com. Without it, "
        "absolute URLs derive from the request (X-Forwarded-* honoured only from proxy.trusted).")
    add("data_dir", Path, default=".tfregistry",
        help="Directory for the embedded database, local storage, generated keys and certificates.")
    add("database_url", str, help="SQLAlchemy URL, e.g. postgresql+psycopg://user@host/db. "
        "Default: a SQLite file <data_dir>/registry.db.")
    add("database.connect_timeout", int, default=5,
        help="Seconds to wait for a new database connection (PostgreSQL) before the request fails with "
        "503 'the database is unavailable'.")
    add("database.pool_timeout", int, default=10,
        help="Seconds a request waits for a free pooled connection (all in use) before it fails with 503.")
    add("database.busy_timeout", int, default=10,
        help="SQLite: seconds a writer waits for the database lock before it fails with 503.")
    add("secret_key", parse_secret, secret=True, help="Key for signing download URLs. Required when several replicas "
        "serve the registry; by default one is generated once and kept in <data_dir>/secret_key.")
    add("log_level", str, default="INFO", choices=("DEBUG", "INFO", "WARNING", "ERROR"), help="Logging level.")
    add("log.format", str, default="text", choices=("text", "json"),
        help="`json`: one JSON object per line (time, level, logger, message, request_id; request lines add "
        "http.method/route/status/duration_ms/token_id), for gunicorn's error and access logs too. `text`: "
        "plain lines with the request id in brackets.")
    add("log.requests", bool, default=True,
        help="Write one line per HTTP request (logger tfregistry.access, INFO): method, route template, status, "
        "duration, token id. Under gunicorn, leave gunicorn's --access-logfile off, or turn this off, to avoid "
        "two lines per request.")
    add("proxy.request_id", bool, default=True,
        help="Take a request's id from the X-Request-Id header when the direct peer is a trusted proxy "
        "(proxy.trusted); any other caller's header is ignored and a new id is made.")
    add("http.cache_max_age", Duration, default="0s",
        help="Cache-Control max-age of the Terraform protocols' read answers (they always carry an ETag and "
        "answer If-None-Match with 304; `private`: answers depend on the caller's token). 0: `no-cache`, "
        "revalidate every time. Answers with signed download URLs are never kept longer than half their life.")
    add("storage.backend", str, default="local", help="Name of the active storage backend (see `tfr plugins`).")
    add("auth.anonymous_read", bool, default=False,
        help="Let requests without a token read namespaces whose visibility is `inherit`.")
    add("tenancy", str, default="single", choices=("single", "multi"),
        help="`single`: one implicit organization holds every namespace. `multi`: every namespace belongs to one "
        "organization, and other organizations' members cannot read or even see its private namespaces.")
    add("auth.providers", list, default=[],
        help="Sign-in methods to enable for people (web UI, `terraform login`), by name: oidc, azuread. Each "
        "needs its plugin installed and configured. Empty: API tokens only.")
    add("auth.session_lifetime", Duration, default="12h", help="How long a browser sign-in lasts.")
    add("auth.cookie_secure", bool, default=True,
        help="Mark the session cookie Secure (sent over HTTPS only). Turn off only for plain-HTTP test set-ups.")
    add("auth.terraform_login_token_ttl", Duration, default="90d",
        help="Lifetime of the personal token `terraform login` receives (0: no expiry).")
    add("limits.auth_failures", str, default="30/minute",
        help="Rate limit on failed authentications per client address (Flask-Limiter syntax); beyond it: 429.")
    add("limits.login", str, default="20/minute",
        help="Rate limit on sign-in and `terraform login` requests per address.")
    add("limits.uploads", str, default="120/minute", help="Rate limit on publish requests per address.")
    add("mirror.pull_through_index_ttl", Duration, default="10m",
        help="How long pull-through reuses an upstream's version list before asking it again.")
    add("mirror.require_approval", bool, default=False,
        help="Mirror configurations requested by callers without mirrors:manage wait until a mirror manager "
        "approves them.")
    add("limits.module_archive_max_bytes", ByteSize, default="100MiB",
        help="Largest module archive accepted (compressed), enforced while the upload streams in.")
    add("limits.module_uncompressed_max_bytes", ByteSize, default="500MiB",
        help="Largest total uncompressed size of a module archive (zip/gzip bomb guard).")
    add("limits.module_max_files", int, default=10000, help="Most files a module archive may contain.")
    add("limits.provider_package_max_bytes", ByteSize, default="500MiB",
        help="Largest provider package (zip) accepted.")
    add("limits.provider_upload_max_bytes", ByteSize, default="4GiB",
        help="Largest provider publish request (all packages together), enforced while it streams in.")
    add("limits.provider_uncompressed_max_bytes", ByteSize, default="2GiB",
        help="Largest total uncompressed size of one provider package (zip bomb guard).")
    add("limits.provider_docs_max_bytes", ByteSize, default="20MiB",
        help="Largest provider docs archive accepted (compressed), and the most Markdown its pages may hold.")
    add("limits.provider_docs_max_pages", int, default=2000, help="Most pages a provider version's docs may have.")
    add("limits.provider_docs_max_page_bytes", ByteSize, default="512KiB",
        help="Largest provider documentation page.")
    add("limits.max_compression_ratio", parse_compression_ratio, default=100,
        help="Module archives and provider zips (each zip entry, and each zip as a whole) may expand at most this "
        "many times their compressed size, checked while they are read once past 4 MiB unpacked (decompression "
        "bomb guard). 0 turns the check off.")
    add("gpg.encryption_key", parse_secret, secret=True,
        help="Key that encrypts the private part of registry-managed signing keys at rest. "
        "Default: derived from secret_key. Changing it makes existing managed keys unusable.")
    add("providers.hostnames", list, default=[],
        help="Extra host names (host[:port]) under which the network mirror serves this registry's own "
        "providers, besides the host of public_url and the host a request arrives on.")
    add("downloads.url_ttl", Duration, default="5m", help="Lifetime of signed download URLs handed to Terraform.")
    add("downloads.flush_interval", Duration, default="2s",
        help="Module download events are counted in memory and written in batches this often (and at shutdown), "
        "so a download never waits for a commit.")
    add("cache.enabled", bool, default=True,
        help="Replay the Terraform protocols' read answers from memory while the catalog is unchanged "
        "while the catalog generation is unchanged; see docs/performance.md).")
    add("cache.generation_heartbeat", float, default=0.5,
        help="Seconds. PostgreSQL: each process learns of catalog changes from NOTIFY and proves its "
        "listening connection alive this often; an answer is replayed only within twice this of the last "
        "proof (the bound on staleness should notifications stop). 0: read the generation on every request instead.")
    add("cache.ttl", Duration, default="60s",
        help="Longest a replayed answer is kept; also how stale download counts in module details may be.")
    add("cache.max_entries", int, default=20000, help="Most answers each process keeps for replay (least recently "
        "stored dropped first).")
    add("proxy.trusted", parse_networks, default=[],
        help="Addresses/networks of reverse proxies whose X-Forwarded-For/-Proto/-Host/-Prefix are honoured.")
    add("redis_url", str, secret=False, help="redis://[:password@]host:6379/0 for RQ background jobs. Unset: jobs "
        "run in a thread of the web process (the embedded default).")
    add("jobs.retries", int, default=3, help="Retries of a failed background job (with exponential backoff).")
    add("jobs.backoff_seconds", int, default=10, help="First retry delay; each later one doubles.")
    add("jobs.result_ttl", Duration, default="7d", help="How long finished jobs and their results are kept (RQ).")
    add("jobs.failure_ttl", Duration, default="30d", help="How long failed jobs stay visible (RQ).")
    add("jobs.timeout", Duration, default="1h", help="A job running longer is stopped and counted as failed.")
    add("jobs.storage_gc_interval", Duration, default="1d",
        help="How often `tfr scheduler` enqueues storage garbage collection (0 disables it).")
    add("jobs.heartbeat_seconds", int, default=10,
        help="A running RQ job refreshes a liveness key this often; a job whose key is gone (3 intervals) is "
        "known abandoned, and enqueueing it again (e.g. POST /api/v1/mirrors/ID/sync) queues it at once.")
    add("jobs.token_expiry_notice", Duration, default="7d",
        help="Note tokens expiring within this period (audit entry token.expiring, log warning); 0 disables.")
    add("jobs.mirror_tick_seconds", int, default=60,
        help="How often the scheduler looks for mirror configurations whose sync interval has elapsed.")
    add("jobs.scheduler_in_process", bool, default=True,
        help="Without redis_url, run periodic jobs (mirror syncs, storage gc) from a thread of each web process.")
    add("notify.max_attempts", int, default=5,
        help="Attempts at one notification delivery before it goes to the dead-letter list.")
    add("notify.backoff_seconds", int, default=30,
        help="Delay before a failed delivery's second attempt; each later one doubles.")
    add("notify.expiry_days", parse_expiry_days, default=[30, 7, 1],
        help="Days before expiry at which token.expiring and gpg_key.expiring are raised, once per item and window.")
    add("notify.tick_seconds", int, default=300,
        help="How often the scheduler raises due expiry notices and requeues deliveries whose worker died "
        "(0 disables both).")
    add("notify.requeue_after", Duration, default="5m",
        help="A pending delivery not attempted for this long is queued again (its worker died).")
    add("mirror.pull_through", bool, default=False,
        help="Answer network-mirror requests for providers not held yet by fetching them from an allowed upstream.")
    add("mirror.upstreams", list, default=["registry.terraform.io"],
        help="Upstream hosts pull-through may fetch from; 'host=https://url' to reach a host at another URL.")
    add("scm.reconcile_interval", Duration, default="1h",
        help="How often every SCM link is reconciled: missing matching tags published, moved tags recorded "
        "(0 disables).")
    add("plugins.load", list, help="Load only these plugin entry points (TFR_PLUGINS). Default: all installed.")
    add("plugins.disable", list, default=[], help="Never load these plugins (TFR_DISABLE_PLUGINS).")
    add("plugins.trace", bool, default=False, help="Log every plugin hook call (TFR_TRACE_PLUGINS).")
    add("trusted_publishing.audience", str, default="tfregistry",
        help="The `aud` CI OIDC tokens must carry to be exchanged at /api/v1/trusted-publishing/token (the CI job "
        "asks its platform for a token with this audience). Azure DevOps tokens always carry "
        "api://AzureADTokenExchange and are checked against that instead.")
    add("trusted_publishing.token_ttl", parse_token_ttl, default="15m",
        help="Lifetime of a publish token minted by trusted publishing; at most 1h.")
    add("trusted_publishing.leeway", Duration, default="30s",
        help="Clock skew tolerated when checking a CI token's exp, nbf and iat.")


@hookimpl
def tfr_service_discovery(registry: Registry) -> dict[str, Any]:
    # providers.v1 must end with "/": Terraform's provider client does not add it.
    services: dict[str, Any] = {"modules.v1": "/v1/modules/", "providers.v1": "/v1/providers/"}
    if registry.auth_providers:  # `terraform login` needs a way for people to sign in
        from tfregistry.protocol.login import login_discovery

        services["login.v1"] = login_discovery()
    return services


@hookimpl(trylast=True)
def tfr_module_download_location(registry: Registry, module_version: ModuleVersionRef) -> str:
    return registry.download_url(module_version.storage_key, module_version.filename)
