"""Governance API: organisations, principals and tokens, DUAs, access requests, grants."""

from typing import Annotated

from litestar import Controller, get, post
from litestar.di import NamedDependency
from litestar.params import FromPath, JSONBody, PathParameter, QueryParameter
from sqlmodel import Session

from catalog.audit.record import Actor
from catalog.kernel import pagination
from catalog.kernel.clock import Clock
from catalog.kernel.errors import InvalidParameter
from catalog.kernel.problems import problem_responses
from catalog.kernel.settings import Settings
from policies import access, principals
from policies.enforcer import PolicyEngine
from policies.models import (
    MAX_ROW_ID,
    AccessRequestCreate,
    AccessRequestPage,
    AccessRequestRead,
    ApiTokenIssued,
    CommentCreate,
    CommentRead,
    Decision,
    DuaCreate,
    DuaPage,
    DuaRead,
    GrantPage,
    GrantRead,
    GrantState,
    OrganizationCreate,
    PrincipalCreate,
    PrincipalRead,
    RequestStatus,
    TokenCreate,
)

ANY = {"permission": "authenticated"}  # fine-grained checks happen in the service
Limit = Annotated[int | None, QueryParameter(ge=1)]
Cursor = Annotated[str | None, QueryParameter(max_length=200)]
RowId = Annotated[int, PathParameter(ge=1, le=MAX_ROW_ID)]
# The errors each kind of route answers, documented as problem+json (429: too many
# failed authentications from the caller's address or token).
LIST_ERRORS = problem_responses(401, 403, 429)
SEARCH_ERRORS = problem_responses(400, 401, 403, 404, 422, 429)  # 404: unknown filter value
READ_ERRORS = problem_responses(400, 401, 403, 404, 422, 429)
ACTION_ERRORS = problem_responses(400, 401, 403, 404, 409, 422, 429)
WRITE_ERRORS = problem_responses(400, 401, 403, 404, 409, 413, 422, 429)


def page_size(settings: Settings, limit: int | None) -> int:
    """The requested page size within the configured bounds."""
    return pagination.page_size(
        limit, default=settings.default_page_size, maximum=settings.max_page_size
    )


