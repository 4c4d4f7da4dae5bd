"""`mesh principals|tokens|admin|policy|organizations|duas|requests|grants`: governance CLI.

Workflow commands act as a named principal (`--as NAME` or MESH_PRINCIPAL) so the policy engine
judges them exactly as it judges the API; the operator's database access is not a role.
"""

import hashlib
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated

import typer
from pydantic import ValidationError
from rich.table import Table
from sqlmodel import Session

from catalog import wiring
from catalog.audit.record import Actor
from catalog.kernel.clock import SystemClock
from catalog.kernel.commands import (
    AsJson,
    Home,
    cli_actor,
    fail,
    load_settings,
    migrated_engine,
    out,
    print_json,
    refused,
    unit_of_work,
)
from catalog.kernel.db import transaction
from catalog.kernel.errors import MeshError
from catalog.kernel.settings import Settings
from catalog.products.models import Tier
from policies import access, principals
from policies.enforcer import Caller, PolicyEngine
from policies.models import (
    AccessRequestCreate,
    DuaCreate,
    GrantState,
    OrganizationCreate,
    PrincipalCreate,
    PrincipalKind,
    Purpose,
    RequestStatus,
    Role,
)

principals_app = typer.Typer(help="People and service accounts.", no_args_is_help=True)
tokens_app = typer.Typer(help="API tokens.", no_args_is_help=True)
admin_app = typer.Typer(help="Bootstrap the first platform admin.", no_args_is_help=True)
policy_app = typer.Typer(help="Inspect authorization decisions.", no_args_is_help=True)
organizations_app = typer.Typer(help="Consumer organisations.", no_args_is_help=True)
duas_app = typer.Typer(help="Data use agreements.", no_args_is_help=True)
requests_app = typer.Typer(help="Access requests.", no_args_is_help=True)
grants_app = typer.Typer(help="Grants.", no_args_is_help=True)

As = Annotated[
    str | None,
    typer.Option(
        "--as", envvar="MESH_PRINCIPAL", help="Act as this principal (env MESH_PRINCIPAL)."
    ),
]
Reason = Annotated[str, typer.Option("--reason", help="Why; recorded with the change.")]
OptionalReason = Annotated[str | None, typer.Option("--reason", help="Why; recorded.")]


@contextmanager
def acting(
    home: Path | None, who: str | None
) -> Iterator[tuple[Session, Caller, PolicyEngine, Settings]]:
    """A transaction acting as principal `who`, judged by the policy engine like an API call."""
    if not who:
        raise fail("say who acts: --as PRINCIPAL (or MESH_PRINCIPAL)", code=2)
    settings = load_settings(home)
    engine = migrated_engine(settings)
    wired = wiring.build(settings, engine=engine, refresh_seconds=0)
    caller: Caller | None = None
    try:
        with transaction(engine) as session:
            principal = principals.get_principal(session, who)
            caller = wired.authenticator.caller_for(session, principal)
            yield session, caller, wired.policy, settings
    except MeshError as exc:
        raise refused(engine, caller or Actor(who), exc) from None
    finally:
        engine.dispose()


# --- principals, tokens, admin ----------------------------------------------------------------


@principals_app.command("create")
def principals_create(
    name: str,
    role: Annotated[list[Role], typer.Option("--role", help="Repeat for several roles.")],
    display_name: Annotated[str | None, typer.Option(help="Default: the name.")] = None,
    domain: Annotated[list[str] | None, typer.Option("--domain", help="Publisher domains.")] = None,
    organization: Annotated[str | None, typer.Option(help="Consumer organisation.")] = None,
    service: Annotated[bool, typer.Option("--service", help="A service account.")] = False,
    home: Home = None,
) -> None:
    """Create a principal with its roles."""
    try:
        spec = PrincipalCreate(
            name=name,
            display_name=display_name or name,
            roles=role,
            domains=domain or [],
            organization=organization,
            kind=PrincipalKind.SERVICE if service else PrincipalKind.PERSON,
        )
    except ValidationError as exc:
        raise fail(_invalid(exc), code=2) from None
    with unit_of_work(home) as session:
        created = principals.create_principal(session, spec, actor=cli_actor(), clock=SystemClock())
        read = principals.principal_read(session, created)
    out.print(
        f"principal {read.name}: roles {', '.join(read.roles)}"
        + (f" in {', '.join(read.domains)}" if read.domains else "")
        + (f", organization {read.organization}" if read.organization else "")
    )


