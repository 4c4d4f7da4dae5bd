"""The auditor's accounting of disclosures: who received which tier of which product, when,
and under which DUA, over a period, from the audit trail (the API's `list_disclosures`) and the
grants that were in force; exportable as CSV or as the API's JSON."""

import csv
import io
import re
from datetime import datetime
from typing import Annotated

from litestar import Controller, Response, get
from litestar.di import NamedDependency
from litestar.params import QueryParameter

from catalog.audit import service as audit
from catalog.audit.models import DisclosureReport
from catalog.console.auth import ROOT
from catalog.console.call import ConsoleCall
from catalog.console.routes import AUDIT, _grants, _moment
from catalog.kernel.errors import InvalidParameter
from catalog.products import service as products
from policies.grants.models import GrantRead

ProductRef = Annotated[str | None, QueryParameter(max_length=130)]
CSV_COLUMNS = (
    "organization",
    "dua",
    "purpose",
    "tier",
    "product_versions",
    "first_access",
    "last_access",
    "requests",
    "files",
    "bytes",
    "downloads",
    "downloaded_bytes",
)


def _in_force(grant: GrantRead, since: datetime | None, until: datetime | None) -> bool:
    """Whether the grant let its recipient read at some time in [since, until]."""
    ended = min(grant.expires_at, grant.revoked_at) if grant.revoked_at else grant.expires_at
    return (until is None or grant.created_at <= until) and (since is None or ended >= since)


def _csv(report: DisclosureReport) -> str:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(("product", *CSV_COLUMNS))
    for d in report.disclosures:
        row = d.model_dump(mode="json")
        row["product_versions"] = " ".join(d.product_versions)
        writer.writerow((report.product, *(row[c] for c in CSV_COLUMNS)))
    return out.getvalue()


class DisclosuresController(Controller):
    """`/console/audit/disclosures`: per product and period (`audit:read`)."""

    path = f"{ROOT}/audit/disclosures"

    @get("/", opt=AUDIT, sync_to_thread=True)
    def disclosures(
        self,
        call: NamedDependency[ConsoleCall],
        product: ProductRef = None,
        since_field: Annotated[str | None, QueryParameter(name="from", max_length=40)] = None,
        until_field: Annotated[str | None, QueryParameter(name="to", max_length=40)] = None,
    ) -> Response[str]:
        """The report of one product over the period, and the grants in force during it."""
        since, until = _moment(since_field, "from"), _moment(until_field, "to")
        refs = [
            products.product_key(p.domain.name, p.name)
            for p in products.search_products(
                call.session, products.ProductQuery(), limit=call.settings.max_page_size
            ).items
        ]
        report, grants = None, []
        if product:
            report = audit.list_disclosures(call.session, product, since=since, until=until)
            now = call.clock.now()
            grants = [g for g in _grants(call, now, product=product) if _in_force(g, since, until)]
        return call.render(
            "disclosures.html",
            refs=refs,
            report=report,
            grants=grants,
            filters={
                "product": product or "",
                "from": since.isoformat() if since else "",
                "to": until.isoformat() if until else "",
            },
        )

    @get("/export", opt=AUDIT, sync_to_thread=True)
    def export(
        self,
        call: NamedDependency[ConsoleCall],
        product: ProductRef = None,
        since_field: Annotated[str | None, QueryParameter(name="from", max_length=40)] = None,
        until_field: Annotated[str | None, QueryParameter(name="to", max_length=40)] = None,
        fmt: Annotated[str | None, QueryParameter(name="format", pattern="^(csv|json)?$")] = None,
    ) -> Response[str]:
        """The same report as a file: CSV (one line per recipient, DUA, purpose and tier) or
        the API's JSON."""
        if not product:
            raise InvalidParameter("choose a product")
        report = audit.list_disclosures(
            call.session,
            product,
            since=_moment(since_field, "from"),
            until=_moment(until_field, "to"),
        )
        name = re.sub(r"[^a-z0-9-]", "-", product.lower())
        if fmt == "json":
            return Response(
                report.model_dump_json(),
                media_type="application/json",
                headers={"Content-Disposition": f'attachment; filename="disclosures-{name}.json"'},
            )
        return Response(
            _csv(report),
            media_type="text/csv; charset=utf-8",
            headers={"Content-Disposition": f'attachment; filename="disclosures-{name}.csv"'},
        )
