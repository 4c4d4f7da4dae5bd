"""Recipient credentials: bearer tokens (issue, rotate, revoke), activation links, allow-lists.

A recipient is a consumer organisation. Its bearer tokens are random, stored as SHA-256 only,
and expire; rotation issues a new one and can only shorten the life of the old ones (to the
grace period), never extend it. An activation link hands the profile out exactly once. An
optional CIDR allow-list limits where the recipient may call from.
"""

import ipaddress
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import update
from sqlmodel import Session, col, select

from catalog.audit.record import Actor, record
from catalog.kernel.errors import Conflict, Forbidden, InvalidParameter, NotFound, Unauthenticated
from catalog.kernel.settings import Settings
from policies.auth import issue_secret, secret_matches, split_secret
from policies.principals.models import Organization
from sharing.recipients.models import RecipientActivation, RecipientNetwork, RecipientToken

TOKEN_PREFIX = "dsr_"  # noqa: S105  (a prefix, not a secret)
ACTIVATION_PREFIX = "dsa_"
MAX_CIDRS = 100


@dataclass(frozen=True)
class Recipient:
    """An authenticated recipient: its organisation, the token it presented, its allow-list."""

    organization: Organization
    token_id: str
    cidrs: tuple[str, ...] = ()


def issue_recipient_token(
    session: Session, organization: Organization, *, days: int, now: datetime
) -> tuple[RecipientToken, str]:
    """A new bearer token for a recipient; the returned string is the only copy."""
    return issue_secret(
        session,
        RecipientToken,
        TOKEN_PREFIX,
        organization_id=organization.id,
        created_at=now,
        expires_at=now + timedelta(days=days),
    )


def rotate_token(
    session: Session,
    organization: Organization,
    *,
    days: int,
    grace: timedelta,
    actor: Actor,
    now: datetime,
) -> tuple[RecipientToken, str]:
    """A new token; every other live token of the recipient now ends within `grace`."""
    if grace < timedelta(0):
        raise InvalidParameter("the grace period cannot be negative")
    lock_recipient(session, organization)
    cutoff = now + grace
    shortened = []
    for old in _live_tokens(session, organization, now):
        if old.expires_at > cutoff:  # rotation only ever shortens a token's life
            old.expires_at = cutoff
            session.add(old)
        shortened.append(old.id)
    token, credential = issue_recipient_token(session, organization, days=days, now=now)
    record(
        session,
        actor,
        "recipient.token.rotate",
        subject=organization,
        at=now,
        details={"token_id": token.id, "old_tokens_end_by": cutoff.isoformat(), "old": shortened},
    )
    return token, credential


def revoke_tokens(
    session: Session,
    organization: Organization,
    *,
    token_id: str | None,
    actor: Actor,
    now: datetime,
) -> list[str]:
    """Revoke one token (or all live ones); effective on the next request."""
    lock_recipient(session, organization)
    live = _live_tokens(session, organization, now)
    chosen = [t for t in live if token_id is None or t.id == token_id]
    if token_id is not None and not chosen:
        raise NotFound(f"no live token {token_id} of recipient {organization.name}")
    for token in chosen:
        token.revoked_at = now
        session.add(token)
    record(
        session,
        actor,
        "recipient.token.revoke",
        subject=organization,
        at=now,
        details={"tokens": [t.id for t in chosen]},
    )
    return [t.id for t in chosen]


def lock_recipient(session: Session, organization: Organization) -> None:
    """Serialise changes to one recipient's credentials until this transaction ends.

    Rotation, revocation and activation read the live tokens and then write: without the lock
    a rotation concurrent with a "revoke all" (or an activation) left a token neither saw.
    PostgreSQL locks the organisation's row; SQLite takes its database write lock now (a write
    that changes nothing), rather than at the first real write, after the reads.
    """
    if session.get_bind().dialect.name == "sqlite":
        session.execute(
            update(Organization)
            .where(col(Organization.id) == organization.id)
            .values(id=Organization.id)
            .execution_options(synchronize_session=False)
        )
    else:
        session.execute(
            select(Organization.id).where(col(Organization.id) == organization.id).with_for_update()
        )
    session.expire_all()  # what was read before the lock may be stale: read it again after