@principals_app.command("list")
def principals_list(home: Home = None, as_json: AsJson = False) -> None:
    """Principals and their roles."""
    with unit_of_work(home) as session:
        rows = principals.list_principals(session, actor=cli_actor())
    if as_json:
        print_json([r.model_dump(mode="json") for r in rows])
        return
    table = Table("name", "kind", "roles", "domains", "organization", "disabled")
    for r in rows:
        table.add_row(
            r.name,
            r.kind,
            ",".join(r.roles),
            ",".join(r.domains),
            r.organization or "",
            "yes" if r.disabled else "",
        )
    out.print(table)


@principals_app.command("disable")
def principals_disable(name: str, reason: Reason, home: Home = None) -> None:
    """Disable a principal: its tokens stop working and its roles are removed."""
    with unit_of_work(home) as session:
        principals.disable_principal(
            session, name, reason=reason, actor=cli_actor(), clock=SystemClock()
        )
    out.print(f"principal {name} disabled")


@tokens_app.command("create")
def tokens_create(
    name: str,
    days: Annotated[int, typer.Option(min=1, max=366)] = 90,
    description: str = "",
    home: Home = None,
) -> None:
    """Issue an API token for a principal; the token is printed once."""
    with unit_of_work(home) as session:
        issued = principals.create_token(
            session,
            name,
            days=days,
            description=description,
            actor=cli_actor(),
            clock=SystemClock(),
        )
    out.print(f"token {issued.id} for {name}, expires {issued.expires_at.isoformat()}")
    out.print(issued.token)


@tokens_app.command("revoke")
def tokens_revoke(token_id: str, home: Home = None) -> None:
    """Revoke a token at once."""
    with unit_of_work(home) as session:
        principals.revoke_token(session, token_id, actor=cli_actor(), clock=SystemClock())
    out.print(f"token {token_id} revoked")


@admin_app.command("bootstrap")
def admin_bootstrap(
    name: Annotated[str, typer.Argument()] = "admin",
    home: Home = None,
) -> None:
    """Create the first platform admin (if missing) and print a new token for it, once."""
    with unit_of_work(home) as session:
        clock, actor = SystemClock(), cli_actor()
        try:
            principals.get_principal(session, name)
        except MeshError:
            principals.create_principal(
                session,
                PrincipalCreate(name=name, display_name=name, roles=[Role.PLATFORM_ADMIN]),
                actor=actor,
                clock=clock,
            )
        issued = principals.create_token(
            session, name, days=90, description="bootstrap", actor=actor, clock=clock
        )
    out.print(f"platform admin {name}; token (shown once, expires {issued.expires_at.date()}):")
    out.print(issued.token)


@policy_app.command("check")
def policy_check(
    principal: Annotated[str, typer.Argument(metavar="PRINCIPAL", help="A principal's name.")],
    obj: Annotated[str, typer.Argument(metavar="OBJECT")],
    action: str,
    domain: Annotated[str, typer.Option(help="Domain of the object (`*`: any).")] = "*",
    home: Home = None,
) -> None:
    """Explain a decision for a principal: which policy line allowed it, or that none did."""
    settings = load_settings(home)
    engine = migrated_engine(settings)
    try:
        policy = wiring.build(settings, engine=engine).policy
        allowed, rule = policy.explain(principal, domain, obj, action)
        roles = ", ".join(f"{r}@{d}" for r, d in policy.roles_of(principal)) or "none"
    finally:
        engine.dispose()
    out.print(f"{'ALLOW' if allowed else 'DENY'} {principal} {obj}:{action} in {domain}")
    out.print(f"  roles of principal {principal}: {roles}")
    out.print(
        f"  matched: p, {', '.join(rule)}"
        if allowed
        else "  no policy line matched (deny by default)"
    )
    if not allowed:
        raise typer.Exit(1)


# --- organisations and DUAs -------------------------------------------------------------------


@organizations_app.command("create")
def organizations_create(name: str, title: str, contact_email: str, home: Home = None) -> None:
    """Register a consumer organisation (a sharing recipient)."""
    with unit_of_work(home) as session:
        principals.create_organization(
            session,
            OrganizationCreate(name=name, title=title, contact_email=contact_email),
            actor=cli_actor(),
            clock=SystemClock(),
        )
    out.print(f"organization {name} registered")


