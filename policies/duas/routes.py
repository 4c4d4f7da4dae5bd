"""DUAs under /api/v1/duas."""

from typing import Annotated

from litestar import get, post
from litestar.di import NamedDependency
from litestar.params import JSONBody, QueryParameter

from catalog.kernel.pagination import PageRequest
from catalog.kernel.problems import SEARCH_ERRORS, WRITE_ERRORS
from catalog.kernel.routing import action
from policies.duas.models import DuaCreate, DuaPage, DuaRead
from policies.duas.service import create_dua, dua_read, list_duas, revoke_dua
from policies.models import Decision
from policies.routing import ANY, Call, GovernanceController, RowId, required_reason


class DuaController(GovernanceController):
    """Data use agreements."""

    path = "/api/v1/duas"
    tags = ("governance",)

    @get("/", sync_to_thread=True, opt=ANY, responses=SEARCH_ERRORS)
    def list_duas(
        self,
        call: Call,
        page: NamedDependency[PageRequest],
        organization: Annotated[str | None, QueryParameter(max_length=63)] = None,
    ) -> DuaPage:
        """DUAs visible to the caller."""
        items, nxt = list_duas(
            call.session,
            actor=call.actor,
            organization=organization,
            limit=page.size,
            cursor=page.cursor,
        )
        now = call.clock.now()
        return DuaPage(items=[dua_read(call.session, d, now) for d in items], next_cursor=nxt)

    @post("/", sync_to_thread=True, opt={"permission": "dua:create"}, responses=WRITE_ERRORS)
    def create_dua(self, data: JSONBody[DuaCreate], call: Call) -> DuaRead:
        """Record a signed DUA."""
        dua = create_dua(call.session, data, actor=call.actor, clock=call.clock)
        return dua_read(call.session, dua, call.clock.now())

    @action("/{dua_id:int}/revoke", opt={"permission": "dua:revoke"})
    def revoke_dua(self, dua_id: RowId, data: JSONBody[Decision], call: Call) -> DuaRead:
        """Revoke a DUA; all its grants end."""
        dua = revoke_dua(
            call.session, dua_id, reason=required_reason(data), actor=call.actor, clock=call.clock
        )
        return dua_read(call.session, dua, call.clock.now())
