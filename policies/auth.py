"""Who is calling: API tokens (hashed at rest), the bootstrap admin token, and OIDC JWTs.

Every failure gives the same 401 answer, so a caller learns nothing about which tokens exist.
"""

import hashlib
import hmac
import json
import re
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar

import jwt
from litestar.concurrency import sync_to_thread
from litestar.connection import ASGIConnection
from litestar.middleware import AbstractAuthenticationMiddleware, AuthenticationResult
from sqlalchemy.engine import Engine
from sqlalchemy.exc import OperationalError
from sqlalchemy.sql.elements import ColumnElement
from sqlmodel import Session, SQLModel, col, select

from catalog.audit.models import AUTH_FAILED, AuditEvent, Outcome
from catalog.audit.record import Actor, record_failure
from catalog.kernel.clock import Clock
from catalog.kernel.errors import Unauthenticated
from catalog.kernel.settings import Settings
from policies.enforcer import Caller, PolicyEngine, route_subject
from policies.principals.models import ApiToken, Organization, Principal
from policies.ratelimit import FailureLimiter

TOKEN_PREFIX = "mesh_"  # noqa: S105  (a prefix, not a secret)
ENV_ADMIN = "env:admin"
INVALID = "missing, invalid, expired or revoked credentials"


Keyed = TypeVar("Keyed", bound=SQLModel)


def issue_secret(
    session: Session, model: type[Keyed], prefix: str, **fields: Any
) -> tuple[Keyed, str]:
    """A new `model` row for a fresh credential `prefix<id>_<secret>`: the row keeps the id and
    the secret's SHA-256 only, so the returned credential is the only copy of the secret."""
    row_id = secrets.token_hex(8)
    secret = secrets.token_urlsafe(32)
    row = model(id=row_id, secret_sha256=_digest(secret), **fields)
    session.add(row)
    session.flush()
    return row, f"{prefix}{row_id}_{secret}"


def split_secret(credential: str, prefix: str) -> tuple[str, str] | None:
    """(token id, secret) of `prefix<id>_<secret>`, or None when malformed."""
    if not credential.startswith(prefix):
        return None
    token_id, _, secret = credential.removeprefix(prefix).partition("_")
    return (token_id, secret) if token_id and secret else None


_TOKEN_ID = re.compile(r"^[0-9a-f]{16}$")


def token_id_of(credential: str | None, prefix: str) -> str | None:
    """The id part of a `prefix<id>_<secret>` credential, for the audit log; never the secret.

    None unless the id has the shape `issue_secret` issues (16 hex characters), so a mistyped
    secret is never recorded as an id.
    """
    parts = split_secret(credential, prefix) if credential else None
    return parts[0] if parts and _TOKEN_ID.fullmatch(parts[0]) else None


def credential_kind(credential: str | None, prefix: str) -> str:
    """What kind of credential was presented (recorded with authentication failures)."""
    if not credential:
        return "none"
    if credential.startswith(prefix):
        return "api-token"
    return "jwt" if credential.count(".") == 2 else "other"


def secret_matches(stored_sha256: str, secret: str) -> bool:
    """Constant-time comparison of a presented secret with its stored hash."""
    return hmac.compare_digest(stored_sha256, _digest(secret))


