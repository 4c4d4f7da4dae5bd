"""Grants under /api/v1/grants."""

from typing import Annotated

from litestar import get, post
from litestar.di import NamedDependency
from litestar.params import JSONBody, QueryParameter

from catalog.kernel.problems import READ_ERRORS, SEARCH_ERRORS, WRITE_ERRORS
from policies.grants.models import GrantPage, GrantRead
from policies.grants.service import (
    get_grant,
    grant_read,
    list_grants,
    review_grant,
    revoke_grant,
)
from policies.models import Decision, GrantState
from policies.routing import ANY, Cursor, GovernanceController, Limit, RowId, ServiceCall, page_size


class GrantController(GovernanceController):
    """Grants: what each recipient may read, until when."""

    path = "/api/v1/grants"
    tags = ("governance",)

    @get("/", sync_to_thread=True, opt=ANY, responses=SEARCH_ERRORS)
    def list_grants(
        self,
        call: NamedDependency[ServiceCall],
        consumer: Annotated[str | None, QueryParameter(max_length=63)] = None,
        product: Annotated[str | None, QueryParameter(max_length=130)] = None,
        grant_state: Annotated[GrantState | None, QueryParameter(name="state")] = None,
        limit: Limit = None,
        cursor: Cursor = None,
    ) -> GrantPage:
        """Grants visible to the caller; `state=review-due` lists those overdue for review."""
        items, nxt = list_grants(
            call.session,
            actor=call.actor,
            settings=call.settings,
            clock=call.clock,
            organization=consumer,
            product=product,
            state=grant_state,
            limit=page_size(call.settings, limit),
            cursor=cursor,
        )
        now = call.clock.now()
        return GrantPage(
            items=[grant_read(call.session, g, settings=call.settings, now=now) for g in items],
            next_cursor=nxt,
        )

    @get("/{grant_id:int}", sync_to_thread=True, opt=ANY, responses=READ_ERRORS)
    def get_grant(
        self,
        grant_id: RowId,
        call: NamedDependency[ServiceCall],
    ) -> GrantRead:
        """One grant with its state and notices."""
        grant = get_grant(call.session, grant_id, actor=call.actor)
        return grant_read(call.session, grant, settings=call.settings, now=call.clock.now())

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
        call: NamedDependency[ServiceCall],
    ) -> GrantRead:
        """Revoke at once."""
        grant = revoke_grant(
            call.session, grant_id, reason=data.reason, actor=call.actor, clock=call.clock
        )
        return grant_read(call.session, grant, settings=call.settings, now=call.clock.now())

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
        call: NamedDependency[ServiceCall],
    ) -> GrantRead:
        """Record a re-review; the next review is one period later."""
        grant = review_grant(
            call.session,
            grant_id,
            reason=data.reason,
            actor=call.actor,
            settings=call.settings,
            clock=call.clock,
        )
        return grant_read(call.session, grant, settings=call.settings, now=call.clock.now())