def list_tokens(session: Session, organization: Organization) -> list[RecipientToken]:
    """Every token of a recipient, newest first (ids and dates only ever leave here)."""
    return list(
        session.exec(
            select(RecipientToken)
            .where(RecipientToken.organization_id == organization.id)
            .order_by(col(RecipientToken.created_at).desc(), col(RecipientToken.id))
        ).all()
    )


def _live_tokens(session: Session, organization: Organization, now: datetime) -> list[Any]:
    return [
        t for t in list_tokens(session, organization) if t.revoked_at is None and t.expires_at > now
    ]


TokenRow = tuple[RecipientToken, Organization, tuple[str, ...]]
REFUSED = "missing, invalid, expired or revoked bearer token"


def token_id_in(credential: str | None) -> tuple[str, str]:
    """(token id, secret) of a bearer credential, or Unauthenticated (one message for every
    cause)."""
    parts = split_secret(credential or "", TOKEN_PREFIX)
    if parts is None:
        raise Unauthenticated(REFUSED)
    return parts


def verify(found: TokenRow | None, secret: str, *, now: datetime) -> Recipient:
    """The recipient behind a token row and the secret presented for it, or Unauthenticated:
    the secret, revocation and expiry are checked at `now` on every request. No I/O."""
    if found is None:
        raise Unauthenticated(REFUSED)
    token, organization, cidrs = found
    if (
        not secret_matches(token.secret_sha256, secret)
        or token.revoked_at is not None
        or token.expires_at <= now
    ):
        raise Unauthenticated(REFUSED)
    return Recipient(organization=organization, token_id=token.id, cidrs=cidrs)


def token_row(session: Session, token_id: str) -> TokenRow | None:
    """A token with its organisation and allow-list, in one round trip."""
    found = session.execute(
        select(RecipientToken, Organization, RecipientNetwork.cidrs)
        .join(Organization, col(Organization.id) == RecipientToken.organization_id)
        .outerjoin(RecipientNetwork, col(RecipientNetwork.organization_id) == Organization.id)
        .where(col(RecipientToken.id) == token_id)
    ).first()
    if found is None:
        return None
    token, organization, cidrs = found
    return token, organization, tuple(cidrs or ())


# --- activation links ----------------------------------------------------------------------------


def create_activation(
    session: Session,
    organization: Organization,
    *,
    token_days: int,
    valid_for: timedelta,
    actor: Actor,
    now: datetime,
) -> tuple[RecipientActivation, str]:
    """A one-time activation secret; the profile (and its token) is made at first download."""
    activation, secret = issue_secret(
        session,
        RecipientActivation,
        ACTIVATION_PREFIX,
        organization_id=organization.id,
        token_days=token_days,
        created_at=now,
        created_by=actor.name,
        expires_at=now + valid_for,
    )
    record(
        session,
        actor,
        "recipient.activation.create",
        subject=organization,
        at=now,
        details={"activation_id": activation.id, "expires_at": activation.expires_at.isoformat()},
    )
    return activation, secret


def redeem_activation(
    session: Session, secret: str, *, client: str | None, now: datetime
) -> tuple[Organization, RecipientToken, str]:
    """Mint the recipient's token from an activation link, once; a second use is refused.

    The link is claimed by one conditional update (`used_at IS NULL` and unexpired, checked by
    its row count) before anything is minted: of any number of concurrent downloads exactly
    one claims it; the others get 409 (PostgreSQL re-checks the condition once the winner's
    row lock is released; SQLite runs the update under its write lock).
    """
    activation = find_activation(session, secret)
    organization = session.get(Organization, activation.organization_id)
    if organization is None:
        raise NotFound("activation link not found")
    check_network(session, organization, client)
    if activation.used_at is not None:
        raise Conflict("this activation link was already used; ask for a new one")
    if activation.expires_at <= now:
        raise Forbidden("this activation link has expired; ask for a new one")
    claimed = session.execute(
        update(RecipientActivation)
        .where(
            col(RecipientActivation.id) == activation.id,
            col(RecipientActivation.used_at).is_(None),
            col(RecipientActivation.expires_at) > now,
        )
        .values(used_at=now)
        .execution_options(synchronize_session=False)
    )
    if claimed.rowcount != 1:  # type: ignore[attr-defined]
        raise Conflict("this activation link was already used; ask for a new one")
    lock_recipient(session, organization)
    token, credential = issue_recipient_token(
        session, organization, days=activation.token_days, now=now
    )
    session.execute(
        update(RecipientActivation)
        .where(col(RecipientActivation.id) == activation.id)
        .values(token_id=token.id)
        .execution_options(synchronize_session=False)
    )
    record(
        session,
        Actor(f"recipient:{organization.name}"),
        "recipient.activation.redeem",
        subject=organization,
        at=now,
        details={"activation_id": activation.id, "token_id": token.id},
    )
    return organization, token, credential


