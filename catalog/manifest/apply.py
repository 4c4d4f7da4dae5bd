"""Plan and apply a products file in one transaction, like a Terraform plan.

The plan is computed by applying every object through the same services the API uses, inside
the caller's transaction; the caller commits only when nothing was refused and it is not a dry
run. So the plan shown is exactly what gets applied, and a refusal applies nothing.
"""

from dataclasses import dataclass, field
from enum import StrEnum

from sqlmodel import Session, select

from catalog.audit.record import Actor
from catalog.kernel.clock import Clock
from catalog.kernel.errors import MeshError
from catalog.manifest.models import Manifest, ManifestDomain, ManifestProduct
from catalog.products import service
from catalog.products.models import DataProduct, Domain, DomainCreate, ProductSpec
from catalog.products.semver import SemVer


class Action(StrEnum):
    """What applying does to one object."""

    CREATE = "create"
    UPDATE = "update"
    UNCHANGED = "unchanged"
    REFUSED = "refused"


@dataclass(frozen=True)
class PlanItem:
    """One object of the file and what happens to it."""

    action: Action
    kind: str
    key: str
    detail: str = ""


@dataclass
class Plan:
    """Every object of a products file, in file order."""

    items: list[PlanItem] = field(default_factory=list)

    def count(self, action: Action) -> int:
        """How many objects get `action`."""
        return sum(1 for item in self.items if item.action == action)

    @property
    def has_changes(self) -> bool:
        """True when applying would write anything."""
        return any(i.action in (Action.CREATE, Action.UPDATE) for i in self.items)

    @property
    def is_refused(self) -> bool:
        """True when any object is refused, so nothing may be applied."""
        return self.count(Action.REFUSED) > 0

    def summary(self) -> str:
        """One-line totals."""
        return (
            f"{self.count(Action.CREATE)} to create, {self.count(Action.UPDATE)} to update, "
            f"{self.count(Action.UNCHANGED)} unchanged, {self.count(Action.REFUSED)} refused"
        )


def apply_manifest(session: Session, manifest: Manifest, *, actor: Actor, clock: Clock) -> Plan:
    """Apply `manifest` within `session` and return the plan of what was done."""
    plan = Plan()
    for entry in manifest.domains:
        domain = _apply_domain(session, entry, plan, actor=actor, clock=clock)
        for product_entry in entry.products:
            key = service.product_key(entry.name, product_entry.name)
            if domain is None:
                _refuse_all(plan, product_entry, key, "its domain was refused")
                continue
            product = _apply_product(session, domain, product_entry, plan, actor=actor, clock=clock)
            if product is None:
                _refuse_all(
                    plan, product_entry, key, "its product was refused", include_product=False
                )
                continue
            _apply_versions(session, product, product_entry, plan, actor=actor, clock=clock)
    return plan


def _refuse_all(
    plan: Plan, entry: ManifestProduct, key: str, reason: str, *, include_product: bool = True
) -> None:
    if include_product:
        plan.items.append(PlanItem(Action.REFUSED, "product", key, reason))
    for version in entry.versions:
        plan.items.append(PlanItem(Action.REFUSED, "version", f"{key}@{version.version}", reason))


def _apply_domain(
    session: Session, entry: ManifestDomain, plan: Plan, *, actor: Actor, clock: Clock
) -> Domain | None:
    spec = DomainCreate.model_validate(entry.model_dump(exclude={"products"}))
    existing = session.exec(select(Domain).where(Domain.name == spec.name)).first()
    try:
        if existing is None:
            domain = service.create_domain(session, spec, actor=actor, clock=clock)
            plan.items.append(PlanItem(Action.CREATE, "domain", spec.name))
            return domain
        changed = service.update_domain(session, existing, spec, actor=actor, clock=clock)
    except MeshError as exc:
        plan.items.append(PlanItem(Action.REFUSED, "domain", spec.name, exc.detail))
        return None
    action = Action.UPDATE if changed else Action.UNCHANGED
    plan.items.append(PlanItem(action, "domain", spec.name, ", ".join(changed)))
    return existing


def _apply_product(
    session: Session,
    domain: Domain,
    entry: ManifestProduct,
    plan: Plan,
    *,
    actor: Actor,
    clock: Clock,
) -> DataProduct | None:
    spec = ProductSpec.model_validate(entry.model_dump(exclude={"versions"}))
    key = service.product_key(domain.name, spec.name)
    try:
        existing = service.get_product(session, domain.name, spec.name)
    except MeshError:
        existing = None
    try:
        if existing is None:
            product = service.create_product(session, domain.name, spec, actor=actor, clock=clock)
            plan.items.append(PlanItem(Action.CREATE, "product", key))
            return product
        changed = service.update_product(session, existing, spec, actor=actor, clock=clock)
    except MeshError as exc:
        plan.items.append(PlanItem(Action.REFUSED, "product", key, exc.detail))
        return None
    action = Action.UPDATE if changed else Action.UNCHANGED
    plan.items.append(PlanItem(action, "product", key, ", ".join(changed)))
    return existing


def _apply_versions(
    session: Session,
    product: DataProduct,
    entry: ManifestProduct,
    plan: Plan,
    *,
    actor: Actor,
    clock: Clock,
) -> None:
    key = service.product_key(product.domain.name, product.name)
    # Oldest first, so each version is checked against the predecessor the file declares.
    for spec in sorted(entry.versions, key=lambda v: SemVer.parse(v.version)):
        item_key = f"{key}@{spec.version}"
        existing = next((v for v in product.versions if v.version == spec.version), None)
        try:
            if existing is None:
                service.register_version(session, product, spec, actor=actor, clock=clock)
                plan.items.append(PlanItem(Action.CREATE, "version", item_key))
                continue
            changed = service.update_draft_version(
                session, existing, spec, actor=actor, clock=clock
            )
        except MeshError as exc:
            plan.items.append(PlanItem(Action.REFUSED, "version", item_key, exc.detail))
            continue
        action = Action.UPDATE if changed else Action.UNCHANGED
        plan.items.append(PlanItem(action, "version", item_key, ", ".join(changed)))
