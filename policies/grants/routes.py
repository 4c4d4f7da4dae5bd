"""Grants under /api/v1/grants."""

from typing import Annotated

from litestar import Controller, get, post
from litestar.di import NamedDependency
from litestar.params import JSONBody, QueryParameter
from sqlmodel import Session

from catalog.audit.record import Actor
from catalog.kernel.clock import Clock
from catalog.kernel.problems import READ_ERRORS, SEARCH_ERRORS, WRITE_ERRORS
from catalog.kernel.settings import Settings
from policies.grants.models import GrantPage, GrantRead
from policies.grants.service import (
    get_grant,
    grant_read,
    list_grants,
    review_grant,
    revoke_grant,
)
from policies.models import Decision, GrantState
from policies.routing import ANY, Cursor, Limit, RowId, page_size


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
        items, nxt = list_grants(
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
            items=[grant_read(session, g, settings=settings, now=now) for g in items],
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
        grant = get_grant(session, grant_id, actor=actor)
        return grant_read(session, grant, settings=settings, now=clock.now())

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
        grant = revoke_grant(session, grant_id, reason=data.reason, actor=actor, clock=clock)
        return grant_read(session, grant, settings=settings, now=clock.now())

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
        grant = review_grant(
            session, grant_id, reason=data.reason, actor=actor, settings=settings, clock=clock
        )
        return grant_read(session, grant, settings=settings, now=clock.now())
