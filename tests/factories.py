"""Test builders: plain functions over the real services."""

from datetime import UTC, datetime, timedelta
from typing import Any

from sqlmodel import Session

from catalog.audit.record import Operator
from catalog.products import service
from catalog.products.models import (
    DataProduct,
    Domain,
    DomainCreate,
    ProductSpec,
    ProductVersion,
    VersionSpec,
)
from policies.principals.models import Organization
from sharing.recipients import service as recipients

ACTOR = Operator("tester")


class FixedClock:
    """A clock that only moves when told to."""

    def __init__(self, start: datetime | None = None) -> None:
        self.current = start or datetime(2026, 1, 15, 12, 0, tzinfo=UTC)

    def now(self) -> datetime:
        return self.current

    def advance(self, **kwargs: float) -> None:
        self.current += timedelta(**kwargs)


def domain_body(name: str = "st-marys", **overrides: Any) -> dict[str, Any]:
    body = {
        "name": name,
        "kind": "facility",
        "title": f"{name} hospital",
        "owner_team": "Clinical Informatics",
        "contact_email": f"team@{name}.example.org",
        "description": "",
    }
    return body | overrides


def product_body(name: str = "patients", **overrides: Any) -> dict[str, Any]:
    body = {
        "name": name,
        "title": f"{name.title()} product",
        "description": f"All the {name}",
        "tags": ["demographics"],
        "owner_team": "Registration",
        "owner_email": "registration@example.org",
        "source_resources": ["Patient"],
    }
    return body | overrides


def columns(*extra: dict[str, Any]) -> list[dict[str, Any]]:
    base = [
        {
            "name": "patient_id",
            "type": "string",
            "nullable": False,
            "classification": "direct_identifier",
        },
        {"name": "birth_date", "type": "date32", "classification": "date"},
        {"name": "heart_rate", "type": "int32", "classification": "clinical"},
    ]
    return base + list(extra)


def version_body(version: str = "1.0.0", **overrides: Any) -> dict[str, Any]:
    body = {
        "version": version,
        "columns": columns(),
        "tiers": ["deidentified", "limited", "full"],
        "sla": {
            "freshness": "4h",
            "freshness_column": "birth_date",
            "completeness": ["birth_date >= 98%"],
            "availability_percent": 99.5,
        },
        "changelog": "",
    }
    return body | overrides


def make_domain(session: Session, clock: Any, name: str = "st-marys", **overrides: Any) -> Domain:
    spec = DomainCreate.model_validate(domain_body(name, **overrides))
    return service.create_domain(session, spec, actor=ACTOR, clock=clock)


def make_product(
    session: Session, clock: Any, domain: str = "st-marys", name: str = "patients", **overrides: Any
) -> DataProduct:
    spec = ProductSpec.model_validate(product_body(name, **overrides))
    return service.create_product(session, domain, spec, actor=ACTOR, clock=clock)


def make_version(
    session: Session, clock: Any, product: DataProduct, version: str = "1.0.0", **overrides: Any
) -> ProductVersion:
    spec = VersionSpec.model_validate(version_body(version, **overrides))
    return service.register_version(session, product, spec, actor=ACTOR, clock=clock)


def organization(name: str, *, title: str | None = None, email: str | None = None) -> Organization:
    """An organisation not yet added to a session (title and contact default from `name`)."""
    return Organization(
        name=name,
        title=title or name,
        contact_email=email or f"{name}@example.org",
        created_at=datetime.now(UTC),
        created_by="test",
    )


def activation_link(session: Session, org: Organization) -> str:
    """A one-hour activation link for `org` (a 7-day token at download); the caller commits."""
    _, link = recipients.create_activation(
        session,
        org,
        token_days=7,
        valid_for=timedelta(hours=1),
        actor=Operator("cli:test"),
        now=datetime.now(UTC),
    )
    return link
