"""The estate every sharing test reads: the demo on SQLite, served by uvicorn on loopback.

The server runs with the shipped settings (no faster policy refresh): the sharing routes read
the governance revision for every request whatever the setting, so the estate exercises the
production path, warm requests on the event loop included.
"""

import itertools
from dataclasses import dataclass, replace
from datetime import UTC, datetime

import pytest

import policies.revision
import sharing.access
import sharing.answers
import sharing.delta
import sharing.routes
from catalog.audit.record import Operator
from catalog.demo.governance import DEMO_GRANT, seed_research_grant
from catalog.kernel.clock import SystemClock
from catalog.kernel.db import make_engine, transaction
from catalog.kernel.settings import Settings
from policies.models import Role
from policies.principals.models import OrganizationCreate, PrincipalCreate
from policies.principals.service import get_organization
from sharing.recipients import service as recipients
from tests.live import demo_estate, free_port, serving

# Every module of the sharing path that hands work to a handler thread.
THREAD_HOPPING = (sharing.access, sharing.answers, sharing.delta, sharing.routes, policies.revision)


@pytest.fixture(scope="package")
def estate(tmp_path_factory):
    """The demo estate on SQLite: published tiers, a research group with a de-identified grant."""
    home = tmp_path_factory.mktemp("sharing-home")
    port = free_port()
    demo = demo_estate(home, port)
    settings = Settings(home=home, port=port)
    with serving(settings, port):
        yield {
            "env": demo.env,
            "home": home,
            "profile": str(demo.profile_path),
            "port": port,
            "settings": settings,
        }


@dataclass(frozen=True)
class Recipient:
    """A recipient of the test's own: its share (the organisation's name) and bearer token."""

    share: str
    token: str


_OWN = itertools.count(1)


@pytest.fixture
def own_recipient(estate) -> Recipient:
    """A research group with the demo's grant (seeded as `mesh demo` seeds it) and a token, for a
    test that rotates, revokes or fences its recipient: the shared one stays as it is."""
    name = f"own-recipient-{next(_OWN)}"
    plan = replace(
        DEMO_GRANT,
        organization=OrganizationCreate(
            name=name, title=f"Test group {name}", contact_email=f"{name}@example.org"
        ),
        consumer=PrincipalCreate(
            name=f"{name}-consumer",
            display_name="Consumer",
            roles=[Role.CONSUMER],
            organization=name,
        ),
        reviewer=PrincipalCreate(
            name=f"{name}-reviewer", display_name="Reviewer", roles=[Role.PLATFORM_ADMIN]
        ),
        others=(),
    )
    settings = estate["settings"]
    engine = make_engine(settings.resolved_database_url)
    try:
        seed_research_grant(engine, settings, SystemClock(), plan, operator=Operator("cli:test"))
        with transaction(engine) as session:
            organization = get_organization(session, name)
            _, secret = recipients.issue_recipient_token(
                session, organization, days=30, now=datetime.now(UTC)
            )
    finally:
        engine.dispose()
    return Recipient(name, secret)


@pytest.fixture
def thread_hops(monkeypatch) -> list[str]:
    """Names of the functions the sharing path hands to a handler thread while the test runs."""
    hops: list[str] = []
    for module in THREAD_HOPPING:
        original = module.sync_to_thread  # type: ignore[attr-defined]

        async def counting(fn, *args, _original=original, **kwargs):
            hops.append(getattr(fn, "__name__", repr(fn)))
            return await _original(fn, *args, **kwargs)

        monkeypatch.setattr(module, "sync_to_thread", counting)
    return hops
