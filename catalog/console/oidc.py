"""Console sign-in with the organisation's identity provider: OIDC authorization code + PKCE.

On when `oidc_issuer` and `oidc_client_id` are set. `/console/sign-in/oidc` fetches the issuer's
discovery document, keeps a fresh state, nonce and PKCE verifier in a short-lived sealed cookie
(`SameSite=Lax`, so it comes back with the issuer's cross-site redirect; the session cookie is
`Strict` and would not), and sends the browser to the issuer. The callback checks the state,
redeems the code with the verifier at the token endpoint, and validates the ID token with PyJWT
against the issuer's JWKS: signature, `iss`, `aud`, `exp`, and the nonce. The claim named by
`oidc_principal_claim` must name an existing, enabled principal; anything else is refused,
answered with the sign-in page, and recorded as `auth.failed` like a wrong API token.

A signed-in session carries `oidc:<principal>` as its credential in the sealed session cookie;
each request turns it into the same Caller the API gives that principal (`auth.resolve`).
"""

import base64
import hashlib
import hmac
import secrets
from datetime import datetime, timedelta
from typing import Annotated, Any
from urllib.parse import urlencode

import httpx
import jwt
from litestar import Controller, Response, get
from litestar.di import NamedDependency
from litestar.params import QueryParameter
from litestar.response import Redirect
from sqlmodel import Session, select

from catalog.console.auth import OIDC_CREDENTIAL, ROOT, console_state
from catalog.console.routes import OPEN, Req
from catalog.console.session import new_session
from catalog.console.views import render
from catalog.kernel.clock import Clock
from catalog.kernel.errors import NotFound, Unauthenticated
from catalog.kernel.settings import Settings
from policies.auth import Authenticator, record_auth_failure
from policies.principals.models import Principal

PENDING_COOKIE = "mesh_console_oidc"
PENDING_PATH = f"{ROOT}/sign-in/oidc"
PENDING_FOR = timedelta(minutes=10)
ALGORITHMS = ["RS256", "RS384", "RS512", "PS256", "ES256", "ES384"]
TIMEOUT = 10.0
Param = Annotated[str | None, QueryParameter(max_length=2000)]


class OidcRefused(Unauthenticated):
    """An OIDC sign-in that did not prove who the person is."""


def configured(settings: Settings) -> bool:
    """Whether the console offers OIDC sign-in."""
    return bool(settings.oidc_issuer and settings.oidc_client_id)


def _discovery(settings: Settings) -> dict[str, Any]:
    """The issuer's discovery document (its `issuer` must be the configured one)."""
    issuer = (settings.oidc_issuer or "").rstrip("/")
    try:
        answer = httpx.get(f"{issuer}/.well-known/openid-configuration", timeout=TIMEOUT)
        answer.raise_for_status()
        document: dict[str, Any] = answer.json()
    except (httpx.HTTPError, ValueError):
        raise OidcRefused("the identity provider could not be reached") from None
    if str(document.get("issuer", "")).rstrip("/") != issuer:
        raise OidcRefused("the identity provider's discovery document names another issuer")
    return document


def _redirect_uri(request: Req, settings: Settings) -> str:
    base = str(request.base_url).rstrip("/")
    return settings.oidc_redirect_url or f"{base}{ROOT}/sign-in/oidc/callback"


def _challenge(verifier: str) -> str:
    digest = hashlib.sha256(verifier.encode()).digest()
    return base64.urlsafe_b64encode(digest).decode().rstrip("=")


def _pending_cookie(value: str, *, secure: bool, max_age: int) -> str:
    parts = [
        f"{PENDING_COOKIE}={value}",
        f"Path={PENDING_PATH}",
        "HttpOnly",
        "SameSite=Lax",
        f"Max-Age={max_age}",
    ]
    return "; ".join([*parts, "Secure"] if secure else parts)


def validate_id_token(
    token: str, *, jwks_uri: str, issuer: str, audience: str, nonce: str, now: datetime
) -> dict[str, Any]:
    """The ID token's claims once its signature, iss, aud, exp and nonce all hold."""
    try:
        key = jwt.PyJWKClient(jwks_uri, timeout=int(TIMEOUT)).get_signing_key_from_jwt(token)
        claims: dict[str, Any] = jwt.decode(
            token,
            key=key.key,
            algorithms=ALGORITHMS,
            audience=audience,
            issuer=issuer,
            options={"require": ["exp", "iat", "iss", "aud", "sub"], "verify_exp": False},
        )
    except (jwt.PyJWTError, ValueError, KeyError) as exc:
        raise OidcRefused(f"the ID token was not accepted ({type(exc).__name__})") from None
    # Expiry on the app's clock (tests move it), with PyJWT's usual leeway of none.
    expires = claims.get("exp")
    if not isinstance(expires, int | float) or expires <= now.timestamp():
        raise OidcRefused("the ID token has expired")
    presented = claims.get("nonce")
    if not isinstance(presented, str) or not hmac.compare_digest(presented, nonce):
        raise OidcRefused("the ID token's nonce does not match this sign-in")
    return claims


