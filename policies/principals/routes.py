"""Organisations, principals and their API tokens under /api/v1."""

from litestar import Controller, get, post
from litestar.di import NamedDependency
from litestar.params import FromPath, JSONBody
from sqlmodel import Session

from catalog.audit.record import Actor
from catalog.kernel.clock import Clock
from catalog.kernel.problems import ACTION_ERRORS, LIST_ERRORS, WRITE_ERRORS
from policies.enforcer import PolicyEngine
from policies.models import Decision
from policies.principals.models import (
    ApiTokenIssued,
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
from policies.routing import ANY, required_reason


class OrganizationController(Controller):
    """Consumer organisations (the sharing recipients)."""

    path = "/api/v1/organizations"
    tags = ("governance",)

    @get("/", sync_to_thread=True, opt={"permission": "organization:read"}, responses=LIST_ERRORS)
    def list_organizations(
        self, session: NamedDependency[Session], actor: NamedDependency[Actor]
    ) -> list[OrganizationCreate]:
        """All consumer organisations."""
        return [
            OrganizationCreate(name=o.name, title=o.title, contact_email=o.contact_email)
            for o in list_organizations(session, actor=actor)
        ]

    @post(
        "/", sync_to_thread=True, opt={"permission": "organization:create"}, responses=WRITE_ERRORS
    )
    def create_organization(
        self,
        data: JSONBody[OrganizationCreate],
        session: NamedDependency[Session],
        actor: NamedDependency[Actor],
        clock: NamedDependency[Clock],
    ) -> OrganizationCreate:
        """Register a consumer organisation."""
        org = create_organization(session, data, actor=actor, clock=clock)
        return OrganizationCreate(name=org.name, title=org.title, contact_email=org.contact_email)


class PrincipalController(Controller):
    """People and service accounts, their roles and API tokens."""

    path = "/api/v1/principals"
    tags = ("governance",)

    @get("/", sync_to_thread=True, opt={"permission": "principal:read"}, responses=LIST_ERRORS)
    def list_principals(
        self, session: NamedDependency[Session], actor: NamedDependency[Actor]
    ) -> list[PrincipalRead]:
        """Every principal with roles."""
        return list_principals(session, actor=actor)

    @post("/", sync_to_thread=True, opt={"permission": "principal:create"}, responses=WRITE_ERRORS)
    def create_principal(
        self,
        data: JSONBody[PrincipalCreate],
        session: NamedDependency[Session],
        actor: NamedDependency[Actor],
        clock: NamedDependency[Clock],
        policy: NamedDependency[PolicyEngine],
    ) -> PrincipalRead:
        """Create a principal with its roles."""
        principal = create_principal(session, data, actor=actor, clock=clock)
        policy.invalidate()
        return principal_read(session, principal)

    @post(
        "/{name:str}/disable",
        sync_to_thread=True,
        status_code=200,
        opt={"permission": "principal:disable"},
        responses=WRITE_ERRORS,
    )
    def disable_principal(
        self,
        name: FromPath[str],
        data: JSONBody[Decision],
        session: NamedDependency[Session],
        actor: NamedDependency[Actor],
        clock: NamedDependency[Clock],
        policy: NamedDependency[PolicyEngine],
    ) -> PrincipalRead:
        """Disable a principal: tokens stop working, roles are removed."""
        principal = disable_principal(
            session, name, reason=required_reason(data), actor=actor, clock=clock
        )
        policy.invalidate()
        return principal_read(session, principal)

    @post("/{name:str}/tokens", sync_to_thread=True, opt=ANY, responses=WRITE_ERRORS)
    def create_token(
        self,
        name: FromPath[str],
        data: JSONBody[TokenCreate],
        session: NamedDependency[Session],
        actor: NamedDependency[Actor],
        clock: NamedDependency[Clock],
    ) -> ApiTokenIssued:
        """Issue a token (admins for anyone, a principal for itself); shown once."""
        return create_token(
            session, name, days=data.days, description=data.description, actor=actor, clock=clock
        )

    @post(
        "/tokens/{token_id:str}/revoke",
        sync_to_thread=True,
        status_code=200,
        opt=ANY,
        responses=ACTION_ERRORS,
    )
    def revoke_token(
        self,
        token_id: FromPath[str],
        session: NamedDependency[Session],
        actor: NamedDependency[Actor],
        clock: NamedDependency[Clock],
    ) -> dict[str, str]:
        """Revoke a token at once."""
        revoke_token(session, token_id, actor=actor, clock=clock)
        return {"id": token_id, "status": "revoked"}
