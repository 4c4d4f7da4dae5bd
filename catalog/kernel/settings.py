"""The one typed configuration object; built once by `mesh` or a test, never at import time."""

import hmac
import ipaddress
import math
import os
import re
import string
from functools import lru_cache
from pathlib import Path
from typing import Literal, Self
from urllib.parse import urlsplit

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

# HHS OCR (2000 Census) and Microsoft's anonymizer (2010 ZCTAs) lists, united.
RESTRICTED_ZIP3 = (
    "036",
    "059",
    "063",
    "102",
    "203",
    "205",
    "369",
    "556",
    "692",
    "790",
    "821",
    "823",
    "830",
    "831",
    "878",
    "879",
    "884",
    "890",
    "893",
)


MIN_SECRET_CHARS = 32
MIN_SECRET_BITS = 128
WEAK_SECRETS = frozenset({"changeme", "secret", "password", "demo", "test", "default"})
# Words and keyboard runs that guessers try first; each counts as one guess of ~2**10.
COMMON_PARTS = (
    "password",
    "passwort",
    "changeme",
    "letmein",
    "welcome",
    "secret",
    "admin",
    "token",
    "default",
    "qwerty",
    "qwertz",
    "azerty",
    "asdf",
    "zxcv",
    "test",
    "demo",
    "mesh",
    "pass",
    "key",
)
_CLASSES = (string.ascii_lowercase, string.ascii_uppercase, string.digits, string.punctuation)
GENERATE = "python -c 'import secrets; print(secrets.token_urlsafe(48))'"


def estimated_bits(secret: str) -> float:
    """A conservative estimate of a secret's entropy, in bits.

    A repeated block counts once (`password1234password1234...` is `password1234`); each
    character costs log2 of the alphabet its character classes span, except one that extends
    a run of repeated or consecutive characters (`aaa`, `1234`, `fedc`: 1 bit from the
    third on) and the common
    words and keyboard runs of COMMON_PARTS (10 bits each). Random keys of 32+ URL-safe or hex
    characters estimate well above 128 bits; human patterns far below.
    """
    core = _shortest_period(secret)
    pool = sum(len(chars) for chars in _CLASSES if any(c in chars for c in core))
    pool += 100 if any(ord(c) > 127 for c in core) else 0
    per_char = math.log2(max(pool, 2))
    lowered = core.lower()
    bits, i, run = 0.0, 0, None
    while i < len(core):
        word = next((w for w in COMMON_PARTS if lowered.startswith(w, i)), None)
        if word is not None:
            bits, i, run = bits + 10, i + len(word), None
            continue
        step = ord(core[i]) - ord(core[i - 1]) if i else None
        continues = step is not None and step == run and abs(step) <= 1
        bits += 1 if continues else per_char
        i, run = i + 1, step
    return bits


def _shortest_period(text: str) -> str:
    """The shortest block whose repetition (the last copy possibly cut short) is `text`."""
    for size in range(1, len(text)):
        if all(text[i] == text[i - size] for i in range(size, len(text))):
            return text[:size]
    return text


def secret_problem(value: str) -> str | None:
    """Why `value` must not be a secret setting (to follow the setting's name), or None."""
    if len(value) < MIN_SECRET_CHARS or value.lower() in WEAK_SECRETS:
        return f"must be set to a random secret of at least {MIN_SECRET_CHARS} characters"
    bits = estimated_bits(value)
    if bits < MIN_SECRET_BITS:
        return (
            f"is guessable: its repetitions, runs or common words leave about {int(bits)} "
            f"estimated bits of the {MIN_SECRET_BITS} needed"
        )
    return None


