"""Console sessions: an encrypted HttpOnly cookie carrying the API token a person signed in with.

The cookie is sealed with AES-GCM under a key derived from the deployment's signing key, so it
can be neither read nor forged. Every request turns the token back into a Caller through the
same `Authenticator` as the API (a revoked or expired token, or a disabled principal, ends the
console session at once), and the console asks the same policy engine and services as the API.

A session ends after `IDLE` without a request or `LIFETIME` after sign-in, whichever comes first,
judged by the app's injectable clock. CSRF: each session has a random id; its token is
HMAC(key, id), sent by every form (`_csrf`) and by htmx in the `X-CSRF-Token` header, and
compared in constant time before any state-changing handler runs. Sign-in replaces the id
(no session fixation). Sign-out clears the cookie and records the id (`ConsoleSignOut`) until
the session's lifetime would have ended it, so a copy of the cookie replayed later is refused.
"""

import base64
import hashlib
import hmac
import json
import secrets
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Any

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from sqlalchemy import delete
from sqlmodel import Session, col

from catalog.console.models import ConsoleSignOut
from catalog.kernel.settings import Settings
from sharing.signing import signing_key

COOKIE = "mesh_console"
PATH = "/console"
CSRF_FIELD = "_csrf"
CSRF_HEADER = "x-csrf-token"
IDLE = timedelta(minutes=30)
LIFETIME = timedelta(hours=8)
_NONCE = 12


@dataclass(frozen=True)
class ConsoleSession:
    """What the cookie holds: a session id, the credential (None: not signed in), times."""

    sid: str
    credential: str | None
    issued_at: datetime
    seen_at: datetime

    def expired(self, now: datetime) -> bool:
        """Idle too long or past its lifetime."""
        return now - self.seen_at >= IDLE or now - self.issued_at >= LIFETIME

    def touched(self, now: datetime) -> "ConsoleSession":
        """The same session, seen now."""
        return replace(self, seen_at=now)


def new_session(now: datetime, credential: str | None = None) -> ConsoleSession:
    """A fresh session id (at sign-in, sign-out, and for visitors)."""
    return ConsoleSession(secrets.token_urlsafe(18), credential, now, now)


class Sealer:
    """Seals sessions into cookie values and opens them; anything tampered opens as None."""

    def __init__(self, settings: Settings) -> None:
        base = signing_key(settings)
        self._aead = AESGCM(hashlib.sha256(b"mesh-console-session\x00" + base).digest())
        self._mac_key = hashlib.sha256(b"mesh-console-csrf\x00" + base).digest()

    def seal(self, session: ConsoleSession) -> str:
        """The cookie value for `session`."""
        body = json.dumps(
            {
                "sid": session.sid,
                "cred": session.credential,
                "iat": session.issued_at.isoformat(),
                "seen": session.seen_at.isoformat(),
            },
            separators=(",", ":"),
        ).encode()
        nonce = secrets.token_bytes(_NONCE)
        sealed = self._aead.encrypt(nonce, body, COOKIE.encode())
        return base64.urlsafe_b64encode(nonce + sealed).decode().rstrip("=")

    def open(self, value: str | None) -> ConsoleSession | None:
        """The session in a cookie value, or None when absent, malformed or tampered."""
        if not value or len(value) > 4096:
            return None
        try:
            raw = base64.urlsafe_b64decode(value + "=" * (-len(value) % 4))
            body = self._aead.decrypt(raw[:_NONCE], raw[_NONCE:], COOKIE.encode())
            data: dict[str, Any] = json.loads(body)
            return ConsoleSession(
                sid=str(data["sid"]),
                credential=data["cred"] if isinstance(data.get("cred"), str) else None,
                issued_at=datetime.fromisoformat(data["iat"]),
                seen_at=datetime.fromisoformat(data["seen"]),
            )
        except (InvalidTag, ValueError, KeyError, TypeError):
            return None

    def seal_data(self, data: dict[str, Any], purpose: str) -> str:
        """`data` sealed for one `purpose` (a value sealed for another never opens here)."""
        body = json.dumps(data, separators=(",", ":")).encode()
        nonce = secrets.token_bytes(_NONCE)
        sealed = self._aead.encrypt(nonce, body, purpose.encode())
        return base64.urlsafe_b64encode(nonce + sealed).decode().rstrip("=")

    def open_data(self, value: str | None, purpose: str) -> dict[str, Any] | None:
        """What `seal_data` sealed for `purpose`, or None when absent, malformed or tampered."""
        if not value or len(value) > 4096:
            return None
        try:
            raw = base64.urlsafe_b64decode(value + "=" * (-len(value) % 4))
            data = json.loads(self._aead.decrypt(raw[:_NONCE], raw[_NONCE:], purpose.encode()))
        except (InvalidTag, ValueError, TypeError):
            return None
        return data if isinstance(data, dict) else None

    def csrf_token(self, session: ConsoleSession) -> str:
        """The CSRF token of a session."""
        return hmac.new(self._mac_key, session.sid.encode(), hashlib.sha256).hexdigest()

    def csrf_valid(self, session: ConsoleSession | None, presented: str | None) -> bool:
        """Whether `presented` is this session's CSRF token (constant-time)."""
        if session is None or not presented:
            return False
        return hmac.compare_digest(self.csrf_token(session), presented)


def cookie_header(value: str, *, secure: bool, max_age: int | None = None) -> str:
    """A Set-Cookie value: HttpOnly, SameSite=Strict, Path=/console, Secure behind TLS."""
    parts = [f"{COOKIE}={value}", f"Path={PATH}", "HttpOnly", "SameSite=Strict"]
    if secure:
        parts.append("Secure")
    if max_age is not None:
        parts.append(f"Max-Age={max_age}")
    return "; ".join(parts)


def sign_out_session(
    session: Session, console: ConsoleSession, *, principal: str, now: datetime
) -> None:
    """Refuse `console`'s id from now until its lifetime ends; prune ids past theirs."""
    session.execute(delete(ConsoleSignOut).where(col(ConsoleSignOut.expires_at) <= now))
    if session.get(ConsoleSignOut, console.sid) is None:
        session.add(
            ConsoleSignOut(
                sid=console.sid,
                principal=principal,
                signed_out_at=now,
                expires_at=console.issued_at + LIFETIME,
            )
        )
    session.flush()


def is_signed_out(session: Session, sid: str) -> bool:
    """Whether the session `sid` was signed out (its cookie must not be honoured)."""
    return session.get(ConsoleSignOut, sid) is not None