@duas_app.command("create")
def duas_create(
    organization: str,
    title: Annotated[str, typer.Option()],
    purpose: Annotated[Purpose, typer.Option()],
    tier: Annotated[list[Tier], typer.Option("--tier", help="Repeat for each permitted tier.")],
    cover: Annotated[list[str], typer.Option("--cover", help="domain/name, domain/* or */*.")],
    approval_reference: Annotated[str, typer.Option(help="IRB or approval id.")],
    document: Annotated[Path, typer.Option(help="The signed DUA document (its SHA-256 is kept).")],
    expires: Annotated[datetime, typer.Option(help="Expiry date.")],
    effective: Annotated[datetime | None, typer.Option(help="Default: now.")] = None,
    home: Home = None,
) -> None:
    """Record a signed DUA."""
    try:
        digest = hashlib.sha256(document.read_bytes()).hexdigest()
    except OSError as exc:
        raise fail(f"{document}: {exc.strerror}") from None
    try:
        spec = DuaCreate(
            organization=organization,
            title=title,
            purpose=purpose,
            tiers=tier,
            coverage=cover,
            approval_reference=approval_reference,
            document_sha256=digest,
            effective_from=_aware(effective or datetime.now(UTC)),
            expires_at=_aware(expires),
        )
    except ValidationError as exc:
        raise fail(_invalid(exc), code=2) from None
    with unit_of_work(home) as session:
        dua = access.create_dua(session, spec, actor=cli_actor(), clock=SystemClock())
    out.print(
        f"DUA {dua.id} for {organization}: {purpose}, tiers {', '.join(t.value for t in tier)}"
    )


def _invalid(exc: ValidationError) -> str:
    """A pydantic error in words, one part per field."""
    return "; ".join(
        str(e["msg"]).removeprefix("Value error, ")
        if e["type"] == "value_error"
        else f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}"
        for e in exc.errors()
    )


def _aware(value: datetime) -> datetime:
    """Command-line dates without a zone are UTC."""
    return value if value.tzinfo else value.replace(tzinfo=UTC)


@duas_app.command("list")
def duas_list(organization: str | None = None, home: Home = None, as_json: AsJson = False) -> None:
    """DUAs and whether they are in force."""
    with unit_of_work(home) as session:
        now = SystemClock().now()
        items, _ = access.list_duas(
            session, actor=cli_actor(), organization=organization, limit=10_000, cursor=None
        )
        rows = [access.dua_read(session, d, now) for d in items]
    if as_json:
        print_json([r.model_dump(mode="json") for r in rows])
        return
    table = Table("id", "organization", "purpose", "tiers", "coverage", "expires", "active")
    for r in rows:
        table.add_row(
            str(r.id),
            r.organization,
            r.purpose,
            ",".join(r.tiers),
            ",".join(r.coverage),
            r.expires_at.date().isoformat(),
            "yes" if r.active else "no",
        )
    out.print(table)


@duas_app.command("revoke")
def duas_revoke(dua_id: int, reason: Reason, home: Home = None) -> None:
    """Revoke a DUA; all its grants end at once."""
    with unit_of_work(home) as session:
        access.revoke_dua(session, dua_id, reason=reason, actor=cli_actor(), clock=SystemClock())
    out.print(f"DUA {dua_id} revoked")


# --- requests and grants ----------------------------------------------------------------------


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
    spec = AccessRequestCreate(
        products=product,
        tier=tier,
        dua_id=dua,
        purpose=purpose,
        justification=justification,
        requested_days=days,
    )
    with acting(home, who) as (session, caller, policy, _):
        request = access.create_request(
            session, spec, actor=caller, policy=policy, clock=SystemClock()
        )
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
        items, _ = access.list_requests(
            session,
            actor=caller,
            status=status,
            product=product,
            organization=consumer,
            limit=10_000,
            cursor=None,
        )
        rows = [access.request_read(session, r) for r in items]
    if as_json:
        print_json([r.model_dump(mode="json") for r in rows])
        return
    table = Table("id", "organization", "requester", "tier", "products", "status", "decided by")
    for r in rows:
        table.add_row(
            str(r.id),
            r.organization,
            r.requester,
            r.tier,
            ",".join(r.products),
            r.status,
            r.decided_by or "",
        )
    out.print(table)