class Settings(BaseSettings):
    """Everything configurable, read from `MESH_*` environment variables.

    `home` holds the embedded defaults (SQLite database, local Delta storage, profile files);
    `database_url` and `storage_url` move either to PostgreSQL or object storage.
    """

    model_config = SettingsConfigDict(env_prefix="MESH_", extra="ignore")

    home: Path = Field(default=Path(".mesh"), description="Folder for the embedded defaults.")
    database_url: str | None = Field(
        default=None,
        description="SQLAlchemy URL; default is SQLite at HOME/catalog.db. "
        "PostgreSQL: postgresql+psycopg://user@host/db",
    )
    storage_url: str | None = Field(
        default=None,
        description="Root for Delta tables: a local folder (default HOME/storage) or "
        "s3://, az://, gs:// URL.",
    )
    storage_options: dict[str, str] = Field(
        default_factory=dict,
        description="deltalake storage options for object storage (JSON in MESH_STORAGE_OPTIONS).",
    )
    publish_source_roots: list[Path] | dict[str, list[Path]] = Field(
        default_factory=list,
        description="Where the publish API may read a domain's sources: a list of folders, each "
        "holding one folder per domain (`<root>/<domain>/`; default HOME/sources), or an object "
        'naming each domain\'s folders (`{"st-marys": ["/exports/stm"]}`).',
    )
    restricted_zip3: list[str] = Field(
        default_factory=lambda: list(RESTRICTED_ZIP3),
        description="3-digit ZIP areas of 20,000 people or fewer: de-identified as 000.",
    )
    admin_token: SecretStr | None = Field(
        default=None,
        description="Bootstrap bearer token acting as a platform admin (MESH_ADMIN_TOKEN).",
    )
    oidc_issuer: str | None = Field(default=None, description="Accept JWTs from this issuer.")
    oidc_audience: str | None = None
    oidc_jwks: str | None = Field(
        default=None, description="JWKS as JSON, a file path, or an http(s) URL to fetch it from."
    )
    oidc_principal_claim: str = Field(
        default="sub", description="JWT claim holding the principal name."
    )
    # Console sign-in with the issuer (authorization code flow with PKCE); on when both the
    # issuer and the client id are set. The discovery document and JWKS come from the issuer.
    oidc_client_id: str | None = Field(
        default=None, description="The console's client id at the OIDC issuer."
    )
    oidc_client_secret: SecretStr | None = Field(
        default=None, description="The console's client secret (none: a public client, PKCE only)."
    )
    oidc_redirect_url: str | None = Field(
        default=None,
        description="Callback URL registered at the issuer (default: this server's "
        "/console/sign-in/oidc/callback).",
    )
    policy_refresh_seconds: float = Field(
        default=2.0,
        ge=0,
        description="How often a policy check made outside a request looks for changes "
        "(requests always see the revision committed before them).",
    )
    grant_review_days: int = Field(
        default=90, ge=1, description="Grants are re-reviewed this often."
    )
    grant_review_grace_days: int = Field(
        default=14, ge=0, description="A grant overdue for review this long is suspended."
    )
    deprecation_notice_days: int = Field(
        default=30, ge=0, description="A deprecated version is still served this long."
    )
    signing_key: SecretStr | None = Field(
        default=None,
        description="HMAC key for file URLs and page tokens; unset: random per process "
        "(every server process of one deployment must share a key).",
    )
    auth_failure_limit: int = Field(
        default=10, ge=1, description="Failed authentications per address or token id..."
    )
    auth_failure_window_seconds: float = Field(
        default=300, gt=0, description="...within this window, before further attempts get 429."
    )
    url_lifetime_seconds: int = Field(
        default=3600, ge=60, le=7 * 86400, description="Lifetime of pre-signed file URLs."
    )
    db_lock_timeout_seconds: float = Field(
        default=5,
        gt=0,
        le=600,
        description="Longest wait for a database lock (a row, the publish or audit lock; SQLite: "
        "the write lock); then the request answers 409 with Retry-After.",
    )
    db_idle_in_transaction_seconds: float = Field(
        default=300,
        ge=0,
        description="PostgreSQL ends a session idle inside a transaction this long, releasing "
        "its locks (0: never).",
    )
    db_pool_timeout_seconds: float = Field(
        default=10,
        gt=0,
        description="Longest wait for a pooled database connection; then 503 with Retry-After.",
    )
    shutdown_drain_seconds: float = Field(
        default=10,
        gt=0,
        le=600,
        description="On SIGTERM, requests in flight get this long to finish; then the server "
        "exits anyway.",
    )
    host: str = "127.0.0.1"
    port: int = Field(default=8080, ge=1, le=65535)
    default_page_size: int = Field(default=50, ge=1)
    max_page_size: int = Field(default=500, ge=1)
    max_manifest_bytes: int = Field(
        default=5 * 1024 * 1024, ge=1, description="Largest products file `mesh apply` reads."
    )
    max_manifest_nodes: int = Field(
        default=200_000, ge=1, description="Most YAML values a products file may expand to."
    )
    max_manifest_depth: int = Field(default=32, ge=1)
    max_request_bytes: int = Field(default=2 * 1024 * 1024, ge=1024)
    log_sql: bool = False
    log_format: Literal["json", "text"] = Field(
        default="json", description="Server log lines: one JSON object per line, or plain text."
    )
    audit_relay: Path | None = Field(
        default=None,
        description="Unix socket of the audit relay process; `mesh serve --workers` sets it.",
    )
    audit_checkpoint_every: int = Field(
        default=1000, ge=0, description="Record the audit chain head every N entries (0: never)."
    )

    # Notifications (policies/notifications/): the in-app inbox always; webhook and e-mail
    # delivery only when configured. Deliveries leave from an outbox after commit, retried.
    public_url: str | None = Field(
        default=None,
        description="Base URL of this service for links in e-mails and webhooks "
        "(default http://HOST:PORT).",
    )
    notify_webhook_url: str | None = Field(
        default=None,
        description="POST every notification as JSON here; https, except on a loopback address.",
    )
    notify_webhook_secret: SecretStr | None = Field(
        default=None,
        description="HMAC-SHA256 key of the X-Mesh-Signature header (required with a webhook).",
    )
    notify_webhook_timeout_seconds: float = Field(default=5, gt=0, le=60)
    notify_smtp_host: str | None = Field(
        default=None, description="Send notification e-mails through this SMTP server."
    )
    notify_smtp_port: int = Field(default=587, ge=1, le=65535)
    notify_smtp_starttls: bool = Field(
        default=True, description="Upgrade the SMTP connection with STARTTLS before anything else."
    )
    notify_smtp_ca_file: Path | None = Field(
        default=None,
        description="CA bundle that signs the SMTP server's certificate (default: the system's).",
    )
    notify_smtp_username: str | None = None
    notify_smtp_password: SecretStr | None = None
    notify_smtp_from: str = Field(default="fhir-mesh@localhost", max_length=254)
    notify_smtp_timeout_seconds: float = Field(default=10, gt=0, le=120)
    notify_admin_emails: list[str] = Field(
        default_factory=list,
        description="Where e-mails meant for the platform admins go (principals have no address).",
    )
    notify_max_attempts: int = Field(
        default=8, ge=1, le=50, description="Delivery attempts before a delivery is marked failed."
    )
    notify_retry_seconds: float = Field(
        default=30, gt=0, description="First retry delay; it doubles with each failed attempt..."
    )
    notify_retry_max_seconds: float = Field(default=3600, gt=0, description="...up to this.")
    notify_poll_seconds: float = Field(
        default=5,
        ge=0,
        description="How often a server process delivers from the outbox (0: it does not; run "
        "`mesh notifications deliver`).",
    )

    @field_validator("notify_webhook_url")
    @classmethod
    def _webhook_https(cls, value: str | None) -> str | None:
        if value is not None and (problem := webhook_url_problem(value)) is not None:
            raise ValueError(problem)
        return value

    @model_validator(mode="after")
    def _webhook_signed(self) -> Self:
        if self.notify_webhook_url and not self.notify_webhook_secret:
            raise ValueError(
                "MESH_NOTIFY_WEBHOOK_URL needs MESH_NOTIFY_WEBHOOK_SECRET to sign with"
            )
        return self

    @property
    def link_base(self) -> str:
        """The absolute base of links sent out of the process (e-mails, webhooks)."""
        return (self.public_url or f"http://{self.host}:{self.port}").rstrip("/")

    @property
    def resolved_database_url(self) -> str:
        """The database URL in force: the explicit one, or SQLite under `home`."""
        if self.database_url:
            return self.database_url
        return f"sqlite:///{(self.home / 'catalog.db').resolve()}"

    @property
    def storage_root(self) -> str:
        """Where Delta tables and raw payloads live."""
        return self.storage_url or _resolved(self.home / "storage")

    @property
    def profiles_dir(self) -> Path:
        """Where Delta Sharing profile files are written."""
        return self.home / "profiles"

    def source_roots(self, domain: str) -> list[Path]:
        """Folders a publish request for a product of `domain` may read from.

        A list names parents of per-domain folders (`<root>/<domain>/`), an object each domain's
        own folders; a domain it does not name may read nothing.
        """
        if not _DOMAIN.fullmatch(domain):  # a path segment such as `..` names no folder
            return []
        given = self.publish_source_roots
        if isinstance(given, dict):
            return [p.resolve() for p in given.get(domain, [])]
        return [(p / domain).resolve() for p in (given or [self.home / "sources"])]

    def production_problems(self) -> list[str]:
        """Why these settings must not serve real data (empty when they may).

        Missing or weak keys are fine for `mesh demo`; `mesh serve` refuses them, because a
        guessable signing key forges file URLs and a per-process key breaks every URL the
        moment a second process or a restart serves it.
        """
        problems = []
        key = self.signing_key.get_secret_value() if self.signing_key else ""
        if (problem := secret_problem(key)) is not None:
            problems.append(f"MESH_SIGNING_KEY {problem} (e.g. `{GENERATE}`)")
        admin = self.admin_token.get_secret_value() if self.admin_token else None
        if admin is not None:
            if (problem := secret_problem(admin)) is not None:
                problems.append(f"MESH_ADMIN_TOKEN, when set, {problem}")
            elif hmac.compare_digest(admin.encode(), key.encode()):
                problems.append(
                    "MESH_ADMIN_TOKEN must differ from MESH_SIGNING_KEY: whoever holds the "
                    "admin token could forge file URLs, and a leaked URL key would be the admin"
                )
        webhook = self.notify_webhook_secret
        if webhook is not None and (problem := secret_problem(webhook.get_secret_value())):
            # Receivers trust what carries a valid signature: a guessable key forges notices.
            problems.append(f"MESH_NOTIFY_WEBHOOK_SECRET, when set, {problem}")
        return problems

    def ensure_home(self) -> None:
        """Create the home folder layout used by the embedded defaults, owner-only (0700).

        The home holds the catalog database, the full tier, raw payloads and the surrogate
        mappings: an existing home that others could read is closed too.
        """
        for folder in (
            self.home,
            self.profiles_dir,
            *([Path(self.storage_root)] if self.storage_url is None else []),
        ):
            folder.mkdir(mode=0o700, parents=True, exist_ok=True)
            found = folder.stat()
            if found.st_mode & 0o077 and found.st_uid == os.getuid():
                folder.chmod(0o700)


def webhook_url_problem(url: str) -> str | None:
    """Why a webhook URL is refused (https required, except for a loopback host), or None."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return f"webhook URL {url!r} must be an http(s) URL with a host"
    if parts.scheme == "https" or is_loopback(parts.hostname):
        return None
    return f"webhook URL {url!r} must use https (plain http only to a loopback address)"


def is_loopback(host: str) -> bool:
    """`localhost` or a loopback IP address (127.0.0.0/8, ::1)."""
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


# A domain name (catalog.products.models.SLUG_PATTERN, not imported: settings import nothing).
_DOMAIN = re.compile(r"[a-z][a-z0-9]*(?:-[a-z0-9]+)*")


@lru_cache(maxsize=64)
def _resolved(path: Path) -> str:
    # Cached: resolving walks the file system, and every shared file URL needs the root.
    return str(path.resolve())
