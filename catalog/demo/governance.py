"""The demo's governance: a research group with a de-identified DUA files a request and an
admin approves it, so `mesh demo` ends with a grant to read."""

import hashlib
from dataclasses import dataclass
from datetime import timedelta

from sqlalchemy.engine import Engine

from catalog import wiring
from catalog.audit.record import Actor
from catalog.kernel.clock import Clock, SystemClock
from catalog.kernel.commands import (
    cli_actor,
    migrated_engine,
    out,
)
from catalog.kernel.db import transaction
from catalog.kernel.errors import MeshError
from catalog.kernel.settings import Settings
from catalog.products.models import Tier
from policies.duas.models import Dua, DuaCreate
from policies.duas.service import create_dua
from policies.grants.models import Grant
from policies.grants.service import grant_read
from policies.models import PrincipalKind, Purpose, Role
from policies.principals.models import OrganizationCreate, PrincipalCreate
from policies.principals.service import (
    create_organization,
    create_principal,
    get_organization,
    get_principal,
)
from policies.requests.models import AccessRequest, AccessRequestCreate
from policies.requests.service import approve_request, create_request

DEMO_ORG = "sepsis-research"


DEMO_CONSUMER = "dr-okafor"


DEMO_REVIEWER = "reviewer"


@dataclass(frozen=True)
class ResearchGrant:
    """A research group, its de-identified research DUA, a consumer who files a request for
    `products` and a platform admin who approves it: what `seed_research_grant` sets up."""

    organization: OrganizationCreate
    consumer: PrincipalCreate
    reviewer: PrincipalCreate
    dua_title: str
    coverage: list[str]
    approval_reference: str
    products: list[str]
    justification: str
    requested_days: int
    reason: str
    others: tuple[PrincipalCreate, ...] = ()  # further principals to create alongside


@dataclass(frozen=True)
class SeededGrant:
    """What `seed_research_grant` made."""

    dua: Dua
    request: AccessRequest
    grants: list[Grant]


def seed_research_grant(
    engine: Engine, settings: Settings, clock: Clock, plan: ResearchGrant, *, operator: Actor
) -> SeededGrant:
    """Set up `plan` through the governance services, as people would: the organisation, its
    principals and DUA (by `operator`), the request (by the consumer) and its approval (by the
    reviewer), each in its own transaction. Shared by `mesh demo` and the benchmarks."""
    with transaction(engine) as session:
        create_organization(session, plan.organization, actor=operator, clock=clock)
        for spec in (plan.reviewer, plan.consumer, *plan.others):
            create_principal(session, spec, actor=operator, clock=clock)
        now = clock.now()
        dua = create_dua(
            session,
            DuaCreate(
                organization=plan.organization.name,
                title=plan.dua_title,
                purpose=Purpose.RESEARCH,
                tiers=[Tier.DEIDENTIFIED],
                coverage=plan.coverage,
                approval_reference=plan.approval_reference,
                document_sha256=hashlib.sha256(plan.approval_reference.encode()).hexdigest(),
                effective_from=now - timedelta(minutes=1),
                expires_at=now + timedelta(days=365),
            ),
            actor=operator,
            clock=clock,
        )
    wired = wiring.build(settings, engine=engine, clock=clock, refresh_seconds=0)
    policy, auth = wired.policy, wired.authenticator
    with transaction(engine) as session:
        consumer = auth.caller_for(session, get_principal(session, plan.consumer.name))
        request = create_request(
            session,
            AccessRequestCreate(
                products=plan.products,
                tier=Tier.DEIDENTIFIED,
                dua_id=dua.id or 0,
                purpose=Purpose.RESEARCH,
                justification=plan.justification,
                requested_days=plan.requested_days,
            ),
            actor=consumer,
            policy=policy,
            clock=clock,
        )
        reviewer = auth.caller_for(session, get_principal(session, plan.reviewer.name))
        grants = approve_request(
            session,
            request.id or 0,
            reason=plan.reason,
            actor=reviewer,
            policy=policy,
            settings=settings,
            clock=clock,
        )
    return SeededGrant(dua, request, grants)


DEMO_GRANT = ResearchGrant(
    organization=OrganizationCreate(
        name=DEMO_ORG,
        title="Sepsis Outcomes Research Group",
        contact_email="sepsis-study@university.example.org",
    ),
    consumer=PrincipalCreate(
        name=DEMO_CONSUMER,
        display_name="Dr Adaeze Okafor",
        roles=[Role.CONSUMER],
        organization=DEMO_ORG,
    ),
    reviewer=PrincipalCreate(
        name=DEMO_REVIEWER, display_name="Platform reviewer", roles=[Role.PLATFORM_ADMIN]
    ),
    others=(
        PrincipalCreate(
            name="stmarys-publisher",
            display_name="St Mary's pipeline",
            kind=PrincipalKind.SERVICE,
            roles=[Role.PUBLISHER],
            domains=["st-marys"],
        ),
    ),
    dua_title="Sepsis outcomes across the network",
    coverage=["st-marys/*", "labs/*"],
    approval_reference="IRB-2026-041",
    products=["st-marys/patients", "labs/lab-results"],
    justification="Retrospective cohort: lactate trends and outcomes in adult sepsis",
    requested_days=180,
    reason="IRB-2026-041 approved",
)


def governance_demo(settings: Settings) -> None:
    """A research group with a de-identified DUA files a request; an admin approves it."""
    engine = migrated_engine(settings)
    clock, operator = SystemClock(), cli_actor()
    with transaction(engine) as session:
        try:
            get_organization(session, DEMO_ORG)
            out.print(f"Governance demo already set up for {DEMO_ORG}.")
            return
        except MeshError:
            pass
    seeded = seed_research_grant(engine, settings, clock, DEMO_GRANT, operator=operator)
    dua, request, grants = seeded.dua, seeded.request, seeded.grants
    with transaction(engine) as session:
        out.print(
            f"{DEMO_CONSUMER} ({DEMO_ORG}) filed access request {request.id} under DUA {dua.id}; "
            f"{DEMO_REVIEWER} approved it:"
        )
        for grant in grants:
            read = grant_read(session, grant, settings=settings, now=clock.now())
            out.print(
                f"  grant {read.id}: {read.product} at {read.tier} tier for {read.organization}, "
                f"{read.state} until {read.expires_at.date()}, re-review by "
                f"{read.review_due_at.date()}"
            )