def _required(decision: Decision) -> str:
    if not (decision.reason and decision.reason.strip()):
        raise InvalidParameter("a reason is required")
    return decision.reason


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
            for o in principals.list_organizations(session, actor=actor)
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
        org = principals.create_organization(session, data, actor=actor, clock=clock)
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
        return principals.list_principals(session, actor=actor)

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
        principal = principals.create_principal(session, data, actor=actor, clock=clock)
        policy.invalidate()
        return principals.principal_read(session, principal)

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
        principal = principals.disable_principal(
            session, name, reason=_required(data), actor=actor, clock=clock
        )
        policy.invalidate()
        return principals.principal_read(session, principal)

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
        return principals.create_token(
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
        principals.revoke_token(session, token_id, actor=actor, clock=clock)
        return {"id": token_id, "status": "revoked"}


class DuaController(Controller):
    """Data use agreements."""

    path = "/api/v1/duas"
    tags = ("governance",)

    @get("/", sync_to_thread=True, opt=ANY, responses=SEARCH_ERRORS)
    def list_duas(
        self,
        session: NamedDependency[Session],
        settings: NamedDependency[Settings],
        actor: NamedDependency[Actor],
        clock: NamedDependency[Clock],
        organization: Annotated[str | None, QueryParameter(max_length=63)] = None,
        limit: Limit = None,
        cursor: Cursor = None,
    ) -> DuaPage:
        """DUAs visible to the caller."""
        items, nxt = access.list_duas(
            session,
            actor=actor,
            organization=organization,
            limit=page_size(settings, limit),
            cursor=cursor,
        )
        now = clock.now()
        return DuaPage(items=[access.dua_read(session, d, now) for d in items], next_cursor=nxt)

    @post("/", sync_to_thread=True, opt={"permission": "dua:create"}, responses=WRITE_ERRORS)
    def create_dua(
        self,
        data: JSONBody[DuaCreate],
        session: NamedDependency[Session],
        actor: NamedDependency[Actor],
        clock: NamedDependency[Clock],
    ) -> DuaRead:
        """Record a signed DUA."""
        dua = access.create_dua(session, data, actor=actor, clock=clock)
        return access.dua_read(session, dua, clock.now())

    @post(
        "/{dua_id:int}/revoke",
        sync_to_thread=True,
        status_code=200,
        opt={"permission": "dua:revoke"},
        responses=WRITE_ERRORS,
    )
    def revoke_dua(
        self,
        dua_id: RowId,
        data: JSONBody[Decision],
        session: NamedDependency[Session],
        actor: NamedDependency[Actor],
        clock: NamedDependency[Clock],
    ) -> DuaRead:
        """Revoke a DUA; all its grants end."""
        dua = access.revoke_dua(session, dua_id, reason=_required(data), actor=actor, clock=clock)
        return access.dua_read(session, dua, clock.now())


class AccessRequestController(Controller):
    """Access requests and their review."""

    path = "/api/v1/access-requests"
    tags = ("governance",)

    @get("/", sync_to_thread=True, opt=ANY, responses=SEARCH_ERRORS)
    def list_requests(
        self,
        session: NamedDependency[Session],
        settings: NamedDependency[Settings],
        actor: NamedDependency[Actor],
        status: Annotated[RequestStatus | None, QueryParameter()] = None,
        product: Annotated[str | None, QueryParameter(max_length=130)] = None,
        consumer: Annotated[str | None, QueryParameter(max_length=63)] = None,
        limit: Limit = None,
        cursor: Cursor = None,
    ) -> AccessRequestPage:
        """Requests visible to the caller."""
        items, nxt = access.list_requests(
            session,
            actor=actor,
            status=status,
            product=product,
            organization=consumer,
            limit=page_size(settings, limit),
            cursor=cursor,
        )
        return AccessRequestPage(
            items=[access.request_read(session, r) for r in items], next_cursor=nxt
        )

    @post("/", sync_to_thread=True, opt=ANY, responses=WRITE_ERRORS)
    def create_request(
        self,
        data: JSONBody[AccessRequestCreate],
        session: NamedDependency[Session],
        actor: NamedDependency[Actor],
        clock: NamedDependency[Clock],
        policy: NamedDependency[PolicyEngine],
    ) -> AccessRequestRead:
        """File a request (consumers, for their organisation)."""
        request = access.create_request(session, data, actor=actor, policy=policy, clock=clock)
        return access.request_read(session, request)

    @get("/{request_id:int}", sync_to_thread=True, opt=ANY, responses=READ_ERRORS)
    def get_request(
        self,
        request_id: RowId,
        session: NamedDependency[Session],
        actor: NamedDependency[Actor],
    ) -> AccessRequestRead:
        """One request with its comments."""
        return access.request_read(session, access.get_request(session, request_id, actor=actor))

    @post(
        "/{request_id:int}/approve",
        sync_to_thread=True,
        status_code=200,
        opt=ANY,
        responses=WRITE_ERRORS,
    )
    def approve(
        self,
        request_id: RowId,
        data: JSONBody[Decision],
        session: NamedDependency[Session],
        settings: NamedDependency[Settings],
        actor: NamedDependency[Actor],
        clock: NamedDependency[Clock],
        policy: NamedDependency[PolicyEngine],
    ) -> GrantPage:
        """Approve (platform admins, never the requester): the grants are created."""
        grants = access.approve_request(
            session,
            request_id,
            reason=data.reason,
            actor=actor,
            policy=policy,
            settings=settings,
            clock=clock,
        )
        now = clock.now()
        return GrantPage(
            items=[access.grant_read(session, g, settings=settings, now=now) for g in grants],
            next_cursor=None,
        )

    @post(
        "/{request_id:int}/deny",
        sync_to_thread=True,
        status_code=200,
        opt=ANY,
        responses=WRITE_ERRORS,
    )
    def deny(
        self,
        request_id: RowId,
        data: JSONBody[Decision],
        session: NamedDependency[Session],
        actor: NamedDependency[Actor],
        clock: NamedDependency[Clock],
    ) -> AccessRequestRead:
        """Deny with a reason."""
        request = access.deny_request(
            session, request_id, reason=data.reason, actor=actor, clock=clock
        )
        return access.request_read(session, request)

    @post(
        "/{request_id:int}/withdraw",
        sync_to_thread=True,
        status_code=200,
        opt=ANY,
        responses=ACTION_ERRORS,
    )
    def withdraw(
        self,
        request_id: RowId,
        session: NamedDependency[Session],
        actor: NamedDependency[Actor],
        clock: NamedDependency[Clock],
    ) -> AccessRequestRead:
        """The requesting organisation withdraws its request."""
        request = access.withdraw_request(session, request_id, actor=actor, clock=clock)
        return access.request_read(session, request)

    @post("/{request_id:int}/comments", sync_to_thread=True, opt=ANY, responses=WRITE_ERRORS)
    def comment(
        self,
        request_id: RowId,
        data: JSONBody[CommentCreate],
        session: NamedDependency[Session],
        actor: NamedDependency[Actor],
        clock: NamedDependency[Clock],
    ) -> CommentRead:
        """Comment (reviewers, owning facility teams, the requesting organisation)."""
        c = access.comment_request(session, request_id, data.body, actor=actor, clock=clock)
        return CommentRead(author=c.author, body=c.body, created_at=c.created_at)


class GrantController(Controller):
    """Grants: what each recipient may read, until when."""

    path = "/api/v1/grants"
    tags = ("governance",)

    @get("/", sync_to_thread=True, opt=ANY, responses=SEARCH_ERRORS)
    def list_grants(
        self,
        session: NamedDependency[Session],
        settings: NamedDependency[Settings],
        actor: NamedDependency[Actor],
        clock: NamedDependency[Clock],
        consumer: Annotated[str | None, QueryParameter(max_length=63)] = None,
        product: Annotated[str | None, QueryParameter(max_length=130)] = None,
        grant_state: Annotated[GrantState | None, QueryParameter(name="state")] = None,
        limit: Limit = None,
        cursor: Cursor = None,
    ) -> GrantPage:
        """Grants visible to the caller; `state=review-due` lists those overdue for review."""
        items, nxt = access.list_grants(
            session,
            actor=actor,
            settings=settings,
            clock=clock,
            organization=consumer,
            product=product,
            state=grant_state,
            limit=page_size(settings, limit),
            cursor=cursor,
        )
        now = clock.now()
        return GrantPage(
            items=[access.grant_read(session, g, settings=settings, now=now) for g in items],
            next_cursor=nxt,
        )

    @get("/{grant_id:int}", sync_to_thread=True, opt=ANY, responses=READ_ERRORS)
    def get_grant(
        self,
        grant_id: RowId,
        session: NamedDependency[Session],
        settings: NamedDependency[Settings],
        actor: NamedDependency[Actor],
        clock: NamedDependency[Clock],
    ) -> GrantRead:
        """One grant with its state and notices."""
        grant = access.get_grant(session, grant_id, actor=actor)
        return access.grant_read(session, grant, settings=settings, now=clock.now())

    @post(
        "/{grant_id:int}/revoke",
        sync_to_thread=True,
        status_code=200,
        opt=ANY,
        responses=WRITE_ERRORS,
    )
    def revoke(
        self,
        grant_id: RowId,
        data: JSONBody[Decision],
        session: NamedDependency[Session],
        settings: NamedDependency[Settings],
        actor: NamedDependency[Actor],
        clock: NamedDependency[Clock],
    ) -> GrantRead:
        """Revoke at once."""
        grant = access.revoke_grant(session, grant_id, reason=data.reason, actor=actor, clock=clock)
        return access.grant_read(session, grant, settings=settings, now=clock.now())

    @post(
        "/{grant_id:int}/review",
        sync_to_thread=True,
        status_code=200,
        opt=ANY,
        responses=WRITE_ERRORS,
    )
    def review(
        self,
        grant_id: RowId,
        data: JSONBody[Decision],
        session: NamedDependency[Session],
        settings: NamedDependency[Settings],
        actor: NamedDependency[Actor],
        clock: NamedDependency[Clock],
    ) -> GrantRead:
        """Record a re-review; the next review is one period later."""
        grant = access.review_grant(
            session, grant_id, reason=data.reason, actor=actor, settings=settings, clock=clock
        )
        return access.grant_read(session, grant, settings=settings, now=clock.now())


CONTROLLERS = [
    OrganizationController,
    PrincipalController,
    DuaController,
    AccessRequestController,
    GrantController,
]