class OidcController(Controller):
    """`/console/sign-in/oidc` and its callback (public: they are how one signs in)."""

    path = PENDING_PATH

    @get("/", opt=OPEN, sync_to_thread=True)
    def start(
        self,
        request: Req,
        settings: NamedDependency[Settings],
        clock: NamedDependency[Clock],
        next_page: Annotated[str | None, QueryParameter(name="next", max_length=200)] = None,
    ) -> Response[Any]:
        """Send the browser to the issuer with a fresh state, nonce and PKCE challenge."""
        if not configured(settings):
            raise NotFound("sign-in with an identity provider is not configured here")
        try:
            document = _discovery(settings)
        except OidcRefused as exc:  # the provider, not the person: nothing to count or audit
            return render(
                request,
                "sign_in.html",
                status=503,
                notice=None,
                error=f"{exc.detail}; sign in with an API token, or try again later.",
                next_page=next_page,
            )
        state, nonce = secrets.token_urlsafe(24), secrets.token_urlsafe(24)
        verifier = secrets.token_urlsafe(48)
        redirect_uri = _redirect_uri(request, settings)
        pending = {
            "state": state,
            "nonce": nonce,
            "verifier": verifier,
            "redirect_uri": redirect_uri,
            "next": next_page or "",
            "at": clock.now().isoformat(),
        }
        query = urlencode(
            {
                "response_type": "code",
                "client_id": settings.oidc_client_id,
                "redirect_uri": redirect_uri,
                "scope": "openid profile email",
                "state": state,
                "nonce": nonce,
                "code_challenge": _challenge(verifier),
                "code_challenge_method": "S256",
            }
        )
        sealed = console_state(request).sealer.seal_data(pending, PENDING_COOKIE)
        secure = request.url.scheme == "https"
        return Redirect(
            f"{document['authorization_endpoint']}?{query}",
            status_code=303,
            headers={
                "set-cookie": _pending_cookie(
                    sealed, secure=secure, max_age=int(PENDING_FOR.total_seconds())
                )
            },
        )

    @get("/callback", opt=OPEN, sync_to_thread=True)
    def callback(
        self,
        request: Req,
        settings: NamedDependency[Settings],
        clock: NamedDependency[Clock],
        code: Param = None,
        state_field: Annotated[str | None, QueryParameter(name="state", max_length=2000)] = None,
        error: Param = None,
    ) -> Response[str]:
        """Redeem the code, validate the ID token, map its claim to a principal, sign in."""
        if not configured(settings):
            raise NotFound("sign-in with an identity provider is not configured here")
        secure = request.url.scheme == "https"
        forget = _pending_cookie("", secure=secure, max_age=0)
        try:
            name, pending_next = self._principal(request, settings, clock, code, state_field, error)
        except Unauthenticated as exc:
            record_auth_failure(request, None, f"console OIDC sign-in: {exc.detail}")
            page = render(
                request,
                "sign_in.html",
                status=401,
                notice=None,
                error=f"Sign-in with your identity provider was refused: {exc.detail}.",
                next_page=None,
            )
            page.headers["set-cookie"] = forget
            return page
        console_state(request).outgoing = new_session(clock.now(), f"{OIDC_CREDENTIAL}{name}")
        target = pending_next if pending_next.startswith(f"{ROOT}/") else f"{ROOT}/"
        # A page that moves on by itself: the browser arrived here from the issuer's site, and a
        # SameSite=Strict session cookie is only sent once the next request starts on ours.
        page = render(request, "signed_in.html", target=target, name=name)
        page.headers["set-cookie"] = forget
        return page

    def _principal(
        self,
        request: Req,
        settings: Settings,
        clock: Clock,
        code: str | None,
        state: str | None,
        error: str | None,
    ) -> tuple[str, str]:
        """The principal the issuer vouches for, and the page to go on to."""
        sealer = console_state(request).sealer
        pending = sealer.open_data(request.cookies.get(PENDING_COOKIE), PENDING_COOKIE)
        now = clock.now()
        if pending is None or now - datetime.fromisoformat(pending["at"]) > PENDING_FOR:
            raise OidcRefused("this sign-in expired or was started in another browser; start again")
        if error:
            raise OidcRefused(f"the identity provider answered {error[:100]!r}")
        if not code or not state or not hmac.compare_digest(state, str(pending["state"])):
            raise OidcRefused("the sign-in's state does not match; start again")
        document = _discovery(settings)
        secret = settings.oidc_client_secret
        try:
            answer = httpx.post(
                document["token_endpoint"],
                data={
                    "grant_type": "authorization_code",
                    "code": code,
                    "redirect_uri": pending["redirect_uri"],
                    "code_verifier": pending["verifier"],
                    "client_id": settings.oidc_client_id,
                },
                auth=(settings.oidc_client_id or "", secret.get_secret_value()) if secret else None,
                timeout=TIMEOUT,
            )
            answer.raise_for_status()
            token = answer.json()["id_token"]
        except (httpx.HTTPError, ValueError, KeyError, TypeError):
            raise OidcRefused("the identity provider did not redeem the code") from None
        claims = validate_id_token(
            str(token),
            jwks_uri=document["jwks_uri"],
            issuer=str(document["issuer"]),
            audience=settings.oidc_client_id or "",
            nonce=str(pending["nonce"]),
            now=now,
        )
        name = claims.get(settings.oidc_principal_claim)
        if not isinstance(name, str) or not name:
            raise OidcRefused(f"the ID token has no {settings.oidc_principal_claim!r} claim")
        authenticator: Authenticator = request.app.state.authenticator
        with Session(request.app.state.engine) as session:
            principal = session.exec(select(Principal).where(Principal.name == name)).first()
            try:
                authenticator.caller_for(session, principal)
            except Unauthenticated:
                raise OidcRefused(
                    f"{name!r} is not an enabled principal of this platform; ask a platform admin"
                ) from None
        return name, str(pending.get("next", ""))
