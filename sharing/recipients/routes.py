"""Recipient administration (tokens, activation links, allow-lists) and the activation endpoint.

Administration lives under /api/v1 with the platform's own credentials and policy. The
activation endpoint is public by design: the link itself is the credential. `GET` only
describes the link (mail scanners that prefetch links must not burn it); `POST` downloads the
profile, once.
"""

from datetime import datetime, timedelta
from typing import Annotated, Any

from litestar import Controller, Request, Response, get, post, put
from litestar.di import NamedDependency
from litestar.params import JSONBody, Parameter
from pydantic import BaseModel, ConfigDict, Field
from sqlmodel import Session

from catalog.kernel.clock import Clock
from catalog.kernel.problems import problem_responses
from policies.auth import client_address
from policies.principals.service import get_organization
from policies.routing import Call, GovernanceController
from sharing.errors import HANDLERS
from sharing.files.urls import PREFIX
from sharing.protocol import dumps
from sharing.recipients import service as recipients

Organization = Annotated[str, Parameter(pattern=r"^[a-z0-9][a-z0-9-]{0,62}$")]


ERRORS = problem_responses(400, 401, 403, 404, 409, 422, 429, 503)


class TokenRotate(BaseModel):
    """Body of `POST /api/v1/recipients/{org}/tokens`."""

    model_config = ConfigDict(extra="forbid")
    days: int = Field(default=90, ge=1, le=366, description="Lifetime of the new token.")
    grace_hours: float = Field(
        default=24, ge=0, le=24 * 30, description="How long the older tokens keep working."
    )
    endpoint: str | None = Field(default=None, max_length=500, pattern=r"^https?://[^\s]+$")


class TokenRead(BaseModel):
    """A recipient token, by id (the secret is never shown again)."""

    id: str
    created_at: datetime
    expires_at: datetime
    revoked_at: datetime | None


class RecipientTokenIssued(BaseModel):
    """A new token and the profile carrying it (shown once)."""

    token: TokenRead
    profile: dict[str, Any]


class TokenRevoke(BaseModel):
    """Body of `POST /api/v1/recipients/{org}/tokens/revoke` (no id: every live token)."""

    model_config = ConfigDict(extra="forbid")
    token_id: str | None = Field(default=None, max_length=32)


class ActivationCreate(BaseModel):
    """Body of `POST /api/v1/recipients/{org}/activation-links`."""

    model_config = ConfigDict(extra="forbid")
    token_days: int = Field(default=90, ge=1, le=366)
    valid_hours: float = Field(default=72, gt=0, le=24 * 30)
    endpoint: str | None = Field(default=None, max_length=500, pattern=r"^https?://[^\s]+$")


class ActivationIssued(BaseModel):
    """A one-time activation link (shown once)."""

    id: str
    url: str
    expires_at: datetime


class Networks(BaseModel):
    """A recipient's CIDR allow-list (empty: any address)."""

    model_config = ConfigDict(extra="forbid")
    cidrs: list[str] = Field(default_factory=list, max_length=recipients.MAX_CIDRS)


def _token(token: Any) -> TokenRead:
    return TokenRead(
        id=token.id,
        created_at=token.created_at,
        expires_at=token.expires_at,
        revoked_at=token.revoked_at,
    )


