"""The demo's governance: a research group with a de-identified DUA files a request and an
admin approves it, so `mesh demo` ends with a grant to read."""

import hashlib

from catalog import wiring
from catalog.kernel.clock import SystemClock
from catalog.kernel.commands import (
    cli_actor,
    migrated_engine,
    out,
)
from catalog.kernel.db import transaction
from catalog.kernel.errors import MeshError
from catalog.kernel.settings import Settings
from catalog.products.models import Tier
from policies.duas.models import DuaCreate
from policies.duas.service import create_dua
from policies.grants.service import grant_read
from policies.models import PrincipalKind, Purpose, Role
from policies.principals.models import OrganizationCreate, PrincipalCreate
from policies.principals.service import (
    create_organization,
    create_principal,
    get_organization,
    get_principal,
)
from policies.requests.models import AccessRequestCreate
from policies.requests.service import approve_request, create_request

DEMO_ORG = "sepsis-research"


DEMO_CONSUMER = "dr-okafor"


DEMO_REVIEWER = "reviewer"


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
        create_organization(
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
            create_principal(session, spec, actor=operator, clock=clock)
        now = clock.now()
        dua = create_dua(
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
        consumer = auth.caller_for(session, get_principal(session, DEMO_CONSUMER))
        request = create_request(
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
        reviewer = auth.caller_for(session, get_principal(session, DEMO_REVIEWER))
        grants = approve_request(
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
            read = grant_read(session, grant, settings=settings, now=clock.now())
            out.print(
                f"  grant {read.id}: {read.product} at {read.tier} tier for {read.organization}, "
                f"{read.state} until {read.expires_at.date()}, re-review by "
                f"{read.review_due_at.date()}"
            )
