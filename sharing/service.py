"""What a recipient may see and read: its share, built from its organisation's live grants.

One share per recipient (named after the organisation), schemas = product domains, tables =
products at the granted tier. Only Delta versions recorded by published (or still-served
deprecated) product versions are visible. Anything not granted answers exactly like
something that does not exist.
"""

import base64
import hashlib
import hmac
import json
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlmodel import Session, col, select

from catalog.errors import InvalidParameter, NotFound, Unauthenticated
from catalog.products.models import DataProduct, ProductVersion, VersionStatus
from catalog.settings import Settings
from policies.access import get_dua, grant_state, readable
from policies.auth import new_secret, secret_matches, split_secret
from policies.models import Grant, Organization
from sharing.models import RecipientToken

TOKEN_PREFIX = "dsr_"  # noqa: S105  (a prefix, not a secret)
SERVED = (VersionStatus.PUBLISHED, VersionStatus.DEPRECATED)
NAMESPACE = uuid.UUID("8f1d2c3e-4b5a-4c6d-9e8f-0a1b2c3d4e5f")


def stable_id(name: str) -> str:
    """A UUID that stays the same for the same name (share, table and file ids)."""
    return str(uuid.uuid5(NAMESPACE, name))


def issue_recipient_token(
    session: Session, organization: Organization, *, days: int, now: datetime
) -> tuple[RecipientToken, str]:
    """A new bearer token for a recipient; the returned string is the only copy."""
    token_id, digest, credential = new_secret(TOKEN_PREFIX)
    token = RecipientToken(
        id=token_id,
        organization_id=organization.id,
        secret_sha256=digest,
        created_at=now,
        expires_at=now + timedelta(days=days),
    )
    session.add(token)
    session.flush()
    return token, credential


def recipient_for(session: Session, credential: str | None, *, now: datetime) -> Organization:
    """The organisation behind a recipient bearer token, or Unauthenticated."""
    if not credential or not credential.startswith(TOKEN_PREFIX):
        raise Unauthenticated("missing or invalid bearer token")
    parts = split_secret(credential, TOKEN_PREFIX)
    token = session.get(RecipientToken, parts[0]) if parts else None
    if (
        token is None
        or parts is None
        or not secret_matches(token.secret_sha256, parts[1])
        or token.revoked_at is not None
        or token.expires_at <= now
    ):
        raise Unauthenticated("missing, invalid, expired or revoked bearer token")
    organization = session.get(Organization, token.organization_id)
    if organization is None:
        raise Unauthenticated("missing, invalid, expired or revoked bearer token")
    return organization


@dataclass(frozen=True)
class SharedTable:
    """One table a recipient may read."""

    share: str
    schema: str
    name: str
    table_id: str
    tier: str
    location: str
    versions: tuple[int, ...]

    @property
    def current_version(self) -> int:
        """Newest visible Delta version."""
        return self.versions[-1]


def shared_tables(
    session: Session, organization: Organization, *, settings: Settings, now: datetime
) -> list[SharedTable]:
    """Every table the recipient may read now, ordered by schema then name."""
    grants = session.exec(
        select(Grant).where(
            Grant.organization_id == organization.id, col(Grant.revoked_at).is_(None)
        )
    ).all()
    tables: dict[tuple[str, str], SharedTable] = {}
    for grant in grants:
        if not readable(grant_state(grant, get_dua(session, grant.dua_id), now, settings)):
            continue
        product = session.get(DataProduct, grant.product_id)
        if product is None:
            continue
        versions = session.exec(
            select(ProductVersion).where(
                ProductVersion.product_id == product.id, col(ProductVersion.status).in_(SERVED)
            )
        ).all()
        served = sorted(
            (
                v.tier_tables[str(grant.tier)]["delta_version"],
                v.tier_tables[str(grant.tier)]["location"],
            )
            for v in versions
            if v.tier_tables and str(grant.tier) in v.tier_tables
        )
        if not served:
            continue
        name = product.name
        key = (product.domain.name, name)
        if key in tables:  # two tiers of one product: the tier goes into the name
            name = f"{product.name}_{grant.tier}"
            key = (product.domain.name, name)
        tables[key] = SharedTable(
            share=organization.name,
            schema=product.domain.name,
            name=name,
            table_id=stable_id(f"{organization.name}/{product.id}/{grant.tier}"),
            tier=str(grant.tier),
            location=served[-1][1],
            versions=tuple(v for v, _ in served),
        )
    return [tables[k] for k in sorted(tables)]


def find_table(tables: list[SharedTable], share: str, schema: str, name: str) -> SharedTable:
    """The named table, or the same NotFound whether it exists for someone else or not at all."""
    for table in tables:
        if (table.share, table.schema, table.name) == (share.lower(), schema.lower(), name.lower()):
            return table
    raise NotFound(f"table {share}.{schema}.{name} not found")


def check_share(tables: list[SharedTable], organization: Organization, share: str) -> None:
    """A recipient sees exactly its own share."""
    if share.lower() != organization.name:
        raise NotFound(f"share {share} not found")


# --- signed values: page tokens and file URLs -----------------------------------------------


def _mac(key: bytes, message: str) -> str:
    return hmac.new(key, message.encode(), hashlib.sha256).hexdigest()


def page_token(key: bytes, scope: str, offset: int) -> str:
    """An opaque, tamper-proof page token bound to the listing it came from."""
    payload = base64.urlsafe_b64encode(json.dumps([scope, offset]).encode()).decode()
    return f"{payload}.{_mac(key, payload)}"


def page_offset(key: bytes, scope: str, token: str | None) -> int:
    """The offset a page token stands for, or InvalidParameter."""
    if not token:
        return 0
    payload, _, mac = token.partition(".")
    if not hmac.compare_digest(mac, _mac(key, payload)):
        raise InvalidParameter("invalid pageToken")
    try:
        token_scope, offset = json.loads(base64.urlsafe_b64decode(payload.encode()))
    except ValueError:
        raise InvalidParameter("invalid pageToken") from None
    if token_scope != scope or not isinstance(offset, int) or offset < 0:
        raise InvalidParameter("invalid pageToken")
    return offset


def file_signature(key: bytes, path: str, expires: int) -> str:
    """HMAC over the file path and its expiry (epoch seconds)."""
    return _mac(key, f"{path}\n{expires}")


def valid_file_signature(
    key: bytes, path: str, expires: int, signature: str, now: datetime
) -> bool:
    """Constant-time check of a file URL; expired URLs are invalid."""
    if expires < now.timestamp():
        return False
    return hmac.compare_digest(signature, file_signature(key, path, expires))
