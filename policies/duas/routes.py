"""DUAs under /api/v1/duas."""

from typing import Annotated

from litestar import Controller, get, post
from litestar.di import NamedDependency
from litestar.params import JSONBody, QueryParameter
from sqlmodel import Session

from catalog.audit.record import Actor
from catalog.kernel.clock import Clock
from catalog.kernel.problems import SEARCH_ERRORS, WRITE_ERRORS
from catalog.kernel.settings import Settings
from policies.duas.models import DuaCreate, DuaPage, DuaRead
from policies.duas.service import create_dua, dua_read, list_duas, revoke_dua
from policies.models import Decision
from policies.routing import ANY, Cursor, Limit, RowId, page_size, required_reason


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
        items, nxt = list_duas(
            session,
            actor=actor,
            organization=organization,
            limit=page_size(settings, limit),
            cursor=cursor,
        )
        now = clock.now()
        return DuaPage(items=[dua_read(session, d, now) for d in items], next_cursor=nxt)

    @post("/", sync_to_thread=True, opt={"permission": "dua:create"}, responses=WRITE_ERRORS)
    def create_dua(
        self,
        data: JSONBody[DuaCreate],
        session: NamedDependency[Session],
        actor: NamedDependency[Actor],
        clock: NamedDependency[Clock],
    ) -> DuaRead:
        """Record a signed DUA."""
        dua = create_dua(session, data, actor=actor, clock=clock)
        return dua_read(session, dua, clock.now())

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
        dua = revoke_dua(session, dua_id, reason=required_reason(data), actor=actor, clock=clock)
        return dua_read(session, dua, clock.now())
