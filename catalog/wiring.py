"""The one wiring of the governed services, shared by the API (`create_app`) and the CLI.

Before, the app built its own policy engine, authenticator and version listeners and every
command built its own (without the listeners), so `mesh versions deprecate` recorded no notice on
the affected grants while the API did. Both now take what `build` returns.
"""

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy.engine import Engine
from sqlmodel import Session

from catalog.audit.relay import RelaySink
from catalog.audit.writer import AuditSink, GroupCommit
from catalog.kernel.clock import Clock, SystemClock
from catalog.kernel.db import engine_for
from catalog.kernel.settings import Settings
from catalog.products.models import ProductVersion
from catalog.products.service import VersionListener
from policies.auth import ENV_ADMIN, Authenticator
from policies.enforcer import PolicyEngine
from policies.grants.service import notify_version_change
from policies.models import Role
from policies.notifications import service as notifications


@dataclass(frozen=True)
class Wiring:
    """What every entry point (API, CLI) acts through."""

    settings: Settings
    engine: Engine
    clock: Clock
    policy: PolicyEngine
    authenticator: Authenticator
    version_listeners: list[VersionListener]
    audit: AuditSink  # where reads and refusals are written: this process, or the relay


def build(
    settings: Settings,
    *,
    engine: Engine | None = None,
    clock: Clock | None = None,
    refresh_seconds: float | None = None,
) -> Wiring:
    """The services for `settings`; the API passes its refresh interval, commands reload always."""
    the_engine = engine if engine is not None else engine_for(settings)
    the_clock: Clock = clock if clock is not None else SystemClock()
    policy = PolicyEngine(
        the_engine,
        the_clock,
        refresh_seconds=settings.policy_refresh_seconds
        if refresh_seconds is None
        else refresh_seconds,
        # MESH_ADMIN_TOKEN's principal, `env:admin`, is a platform admin wherever it is set.
        extra_grouping=[(ENV_ADMIN, Role.PLATFORM_ADMIN.value, "*")]
        if settings.admin_token
        else [],
    )

    def tell_grant_holders(
        session: Session, version: ProductVersion, reason: str, served_until: datetime
    ) -> list[int]:
        now = the_clock.now()
        grant_ids = notify_version_change(
            session, version, reason=reason, served_until=served_until, settings=settings, now=now
        )
        # The people behind those grants, and the product's owners, in the same transaction.
        notifications.version_changed(
            session, version, grant_ids=grant_ids, served_until=served_until, now=now
        )
        return grant_ids

    return Wiring(
        settings=settings,
        engine=the_engine,
        clock=the_clock,
        policy=policy,
        authenticator=Authenticator(settings=settings, policy=policy, clock=the_clock),
        version_listeners=[tell_grant_holders],
        audit=RelaySink(settings.audit_relay)
        if settings.audit_relay is not None
        else GroupCommit(the_engine),
    )
