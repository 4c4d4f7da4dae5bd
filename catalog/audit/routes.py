"""Audit API: query, export, accounting of disclosures, chain verification (`audit:read`)."""

from collections.abc import Iterator
from dataclasses import asdict
from datetime import datetime
from typing import Annotated

from litestar import Controller, get
from litestar.di import NamedDependency, Provide
from litestar.params import QueryParameter
from litestar.response import Stream
from sqlalchemy.engine import Engine
from sqlmodel import Session

from catalog.audit import chain, service
from catalog.audit.models import AuditPage, DisclosureReport, VerifyReport
from catalog.kernel.db import transaction
from catalog.kernel.pagination import PageRequest
from catalog.kernel.problems import problem_responses

READ = {"permission": "audit:read"}
Text = Annotated[str | None, QueryParameter(max_length=200)]
# `actor` is also the name of the caller dependency, so the filter's kwarg has another name.
ActorFilter = Annotated[str | None, QueryParameter(name="actor", max_length=200)]
Moment = Annotated[datetime | None, QueryParameter()]


ERRORS = problem_responses(400, 401, 403, 404, 422, 429, 503)


def audit_filters(
    actor_name: ActorFilter = None,
    recipient: Text = None,
    product: Text = None,
    tier: Text = None,
    action: Text = None,
    outcome: Text = None,
    request_id: Text = None,
) -> service.AuditFilters:
    """`?actor=&recipient=&product=&tier=&action=&outcome=&request_id=`: the API's and the
    console's trail take the same filters (each reads the period its own way)."""
    return service.AuditFilters(
        actor=actor_name,
        recipient=recipient,
        product=product,
        tier=tier,
        action=action,
        outcome=outcome,
        request_id=request_id,
    )


FILTERS = {"filters": Provide(audit_filters, sync_to_thread=False)}


class AuditController(Controller):
    """The audit trail, for auditors and platform admins."""

    path = "/api/v1/audit"
    tags = ("audit",)

    @get("/", sync_to_thread=True, opt=READ, responses=ERRORS, dependencies=FILTERS)
    def list_events(
        self,
        session: NamedDependency[Session],
        page: NamedDependency[PageRequest],
        filters: NamedDependency[service.AuditFilters],
        since: Moment = None,
        until: Moment = None,
    ) -> AuditPage:
        """Entries matching every filter, newest first (`action=sharing.*` matches a prefix)."""
        query = service.AuditQuery(**asdict(filters), since=since, until=until)
        return service.list_events(session, query, limit=page.size, cursor=page.cursor)

    @get(
        "/export",
        sync_to_thread=True,
        opt=READ,
        media_type="application/x-ndjson",
        responses=ERRORS,
    )
    def export(
        self,
        engine: NamedDependency[Engine],
        since: Moment = None,
        until: Moment = None,
        actor_name: ActorFilter = None,
        recipient: Text = None,
        product: Text = None,
        action: Text = None,
    ) -> Stream:
        """Matching entries as NDJSON, oldest first, streamed (one entry per line)."""
        query = service.AuditQuery(
            actor=actor_name,
            recipient=recipient,
            product=product,
            action=action,
            since=since,
            until=until,
        )

        def lines() -> Iterator[str]:
            # Its own transaction: the response streams after the request's session closed.
            with transaction(engine) as session:
                yield from (service.ndjson_line(e) for e in service.iter_events(session, query))

        return Stream(lines(), media_type="application/x-ndjson")

    @get("/disclosures", sync_to_thread=True, opt=READ, responses=ERRORS)
    def disclosures(
        self,
        session: NamedDependency[Session],
        product: Annotated[str, QueryParameter(max_length=130)],
        since: Annotated[datetime | None, QueryParameter(name="from")] = None,
        until: Annotated[datetime | None, QueryParameter(name="to")] = None,
    ) -> DisclosureReport:
        """Accounting of disclosures of a product: who read which versions, under which DUA."""
        return service.list_disclosures(session, product, since=since, until=until)

    @get("/verify", sync_to_thread=True, opt=READ, responses=ERRORS)
    def verify(self, session: NamedDependency[Session]) -> VerifyReport:
        """Recompute the hash chain and check the checkpoints; names the first broken entry."""
        return chain.verify_chain(session)
