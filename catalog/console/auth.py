"""Who is using the console: the session cookie turned into the API's Caller, and CSRF checks.

The console's paths are left out of the API's bearer middleware (catalog/app.py); this
middleware takes its place for them. Signed-in requests get the Caller the API would give for
the same token (policies.auth.Authenticator), so the app's permission guard, the services and the
audit trail treat a person in the console exactly like the same person calling the API.
"""

from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

from litestar import Request
from litestar.concurrency import sync_to_thread
from litestar.datastructures import MutableScopeHeaders
from litestar.enums import ScopeType
from litestar.middleware import ASGIMiddleware
from litestar.types import (
    ASGIApp,
    HTTPResponseBodyEvent,
    HTTPResponseStartEvent,
    Message,
    Receive,
    Scope,
    Send,
)
from sqlmodel import Session, select

from catalog.audit.record import Actor
from catalog.console.session import (
    COOKIE,
    CSRF_FIELD,
    CSRF_HEADER,
    ConsoleSession,
    Sealer,
    cookie_header,
    is_signed_out,
    new_session,
)
from catalog.kernel.errors import Forbidden, Unauthenticated
from policies.auth import Authenticator, record_auth_failure
from policies.enforcer import Caller
from policies.principals.models import Principal

ROOT = "/console"
# The credential of a session signed in through the identity provider (catalog/console/oidc.py):
# it only ever exists inside the sealed session cookie, never as something a person can paste.
OIDC_CREDENTIAL = "oidc:"
# Pages anyone may open: signing in, static files, and an activation link's page (the link
# itself is the recipient's credential, as on /delta-sharing/activation).
PUBLIC_PREFIXES = (f"{ROOT}/sign-in", f"{ROOT}/static/", f"{ROOT}/activate/")
UNSAFE = frozenset({"POST", "PUT", "PATCH", "DELETE"})


class Visitor(Caller):
    """Someone not signed in: no policy engine, so nothing is allowed."""

    def __init__(self) -> None:
        super().__init__("anonymous", policy=None)


@dataclass
class ConsoleState:
    """Per-request console state, at `scope["state"]["console"]`."""

    sealer: Sealer
    session: ConsoleSession
    expired: bool = False
    # What to send back: the session (rolled forward) unless a handler replaced it.
    outgoing: ConsoleSession | None = None
    clear: bool = False
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def csrf(self) -> str:
        """The CSRF token forms and htmx send."""
        return self.sealer.csrf_token(self.outgoing or self.session)


def console_state(connection: Any) -> ConsoleState:
    """The console state of a request (set by ConsoleMiddleware)."""
    state: ConsoleState = connection.scope["state"]["console"]
    return state


def is_public(path: str) -> bool:
    """Paths served to visitors who are not signed in."""
    return path.startswith(PUBLIC_PREFIXES)


class ConsoleMiddleware(ASGIMiddleware):
    """Opens the session cookie, resolves the Caller, sends the (rolled) cookie back."""

    scopes = (ScopeType.HTTP,)

    async def handle(self, scope: Scope, receive: Receive, send: Send, next_app: ASGIApp) -> None:
        app_state = scope["litestar_app"].state
        sealer: Sealer = app_state.console_sealer
        now = app_state.clock.now()
        request: Request[Any, Any, Any] = Request(scope)
        opened = sealer.open(request.cookies.get(COOKIE))
        expired = opened is not None and opened.credential is not None and opened.expired(now)
        session = opened if opened is not None and not opened.expired(now) else None
        caller: Caller | None = None
        if session is not None and session.credential is not None:
            caller = await _resolve(app_state, session.credential, session.sid)
            if caller is None:  # revoked, expired or disabled since sign-in
                await sync_to_thread(
                    record_auth_failure, request, session.credential, "console session ended"
                )  # revoked, expired, disabled, or signed out (a replayed cookie)
                session, expired = None, True
        if session is None or (caller is None and session.credential is not None):
            session = new_session(now)
        state = ConsoleState(sealer=sealer, session=session, expired=expired)
        state.outgoing = session.touched(now)
        scope.setdefault("state", {})["console"] = state
        scope["user"] = caller if caller is not None else Visitor()
        secure = scope.get("scheme") == "https"

        async def send_with_cookie(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableScopeHeaders.from_message(message)
                if state.clear or state.outgoing is None:
                    headers.add("set-cookie", cookie_header("", secure=secure, max_age=0))
                else:
                    headers.add(
                        "set-cookie", cookie_header(sealer.seal(state.outgoing), secure=secure)
                    )
                headers["cache-control"] = "no-store"
                headers["x-frame-options"] = "DENY"
                headers["referrer-policy"] = "same-origin"
                headers["x-content-type-options"] = "nosniff"
                headers["content-security-policy"] = (
                    "default-src 'self'; script-src 'self'; style-src 'self'; "
                    "img-src 'self' data:; frame-ancestors 'none'; form-action 'self'; "
                    "base-uri 'none'"
                )
            await send(message)

        path = scope["path"]
        if caller is None and not is_public(path):
            target = f"{ROOT}/sign-in?next={quote(path)}" + ("&expired=1" if expired else "")
            await _redirect(scope, send_with_cookie, target)
            return
        await next_app(scope, receive, send_with_cookie)


async def _resolve(app_state: Any, credential: str, sid: str) -> Caller | None:
    authenticator: Authenticator = app_state.authenticator

    def resolve() -> Caller | None:
        with Session(app_state.engine) as session:
            if is_signed_out(session, sid):  # a copy of a signed-out cookie
                return None
            try:
                if credential.startswith(OIDC_CREDENTIAL):
                    name = credential.removeprefix(OIDC_CREDENTIAL)
                    principal = session.exec(
                        select(Principal).where(Principal.name == name)
                    ).first()
                    return authenticator.caller_for(session, principal)
                return authenticator.caller(session, credential)
            except Unauthenticated:
                return None

    return await sync_to_thread(resolve)


async def _redirect(scope: Scope, send: Send, target: str) -> None:
    htmx = any(k == b"hx-request" for k, _ in scope.get("headers", []))
    headers = [(b"location", target.encode()), (b"content-length", b"0")]
    if htmx:  # htmx follows a redirect in the page, not in the fragment
        headers.append((b"hx-redirect", target.encode()))
    start: HTTPResponseStartEvent = {
        "type": "http.response.start",
        "status": 303,
        "headers": headers,
    }
    await send(start)
    body: HTTPResponseBodyEvent = {"type": "http.response.body", "body": b"", "more_body": False}
    await send(body)


async def check_csrf(request: Request[Any, Any, Any]) -> None:
    """Before every state-changing console handler: the session's CSRF token must come along."""
    if request.method not in UNSAFE:
        return
    state = console_state(request)
    presented = request.headers.get(CSRF_HEADER)
    if not presented:
        form = await request.form()
        value = form.get(CSRF_FIELD)
        presented = value if isinstance(value, str) else None
    if not state.sealer.csrf_valid(state.session, presented):
        raise CsrfRefused(
            "the form's security token is missing or out of date: reload the page and try again"
        )


class CsrfRefused(Forbidden):
    """A state-changing request without this session's CSRF token."""

    slug, title = "csrf-refused", "Security token missing"


def viewer(connection: Any) -> Caller:
    """The signed-in Caller (ConsoleMiddleware redirected everybody else)."""
    user = connection.scope.get("user")
    if isinstance(user, Caller) and not isinstance(user, Visitor):
        return user
    raise Unauthenticated("sign in to use the console")


def is_visitor(actor: Actor) -> bool:
    """Whether the actor is a visitor who has not signed in."""
    return isinstance(actor, Visitor)
