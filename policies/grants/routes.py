"""Grants under /api/v1/grants."""

from typing import Annotated

from litestar import get
from litestar.di import NamedDependency
from litestar.params import JSONBody, QueryParameter

from catalog.kernel.pagination import PageRequest
from catalog.kernel.problems import READ_ERRORS, SEARCH_ERRORS
from catalog.kernel.routing import action
from policies.grants.models import Grant, GrantPage, GrantRead
from policies.grants.service import (
    get_grant,
    grant_read,
    list_grants,
    review_grant,
    revoke_grant,
)
from policies.models import Decision, GrantState
from policies.routing import ANY, Call, GovernanceController, RowId, ServiceCall


class GrantController(GovernanceController):
    """Grants: what each recipient may read, until when."""

    path = "/api/v1/grants"
    tags = ("governance",)

    @get("/", sync_to_thread=True, opt=ANY, responses=SEARCH_ERRORS)
    def list_grants(
        self,
        call: Call,
        page: NamedDependency[PageRequest],
        consumer: Annotated[str | None, QueryParameter(max_length=63)] = None,
        product: Annotated[str | None, QueryParameter(max_length=130)] = None,
        grant_state: Annotated[GrantState | None, QueryParameter(name="state")] = None,
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
            limit=page.size,
            cursor=page.cursor,
        )
        return grant_page(call, items, nxt)

    @get("/{grant_id:int}", sync_to_thread=True, opt=ANY, responses=READ_ERRORS)
    def get_grant(self, grant_id: RowId, call: Call) -> GrantRead:
        """One grant with its state and notices."""
        grant = get_grant(call.session, grant_id, actor=call.actor)
        return grant_read(call.session, grant, settings=call.settings, now=call.clock.now())

    @action("/{grant_id:int}/revoke", opt=ANY)
    def revoke(self, grant_id: RowId, data: JSONBody[Decision], call: Call) -> GrantRead:
        """Revoke at once."""
        grant = revoke_grant(
            call.session, grant_id, reason=data.reason, actor=call.actor, clock=call.clock
        )
        return grant_read(call.session, grant, settings=call.settings, now=call.clock.now())

    @action("/{grant_id:int}/review", opt=ANY)
    def review(self, grant_id: RowId, data: JSONBody[Decision], call: Call) -> GrantRead:
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


def grant_page(call: ServiceCall, grants: list[Grant], next_cursor: str | None) -> GrantPage:
    """The page of `grants` as the caller sees them (a listing's, or an approval's grants)."""
    now = call.clock.now()
    items = [grant_read(call.session, g, settings=call.settings, now=now) for g in grants]
    return GrantPage(items=items, next_cursor=next_cursor)
