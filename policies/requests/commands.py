"""`mesh requests ...`."""

from typing import Annotated

import typer

from catalog.kernel.clock import SystemClock
from catalog.kernel.commands import (
    AsJson,
    Home,
    Reason,
    options_as,
    out,
    print_rows,
)
from catalog.products.models import Tier
from policies.acting import As, OptionalReason, acting
from policies.models import Purpose, RequestStatus
from policies.requests.models import AccessRequestCreate
from policies.requests.service import (
    approve_request,
    create_request,
    deny_request,
    list_requests,
    request_read,
)

requests_app = typer.Typer(help="Access requests.", no_args_is_help=True)


@requests_app.command("create")
def requests_create(
    product: Annotated[
        list[str], typer.Option("--product", help="DOMAIN/NAME; repeat for several.")
    ],
    tier: Annotated[Tier, typer.Option()],
    dua: Annotated[int, typer.Option(help="DUA id.")],
    purpose: Annotated[Purpose, typer.Option()],
    justification: Annotated[str, typer.Option()],
    days: Annotated[int, typer.Option(min=1, max=3650)] = 365,
    who: As = None,
    home: Home = None,
) -> None:
    """File an access request (as a consumer)."""
    spec = options_as(
        AccessRequestCreate,
        products=product,
        tier=tier,
        dua_id=dua,
        purpose=purpose,
        justification=justification,
        requested_days=days,
    )
    with acting(home, who) as (session, caller, policy, _):
        request = create_request(session, spec, actor=caller, policy=policy, clock=SystemClock())
    out.print(f"access request {request.id} filed: {tier} of {', '.join(product)} (pending)")


@requests_app.command("list")
def requests_list(
    status: RequestStatus | None = None,
    product: str | None = None,
    consumer: str | None = None,
    who: As = None,
    home: Home = None,
    as_json: AsJson = False,
) -> None:
    """Access requests visible to the principal."""
    with acting(home, who) as (session, caller, _, _):
        items, _ = list_requests(
            session,
            actor=caller,
            status=status,
            product=product,
            organization=consumer,
            limit=10_000,
            cursor=None,
        )
        rows = [request_read(session, r) for r in items]
    print_rows(
        rows,
        as_json,
        ("id", "organization", "requester", "tier", "products", "status", "decided by"),
        lambda r: (
            str(r.id),
            r.organization,
            r.requester,
            r.tier,
            ",".join(r.products),
            r.status,
            r.decided_by or "",
        ),
    )


@requests_app.command("approve")
def requests_approve(
    request_id: int, reason: OptionalReason = None, who: As = None, home: Home = None
) -> None:
    """Approve (a platform admin other than the requester); grants are created."""
    with acting(home, who) as (session, caller, policy, settings):
        grants = approve_request(
            session,
            request_id,
            reason=reason,
            actor=caller,
            policy=policy,
            settings=settings,
            clock=SystemClock(),
        )
        ids = [g.id for g in grants]
    out.print(f"access request {request_id} approved; grants {', '.join(map(str, ids))}")


@requests_app.command("deny")
def requests_deny(request_id: int, reason: Reason, who: As = None, home: Home = None) -> None:
    """Deny with a reason."""
    with acting(home, who) as (session, caller, _, _):
        deny_request(session, request_id, reason=reason, actor=caller, clock=SystemClock())
    out.print(f"access request {request_id} denied")