def find_activation(session: Session, secret: str) -> RecipientActivation:
    """The activation a link secret stands for, or NotFound."""
    parts = split_secret(secret, ACTIVATION_PREFIX)
    activation = session.get(RecipientActivation, parts[0]) if parts else None
    if (
        activation is None
        or parts is None
        or not secret_matches(activation.secret_sha256, parts[1])
    ):
        raise NotFound("activation link not found")
    return activation


def profile(endpoint: str, token: RecipientToken, credential: str) -> dict[str, Any]:
    """A Delta Sharing profile (version 1, bearer token)."""
    return {
        "shareCredentialsVersion": 1,
        "endpoint": f"{endpoint.rstrip('/')}/delta-sharing",
        "bearerToken": credential,
        "expirationTime": token.expires_at.strftime("%Y-%m-%dT%H:%M:%SZ"),
    }


# --- network allow-list --------------------------------------------------------------------------


def set_networks(
    session: Session, organization: Organization, cidrs: list[str], *, actor: Actor, now: datetime
) -> list[str]:
    """Replace a recipient's allow-list (empty: any address); each entry must be a CIDR range."""
    if len(cidrs) > MAX_CIDRS:
        raise InvalidParameter(f"at most {MAX_CIDRS} ranges per recipient")
    normalised: list[str] = []
    for cidr in cidrs:
        try:
            normalised.append(str(ipaddress.ip_network(cidr.strip(), strict=False)))
        except ValueError:
            raise InvalidParameter(f"{cidr!r} is not an IP address or CIDR range") from None
    row = session.get(RecipientNetwork, organization.id)
    if row is None:
        row = RecipientNetwork(organization_id=organization.id, updated_at=now, updated_by="")
    row.cidrs = sorted(set(normalised))
    row.updated_at, row.updated_by = now, actor.name
    session.add(row)
    record(
        session,
        actor,
        "recipient.networks.set",
        subject=organization,
        at=now,
        details={"cidrs": row.cidrs},
    )
    return row.cidrs


def networks(session: Session, organization: Organization) -> list[str]:
    """A recipient's allow-list (empty: any address)."""
    row = session.get(RecipientNetwork, organization.id)
    return list(row.cidrs) if row else []


def networks_of(session: Session, name: str) -> tuple[str, ...] | None:
    """The allow-list of the recipient called `name`; None when there is no such recipient."""
    row = session.execute(
        select(Organization.id, RecipientNetwork.cidrs)
        .outerjoin(RecipientNetwork, col(RecipientNetwork.organization_id) == Organization.id)
        .where(Organization.name == name)
    ).first()
    return None if row is None else tuple(row[1] or ())


def check_network(session: Session, organization: Organization, client: str | None) -> None:
    """Forbidden unless the client address is inside the recipient's allow-list (if any)."""
    check_address(networks(session, organization), client)


def check_address(allowed: list[str] | tuple[str, ...], client: str | None) -> None:
    """Forbidden unless `client` is inside `allowed` (an empty list allows every address)."""
    if not allowed:
        return
    try:
        address = ipaddress.ip_address(client or "")
    except ValueError:
        raise Forbidden("requests from this address are not allowed for this recipient") from None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped:
        address = address.ipv4_mapped
    if not any(address in ipaddress.ip_network(cidr) for cidr in allowed):
        raise Forbidden("requests from this address are not allowed for this recipient")


def settings_profile_endpoint(settings: Settings, endpoint: str | None) -> str:
    """The public base URL written into profiles (default http://HOST:PORT)."""
    return endpoint or f"http://{settings.host}:{settings.port}"