def _digest(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def issue_api_token(
    session: Session,
    principal: Principal,
    *,
    days: int,
    description: str,
    now: datetime,
    issued_by: str | None = None,
) -> tuple[ApiToken, str]:
    """A new token for `principal`; the returned string is the only copy of the secret.

    `issued_by` (who receives that copy) is kept: the four-eyes rule refuses that principal
    decisions on the token holder's requests."""
    return issue_secret(
        session,
        ApiToken,
        TOKEN_PREFIX,
        principal_id=principal.id,
        description=description,
        created_at=now,
        expires_at=now + timedelta(days=days),
        issued_by=issued_by,
    )


@dataclass(frozen=True)
class Authenticator:
    """Turns a bearer credential into a Caller, or raises Unauthenticated."""

    settings: Settings
    policy: PolicyEngine
    clock: Clock

    def caller(self, session: Session, credential: str | None) -> Caller:
        """The principal behind `credential`.

        The policy is brought to the governance revision read now, on this session, so the
        request's permission checks see every change committed before it (`PolicyEngine.observe`).
        """
        if not credential:
            raise Unauthenticated("authentication required: send Authorization: Bearer <token>")
        self.policy.observe(session)
        admin = self.settings.admin_token
        if admin is not None and hmac.compare_digest(
            credential.encode(), admin.get_secret_value().encode()
        ):
            return Caller(ENV_ADMIN, policy=self.policy)
        if credential.startswith(TOKEN_PREFIX):
            return self._from_token(session, credential)
        if self.settings.oidc_issuer and credential.count(".") == 2:
            return self._from_jwt(session, credential)
        raise Unauthenticated(INVALID)

    def _from_token(self, session: Session, credential: str) -> Caller:
        parts = split_secret(credential, TOKEN_PREFIX)
        token = session.get(ApiToken, parts[0]) if parts else None
        now = self.clock.now()
        if (
            token is None
            or parts is None
            or not secret_matches(token.secret_sha256, parts[1])
            or token.revoked_at is not None
            or token.expires_at <= now
        ):
            raise Unauthenticated(INVALID)
        principal = session.get(Principal, token.principal_id)
        return self.caller_for(session, principal, token_id=token.id)

    def _from_jwt(self, session: Session, credential: str) -> Caller:
        try:
            header = jwt.get_unverified_header(credential)
            key = _jwks_key(self.settings.oidc_jwks, header.get("kid"))
            claims = jwt.decode(
                credential,
                key=key,
                algorithms=["RS256", "RS384", "RS512", "ES256", "ES384"],
                audience=self.settings.oidc_audience,
                issuer=self.settings.oidc_issuer,
                options={"require": ["exp", "iss", "sub"]},
                leeway=30,
            )
        except (jwt.PyJWTError, ValueError, KeyError, OSError):
            raise Unauthenticated(INVALID) from None
        name = claims.get(self.settings.oidc_principal_claim)
        if not isinstance(name, str):
            raise Unauthenticated(INVALID)
        principal = session.exec(select(Principal).where(Principal.name == name)).first()
        return self.caller_for(session, principal, token_id=None)

    def caller_for(
        self, session: Session, principal: Principal | None, *, token_id: str | None = None
    ) -> Caller:
        """The Caller for an enabled principal, or Unauthenticated."""
        if principal is None or principal.disabled_at is not None:
            raise Unauthenticated(INVALID)
        organization = (
            session.get(Organization, principal.organization_id)
            if principal.organization_id
            else None
        )
        return Caller(
            principal.name,
            policy=self.policy,
            organization=organization.name if organization else None,
            token_id=token_id,
        )


def _jwks_key(source: str | None, kid: str | None) -> Any:
    """The verification key for `kid` from the configured JWKS (inline JSON, file or URL)."""
    if not source:
        raise ValueError("no JWKS configured")
    if source.startswith(("http://", "https://")):
        return jwt.PyJWKClient(source, timeout=5).get_signing_key(kid or "").key
    text = source if source.lstrip().startswith("{") else Path(source).read_text(encoding="utf-8")
    keys = jwt.PyJWKSet.from_dict(json.loads(text)).keys
    for key in keys:
        if kid is None or key.key_id == kid:
            return key.key
    raise KeyError(kid)


def bearer(connection: ASGIConnection[Any, Any, Any, Any]) -> str | None:
    """The bearer credential of a request, if any."""
    header = connection.headers.get("authorization", "")
    scheme, _, value = header.partition(" ")
    return value.strip() or None if scheme.lower() == "bearer" else None


class BearerAuthMiddleware(AbstractAuthenticationMiddleware):
    """Authenticates every request outside the public paths; the user is a Caller.

    The credential is judged first: a valid one is never refused by the failure limiter. A
    failure is answered 401, or 429 once its address has too many (`record_auth_failure`).
    """

    async def authenticate_request(
        self, connection: ASGIConnection[Any, Any, Any, Any]
    ) -> AuthenticationResult:
        state = connection.app.state
        authenticator: Authenticator = state.authenticator
        credential = bearer(connection)

        def resolve() -> Caller:
            with Session(state.engine) as session:
                return authenticator.caller(session, credential)

        try:
            caller = await sync_to_thread(resolve)
        except Unauthenticated as exc:
            await sync_to_thread(record_auth_failure, connection, credential, exc.detail)
            raise
        return AuthenticationResult(user=caller, auth=credential)


def failure_keys(
    connection: ASGIConnection[Any, Any, Any, Any], credential: str | None, prefix: str
) -> tuple[str, str | None]:
    """What a failed authentication counts against: its address, and its token id from there.

    The token id is the visible part of a token: counted across addresses, anyone who knew it
    could lock its owner out. Counted per address, it only ever limits the failing address.
    """
    address = client_address(connection)
    token_id = token_id_of(credential, prefix)
    return f"ip:{address}", f"token:{token_id}@{address}" if token_id else None


def client_address(connection: ASGIConnection[Any, Any, Any, Any]) -> str | None:
    """The socket peer's address (allow-lists and failure counts are judged on it)."""
    return connection.client.host if connection.client else None


ANONYMOUS = Actor("anonymous")


def record_auth_failure(
    connection: ASGIConnection[Any, Any, Any, Any],
    credential: str | None,
    reason: str,
    prefix: str = TOKEN_PREFIX,
) -> None:
    """Count and record one failed authentication; raise TooManyRequests when over the limit.

    Atomic in two steps. This process decides and counts under one lock
    (`FailureLimiter.failed`): an address already at the limit gets 429, unrecorded. Otherwise
    `auth.failed` is recorded in its own transaction (the token id if any, never the secret),
    and the failures every process recorded for the same keys in the window are read back:
    those recorded beyond the limit are answered 429 too. An entry is committed before it is
    counted, so however many processes fail at once, at most `limit` failures per address in a
    window get 401. The caller raises its 401 when this returns.
    """
    state = connection.app.state
    limiter: FailureLimiter = state.limiter
    keys = failure_keys(connection, credential, prefix)
    limiter.failed(*keys)
    address, token_id = client_address(connection), token_id_of(credential, prefix)
    now = state.clock.now()
    recorded = record_failure(
        state.audit,
        at=now,
        actor=ANONYMOUS,
        action="auth.failed",
        subject=("route", route_subject(connection)),
        outcome=Outcome.FAILED,
        reason=reason,
        details={"presented": credential_kind(credential, prefix)},
        token_id=token_id,
    )
    if recorded is None or address is None:
        return  # not in the audit trail: the local count decides alone
    address_is = col(AuditEvent.client_address) == address
    counted = [(keys[0], [address_is])]
    if keys[1] and token_id:
        counted.append((keys[1], [address_is, col(AuditEvent.token_id) == token_id]))
    since = now - timedelta(seconds=limiter.window)
    for key, times in _recorded_failures(state.engine, counted, since, limiter.limit + 1).items():
        limiter.adopt(key, times)
    limiter.refuse_if_over(*keys)


def _recorded_failures(
    engine: Engine,
    counted: list[tuple[str, list[ColumnElement[bool]]]],
    since: datetime,
    most: int,
) -> dict[str, list[datetime]]:
    """When each limiter key last failed since `since` (`most` times at most), by its filters.

    One query per key, each answered by a partial index (models.AuditEvent); only the newest
    `most` count, since a key is over the limit at that many.
    """
    found: dict[str, list[datetime]] = {}
    try:
        with engine.connect() as connection:
            for key, conditions in counted:
                statement = (
                    select(AuditEvent.at)
                    .where(AUTH_FAILED, *conditions, col(AuditEvent.at) >= since)
                    .order_by(col(AuditEvent.at).desc())
                    .limit(most)
                )
                found[key] = list(connection.execute(statement).scalars())
    except OperationalError:
        return {}  # the local count still holds
    return found
