"""Access requests under /api/v1/access-requests."""

from typing import Annotated

from litestar import get, post
from litestar.di import NamedDependency
from litestar.params import JSONBody, QueryParameter

from catalog.kernel.pagination import PageRequest
from catalog.kernel.problems import ACTION_ERRORS, READ_ERRORS, SEARCH_ERRORS, WRITE_ERRORS
from catalog.kernel.routing import action
from policies.grants.models import GrantPage
from policies.grants.routes import grant_page
from policies.models import Decision, RequestStatus
from policies.requests.models import (
    AccessRequestCreate,
    AccessRequestPage,
    AccessRequestRead,
    CommentCreate,
    CommentRead,
)
from policies.requests.service import (
    approve_request,
    comment_request,
    create_request,
    deny_request,
    get_request,
    list_requests,
    request_read,
    withdraw_request,
)
from policies.routing import ANY, Call, GovernanceController, RowId


class AccessRequestController(GovernanceController):
    """Access requests and their review."""

    path = "/api/v1/access-requests"
    tags = ("governance",)

    @get("/", sync_to_thread=True, opt=ANY, responses=SEARCH_ERRORS)
    def list_requests(
        self,
        call: Call,
        page: NamedDependency[PageRequest],
        status: Annotated[RequestStatus | None, QueryParameter()] = None,
        product: Annotated[str | None, QueryParameter(max_length=130)] = None,
        consumer: Annotated[str | None, QueryParameter(max_length=63)] = None,
    ) -> AccessRequestPage:
        """Requests visible to the caller."""
        items, nxt = list_requests(
            call.session,
            actor=call.actor,
            status=status,
            product=product,
            organization=consumer,
            limit=page.size,
            cursor=page.cursor,
        )
        return AccessRequestPage(
            items=[request_read(call.session, r) for r in items], next_cursor=nxt
        )

    @post("/", sync_to_thread=True, opt=ANY, responses=WRITE_ERRORS)
    def create_request(self, data: JSONBody[AccessRequestCreate], call: Call) -> AccessRequestRead:
        """File a request (consumers, for their organisation)."""
        request = create_request(
            call.session, data, actor=call.actor, policy=call.policy, clock=call.clock
        )
        return request_read(call.session, request)

    @get("/{request_id:int}", sync_to_thread=True, opt=ANY, responses=READ_ERRORS)
    def get_request(self, request_id: RowId, call: Call) -> AccessRequestRead:
        """One request with its comments."""
        return request_read(call.session, get_request(call.session, request_id, actor=call.actor))

    @action("/{request_id:int}/approve", opt=ANY)
    def approve(self, request_id: RowId, data: JSONBody[Decision], call: Call) -> GrantPage:
        """Approve (platform admins, never the requester): the grants are created."""
        grants = approve_request(
            call.session,
            request_id,
            reason=data.reason,
            actor=call.actor,
            policy=call.policy,
            settings=call.settings,
            clock=call.clock,
        )
        return grant_page(call, grants, next_cursor=None)

    @action("/{request_id:int}/deny", opt=ANY)
    def deny(self, request_id: RowId, data: JSONBody[Decision], call: Call) -> AccessRequestRead:
        """Deny with a reason."""
        request = deny_request(
            call.session, request_id, reason=data.reason, actor=call.actor, clock=call.clock
        )
        return request_read(call.session, request)

    @action("/{request_id:int}/withdraw", opt=ANY, responses=ACTION_ERRORS)
    def withdraw(self, request_id: RowId, call: Call) -> AccessRequestRead:
        """The requesting organisation withdraws its request."""
        request = withdraw_request(call.session, request_id, actor=call.actor, clock=call.clock)
        return request_read(call.session, request)

    @post("/{request_id:int}/comments", sync_to_thread=True, opt=ANY, responses=WRITE_ERRORS)
    def comment(self, request_id: RowId, data: JSONBody[CommentCreate], call: Call) -> CommentRead:
        """Comment (reviewers, owning facility teams, the requesting organisation)."""
        c = comment_request(call.session, request_id, data.body, actor=call.actor, clock=call.clock)
        return CommentRead(author=c.author, body=c.body, created_at=c.created_at)