@requests_app.command("approve")
def requests_approve(
    request_id: int, reason: OptionalReason = None, who: As = None, home: Home = None
) -> None:
    """Approve (a platform admin other than the requester); grants are created."""
    with acting(home, who) as (session, caller, policy, settings):
        grants = access.approve_request(
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
        access.deny_request(session, request_id, reason=reason, actor=caller, clock=SystemClock())
    out.print(f"access request {request_id} denied")


@grants_app.command("list")
def grants_list(
    consumer: str | None = None,
    product: str | None = None,
    state: GrantState | None = None,
    home: Home = None,
    as_json: AsJson = False,
) -> None:
    """Grants with their state (e.g. `--state review-due` for overdue re-reviews)."""
    settings = load_settings(home)
    with unit_of_work(home) as session:
        clock = SystemClock()
        items, _ = access.list_grants(
            session,
            actor=cli_actor(),
            settings=settings,
            clock=clock,
            organization=consumer,
            product=product,
            state=state,
            limit=10_000,
            cursor=None,
        )
        rows = [access.grant_read(session, g, settings=settings, now=clock.now()) for g in items]
    if as_json:
        print_json([r.model_dump(mode="json") for r in rows])
        return
    table = Table(
        "id", "organization", "product", "tier", "state", "expires", "review due", "notices"
    )
    for r in rows:
        table.add_row(
            str(r.id),
            r.organization,
            r.product,
            r.tier,
            r.state,
            r.expires_at.date().isoformat(),
            r.review_due_at.date().isoformat(),
            str(len(r.notices)),
        )
    out.print(table)


@grants_app.command("revoke")
def grants_revoke(grant_id: int, reason: Reason, home: Home = None) -> None:
    """Revoke a grant at once."""
    with unit_of_work(home) as session:
        access.revoke_grant(
            session, grant_id, reason=reason, actor=cli_actor(), clock=SystemClock()
        )
    out.print(f"grant {grant_id} revoked")


# --- demo ---------------------------------------------------------------------------------------

DEMO_ORG = "sepsis-research"
DEMO_CONSUMER = "dr-okafor"
DEMO_REVIEWER = "reviewer"


def governance_demo(settings: Settings) -> None:
    """A research group with a de-identified DUA files a request; an admin approves it."""
    engine = migrated_engine(settings)
    clock, operator = SystemClock(), cli_actor()
    with transaction(engine) as session:
        try:
            principals.get_organization(session, DEMO_ORG)
            out.print(f"Governance demo already set up for {DEMO_ORG}.")
            return
        except MeshError:
            pass
        principals.create_organization(
            session,
            OrganizationCreate(
                name=DEMO_ORG,
                title="Sepsis Outcomes Research Group",
                contact_email="sepsis-study@university.example.org",
            ),
            actor=operator,
            clock=clock,
        )
        for spec in (
            PrincipalCreate(
                name=DEMO_REVIEWER, display_name="Platform reviewer", roles=[Role.PLATFORM_ADMIN]
            ),
            PrincipalCreate(
                name=DEMO_CONSUMER,
                display_name="Dr Adaeze Okafor",
                roles=[Role.CONSUMER],
                organization=DEMO_ORG,
            ),
            PrincipalCreate(
                name="stmarys-publisher",
                display_name="St Mary's pipeline",
                kind=PrincipalKind.SERVICE,
                roles=[Role.PUBLISHER],
                domains=["st-marys"],
            ),
        ):
            principals.create_principal(session, spec, actor=operator, clock=clock)
        now = clock.now()
        dua = access.create_dua(
            session,
            DuaCreate(
                organization=DEMO_ORG,
                title="Sepsis outcomes across the network",
                purpose=Purpose.RESEARCH,
                tiers=[Tier.DEIDENTIFIED],
                coverage=["st-marys/*", "labs/*"],
                approval_reference="IRB-2026-041",
                document_sha256=hashlib.sha256(b"FHIR Mesh demo DUA, IRB-2026-041").hexdigest(),
                effective_from=now,
                expires_at=now.replace(year=now.year + 1),
            ),
            actor=operator,
            clock=clock,
        )
    wired = wiring.build(settings, engine=engine, clock=clock, refresh_seconds=0)
    policy, auth = wired.policy, wired.authenticator
    with transaction(engine) as session:
        consumer = auth.caller_for(session, principals.get_principal(session, DEMO_CONSUMER))
        request = access.create_request(
            session,
            AccessRequestCreate(
                products=["st-marys/patients", "labs/lab-results"],
                tier=Tier.DEIDENTIFIED,
                dua_id=dua.id or 0,
                purpose=Purpose.RESEARCH,
                justification="Retrospective cohort: lactate trends and outcomes in adult sepsis",
                requested_days=180,
            ),
            actor=consumer,
            policy=policy,
            clock=clock,
        )
        reviewer = auth.caller_for(session, principals.get_principal(session, DEMO_REVIEWER))
        grants = access.approve_request(
            session,
            request.id or 0,
            reason="IRB-2026-041 approved",
            actor=reviewer,
            policy=policy,
            settings=settings,
            clock=clock,
        )
        out.print(
            f"{DEMO_CONSUMER} ({DEMO_ORG}) filed access request {request.id} under DUA {dua.id}; "
            f"{DEMO_REVIEWER} approved it:"
        )
        for grant in grants:
            read = access.grant_read(session, grant, settings=settings, now=clock.now())
            out.print(
                f"  grant {read.id}: {read.product} at {read.tier} tier for {read.organization}, "
                f"{read.state} until {read.expires_at.date()}, re-review by "
                f"{read.review_due_at.date()}"
            )
