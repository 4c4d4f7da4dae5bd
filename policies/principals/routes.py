"""Organisations, principals and their API tokens under /api/v1."""

from litestar import get, post
from litestar.params import FromPath, JSONBody

from catalog.kernel.problems import ACTION_ERRORS, LIST_ERRORS, WRITE_ERRORS
from catalog.kernel.routing import action
from policies.models import Decision
from policies.principals.models import (
    ApiTokenIssued,
    Organization,
    OrganizationCreate,
    PrincipalCreate,
    PrincipalRead,
    TokenCreate,
)
from policies.principals.service import (
    create_organization,
    create_principal,
    create_token,
    disable_principal,
    list_organizations,
    list_principals,
    principal_read,
    revoke_token,
)
from policies.routing import ANY, Call, GovernanceController, required_reason


class OrganizationController(GovernanceController):
    """Consumer organisations (the sharing recipients)."""

    path = "/api/v1/organizations"
    tags = ("governance",)

    @get("/", sync_to_thread=True, opt={"permission": "organization:read"}, responses=LIST_ERRORS)
    def list_organizations(self, call: Call) -> list[OrganizationCreate]:
        """All consumer organisations."""
        return [_organization(o) for o in list_organizations(call.session, actor=call.actor)]

    @post(
        "/", sync_to_thread=True, opt={"permission": "organization:create"}, responses=WRITE_ERRORS
    )
    def create_organization(
        self, data: JSONBody[OrganizationCreate], call: Call
    ) -> OrganizationCreate:
        """Register a consumer organisation."""
        return _organization(
            create_organization(call.session, data, actor=call.actor, clock=call.clock)
        )


class PrincipalController(GovernanceController):
    """People and service accounts, their roles and API tokens."""

    path = "/api/v1/principals"
    tags = ("governance",)

    @get("/", sync_to_thread=True, opt={"permission": "principal:read"}, responses=LIST_ERRORS)
    def list_principals(self, call: Call) -> list[PrincipalRead]:
        """Every principal with roles."""
        return list_principals(call.session, actor=call.actor)

    @post("/", sync_to_thread=True, opt={"permission": "principal:create"}, responses=WRITE_ERRORS)
    def create_principal(self, data: JSONBody[PrincipalCreate], call: Call) -> PrincipalRead:
        """Create a principal with its roles."""
        principal = create_principal(call.session, data, actor=call.actor, clock=call.clock)
        call.policy.invalidate()
        return principal_read(call.session, principal)

    @action("/{name:str}/disable", opt={"permission": "principal:disable"})
    def disable_principal(
        self, name: FromPath[str], data: JSONBody[Decision], call: Call
    ) -> PrincipalRead:
        """Disable a principal: tokens stop working, roles are removed."""
        principal = disable_principal(
            call.session, name, reason=required_reason(data), actor=call.actor, clock=call.clock
        )
        call.policy.invalidate()
        return principal_read(call.session, principal)

    @post("/{name:str}/tokens", sync_to_thread=True, opt=ANY, responses=WRITE_ERRORS)
    def create_token(
        self, name: FromPath[str], data: JSONBody[TokenCreate], call: Call
    ) -> ApiTokenIssued:
        """Issue a token (admins for anyone, a principal for itself); shown once."""
        return create_token(
            call.session,
            name,
            days=data.days,
            description=data.description,
            actor=call.actor,
            clock=call.clock,
        )

    @action("/tokens/{token_id:str}/revoke", opt=ANY, responses=ACTION_ERRORS)
    def revoke_token(self, token_id: FromPath[str], call: Call) -> dict[str, str]:
        """Revoke a token at once."""
        revoke_token(call.session, token_id, actor=call.actor, clock=call.clock)
        return {"id": token_id, "status": "revoked"}


def _organization(org: Organization) -> OrganizationCreate:
    """The API shape of an organisation."""
    return OrganizationCreate(name=org.name, title=org.title, contact_email=org.contact_email)
