"""Deprecating and retiring as the API and `mesh` both do it: as one caller, with the
configured notice period, telling the version listeners (notices on the grants)."""

from dataclasses import dataclass
from datetime import datetime

from litestar.di import NamedDependency
from sqlmodel import Session

from catalog.audit.record import Actor
from catalog.kernel.clock import Clock
from catalog.kernel.settings import Settings
from catalog.products import service
from catalog.products.models import DataProduct, LifecycleOutcome, ProductStatus, VersionStatus


@dataclass(frozen=True, slots=True)
class Lifecycle:
    """The products API's `lifecycle` dependency (each field is one of the app's), and what the
    `deprecate` and `retire` commands build from their wiring. The session is the caller's:
    the request's or the command's unit of work."""

    actor: NamedDependency[Actor]
    clock: NamedDependency[Clock]
    settings: NamedDependency[Settings]
    version_listeners: NamedDependency[list[service.VersionListener]]

    def change_product(
        self, session: Session, domain: str, name: str, target: ProductStatus, reason: str
    ) -> DataProduct:
        """Deprecate or retire `domain/name` (retiring retires its versions, and tells)."""
        product = service.get_product(session, domain, name)
        service.change_product_status(
            session,
            product,
            target,
            reason=reason,
            actor=self.actor,
            clock=self.clock,
            listeners=self.version_listeners,
        )
        return product

    def change_version(
        self,
        session: Session,
        domain: str,
        name: str,
        version: str,
        target: VersionStatus,
        reason: str,
        served_until: datetime | None = None,
    ) -> LifecycleOutcome:
        """Deprecate a version (served until `served_until`, by default the notice period from
        now) or retire it, and say which grants were told."""
        found = service.get_version(session, domain, name, version)
        changed = service.change_version_status(
            session,
            found,
            target,
            reason=reason,
            actor=self.actor,
            clock=self.clock,
            served_until=served_until,
            notice_days=self.settings.deprecation_notice_days,
            listeners=self.version_listeners,
        )
        return LifecycleOutcome(
            version=service.version_read(found),
            served_until=changed.served_until,
            affected_grants=changed.notified,
        )
