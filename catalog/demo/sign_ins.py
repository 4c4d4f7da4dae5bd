"""Sign-in tokens for the console's demo roles, printed by `mesh demo`."""

from catalog.demo.governance import DEMO_CONSUMER, DEMO_REVIEWER
from catalog.kernel.clock import SystemClock
from catalog.kernel.commands import cli_actor, migrated_engine
from catalog.kernel.db import transaction
from catalog.kernel.errors import NotFound
from catalog.kernel.settings import Settings
from policies.models import PrincipalKind, Role
from policies.principals.models import PrincipalCreate
from policies.principals.service import create_principal, create_token, get_principal

DEMO_AUDITOR = "compliance-auditor"
DEMO_PUBLISHER = "stmarys-publisher"
ROLES = (
    ("platform admin", DEMO_REVIEWER),
    ("consumer", DEMO_CONSUMER),
    ("publisher", DEMO_PUBLISHER),
    ("auditor", DEMO_AUDITOR),
)


def demo_sign_ins(settings: Settings, *, days: int = 7) -> list[tuple[str, str, str]]:
    """(role, principal, new API token) for each demo role; the auditor is created if missing.

    Each run issues fresh tokens (the old ones keep working until they expire): tokens are
    stored hashed, so they cannot be shown again.
    """
    engine = migrated_engine(settings)
    clock, operator = SystemClock(), cli_actor()
    out = []
    with transaction(engine) as session:
        try:
            get_principal(session, DEMO_AUDITOR)
        except NotFound:
            create_principal(
                session,
                PrincipalCreate(
                    name=DEMO_AUDITOR,
                    display_name="Network compliance auditor",
                    kind=PrincipalKind.PERSON,
                    roles=[Role.AUDITOR],
                ),
                actor=operator,
                clock=clock,
            )
        for role, name in ROLES:
            issued = create_token(
                session,
                name,
                days=days,
                description="console demo sign-in",
                actor=operator,
                clock=clock,
            )
            out.append((role, name, issued.token))
    return out