class RecipientController(GovernanceController):
    """Credentials and network rules of Delta Sharing recipients."""

    path = "/api/v1/recipients/{organization:str}"
    tags = ("sharing",)

    @get("/tokens", sync_to_thread=True, opt={"permission": "recipient:read"}, responses=ERRORS)
    def list_tokens(
        self, organization: Organization, session: NamedDependency[Session]
    ) -> list[TokenRead]:
        """Every token of the recipient (ids and dates only)."""
        org = get_organization(session, organization)
        return [_token(t) for t in recipients.list_tokens(session, org)]

    @post("/tokens", sync_to_thread=True, opt={"permission": "recipient:manage"}, responses=ERRORS)
    def rotate(
        self, organization: Organization, data: JSONBody[TokenRotate], call: Call
    ) -> RecipientTokenIssued:
        """A new token; the older ones end after the grace period (never later than before)."""
        org = get_organization(call.session, organization)
        token, credential = recipients.rotate_token(
            call.session,
            org,
            days=data.days,
            grace=timedelta(hours=data.grace_hours),
            actor=call.actor,
            now=call.clock.now(),
        )
        endpoint = recipients.settings_profile_endpoint(call.settings, data.endpoint)
        return RecipientTokenIssued(
            token=_token(token), profile=recipients.profile(endpoint, token, credential)
        )

    @post(
        "/tokens/revoke",
        sync_to_thread=True,
        opt={"permission": "recipient:manage"},
        responses=ERRORS,
    )
    def revoke(
        self, organization: Organization, data: JSONBody[TokenRevoke], call: Call
    ) -> list[str]:
        """Revoke one token, or all live ones: effective on the next request."""
        org = get_organization(call.session, organization)
        return recipients.revoke_tokens(
            call.session, org, token_id=data.token_id, actor=call.actor, now=call.clock.now()
        )

    @post(
        "/activation-links",
        sync_to_thread=True,
        opt={"permission": "recipient:manage"},
        responses=ERRORS,
    )
    def create_activation(
        self, organization: Organization, data: JSONBody[ActivationCreate], call: Call
    ) -> ActivationIssued:
        """A link from which the recipient downloads its profile once."""
        org = get_organization(call.session, organization)
        activation, secret = recipients.create_activation(
            call.session,
            org,
            token_days=data.token_days,
            valid_for=timedelta(hours=data.valid_hours),
            actor=call.actor,
            now=call.clock.now(),
        )
        base = recipients.settings_profile_endpoint(call.settings, data.endpoint).rstrip("/")
        return ActivationIssued(
            id=activation.id,
            url=f"{base}{PREFIX}/activation/{secret}",
            expires_at=activation.expires_at,
        )

    @get("/networks", sync_to_thread=True, opt={"permission": "recipient:read"}, responses=ERRORS)
    def get_networks(
        self, organization: Organization, session: NamedDependency[Session]
    ) -> Networks:
        """The recipient's allow-list."""
        org = get_organization(session, organization)
        return Networks(cidrs=recipients.networks(session, org))

    @put("/networks", sync_to_thread=True, opt={"permission": "recipient:manage"}, responses=ERRORS)
    def set_networks(
        self, organization: Organization, data: JSONBody[Networks], call: Call
    ) -> Networks:
        """Replace the allow-list (applies to the protocol, file and activation endpoints)."""
        org = get_organization(call.session, organization)
        cidrs = recipients.set_networks(
            call.session, org, data.cidrs, actor=call.actor, now=call.clock.now()
        )
        return Networks(cidrs=cidrs)


Secret = Annotated[str, Parameter(max_length=200)]


class ActivationController(Controller):
    """The public end of an activation link."""

    path = PREFIX + "/activation/{secret:str}"
    tags = ("sharing",)
    exception_handlers = HANDLERS  # the protocol's error shape, like the rest of /delta-sharing

    @get("/", sync_to_thread=True, responses=ERRORS)
    def describe(
        self, secret: Secret, session: NamedDependency[Session], clock: NamedDependency[Clock]
    ) -> dict[str, Any]:
        """Whose link this is and whether it can still be used (does not use it up)."""
        activation = recipients.find_activation(session, secret)
        return {
            "expires_at": activation.expires_at,
            "used": activation.used_at is not None,
            "expired": activation.expires_at <= clock.now(),
            "download": "POST to this URL to download the profile (once)",
        }

    @post("/", sync_to_thread=True, status_code=200, responses=ERRORS)
    def download(
        self,
        request: Request[Any, Any, Any],
        secret: Secret,
        session: NamedDependency[Session],
        clock: NamedDependency[Clock],
    ) -> Response[bytes]:
        """The profile file, once; a second download is refused (409)."""
        organization, token, credential = recipients.redeem_activation(
            session, secret, client=client_address(request), now=clock.now()
        )
        endpoint = str(request.base_url).rstrip("/")
        body = recipients.profile(endpoint, token, credential)
        return Response(
            content=dumps(body),
            media_type="application/json",
            headers={
                "Content-Disposition": f'attachment; filename="{organization.name}.share"',
                "Cache-Control": "no-store",
            },
        )


CONTROLLERS = [RecipientController, ActivationController]
