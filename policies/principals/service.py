"""Principals, their roles (Casbin grouping lines), API tokens and consumer organisations."""

from datetime import datetime
from typing import TypeVar

from sqlmodel import Session, col, select

from catalog.audit.record import Actor, record
from catalog.kernel.clock import Clock
from catalog.kernel.db import claim, saved_id
from catalog.kernel.errors import Conflict, Forbidden, InvalidParameter, NotFound
from catalog.products.models import Domain
from policies.auth import issue_api_token
from policies.enforcer import (
    ROLE_PREFIX,
    USER_PREFIX,
    Caller,
    add_rule,
    remove_rules,
    role_subject,
    user_subject,
)
from policies.models import CasbinRule, Role
from policies.principals.models import (
    ApiToken,
    ApiTokenIssued,
    Organization,
    OrganizationCreate,
    Principal,
    PrincipalCreate,
    PrincipalRead,
)

MEMBER = "member"


# Names a principal may never have: the roles (Casbin namespaces keep them apart anyway, but a
# principal called `auditor` would mislead every reader of the audit trail and `mesh policy`).
RESERVED_NAMES = frozenset({MEMBER, *(role.value for role in Role)})


def check_principal_name(name: str) -> None:
    """Refuse a name equal to a role or carrying a policy namespace (`user:`, `role:`, `env:`)."""
    if name in RESERVED_NAMES:
        raise InvalidParameter(f"principal name {name!r} is reserved: it names a role")
    if ":" in name or name.startswith((USER_PREFIX, ROLE_PREFIX)):
        raise InvalidParameter(f"principal name {name!r} may not carry a namespace prefix (':')")


Named = TypeVar("Named", Organization, Principal)


def _get_named(session: Session, model: type[Named], name: str, what: str) -> Named:
    """The `model` row called `name`, or NotFound naming it as `what`."""
    found = session.exec(select(model).where(model.name == name)).first()
    if found is None:
        raise NotFound(f"{what} {name!r} not found")
    return found


def get_organization(session: Session, name: str) -> Organization:
    """The organisation called `name`, or NotFound."""
    return _get_named(session, Organization, name, "organization")


def create_organization(
    session: Session, spec: OrganizationCreate, *, actor: Actor, clock: Clock
) -> Organization:
    """Register a consumer organisation (a future Delta Sharing recipient)."""
    actor.require("*", "organization", "create")
    if session.exec(select(Organization.id).where(Organization.name == spec.name)).first():
        raise Conflict(f"organization {spec.name!r} already exists")
    now = clock.now()
    org = Organization(**spec.model_dump(), created_at=now, created_by=actor.name)
    session.add(org)
    record(session, actor, "organization.create", subject=("organization", spec.name), at=now)
    session.flush()
    return org


def list_organizations(session: Session, *, actor: Actor) -> list[Organization]:
    """All consumer organisations."""
    actor.require("*", "organization", "read")
    return list(session.exec(select(Organization).order_by(col(Organization.name))).all())


def get_principal(session: Session, name: str) -> Principal:
    """The principal called `name`, or NotFound."""
    return _get_named(session, Principal, name, "principal")


def create_principal(
    session: Session, spec: PrincipalCreate, *, actor: Actor, clock: Clock
) -> Principal:
    """Create a person or service account with its roles."""
    actor.require("*", "principal", "create")
    check_principal_name(spec.name)
    if session.exec(select(Principal.id).where(Principal.name == spec.name)).first():
        raise Conflict(f"principal {spec.name!r} already exists")
    if Role.PUBLISHER in spec.roles and not spec.domains:
        raise InvalidParameter("the publisher role needs at least one domain")
    if spec.domains and Role.PUBLISHER not in spec.roles:
        raise InvalidParameter("domains only apply to the publisher role")
    if (Role.CONSUMER in spec.roles) != (spec.organization is not None):
        raise InvalidParameter("a consumer belongs to exactly one organization, others to none")
    for domain in spec.domains:
        if session.exec(select(Domain.id).where(Domain.name == domain)).first() is None:
            raise NotFound(f"domain {domain!r} not found")
    org = get_organization(session, spec.organization) if spec.organization else None
    now = clock.now()
    principal = Principal(
        name=spec.name,
        display_name=spec.display_name,
        kind=spec.kind,
        organization_id=org.id if org else None,
        created_at=now,
        created_by=actor.name,
    )
    session.add(principal)
    subject = user_subject(spec.name)
    add_rule(session, "g", [subject, role_subject(MEMBER), "*"], now=now)
    for role in spec.roles:
        for domain in spec.domains if role == Role.PUBLISHER else ["*"]:
            add_rule(session, "g", [subject, role_subject(role.value), domain], now=now)
    record(
        session,
        actor,
        "principal.create",
        subject=("principal", spec.name),
        at=now,
        details={
            "roles": [r.value for r in spec.roles],
            "domains": spec.domains,
            "organization": spec.organization,
        },
    )
    session.flush()
    return principal


def principal_read(session: Session, principal: Principal) -> PrincipalRead:
    """API shape with roles read from the policy table."""
    lines = session.exec(
        select(CasbinRule).where(
            CasbinRule.ptype == "g", CasbinRule.v0 == user_subject(principal.name)
        )
    ).all()
    held = [((r.v1 or "").removeprefix(ROLE_PREFIX), r.v2 or "") for r in lines]
    roles = sorted({role for role, _ in held} - {MEMBER})
    domains = sorted({domain for role, domain in held if role == Role.PUBLISHER.value})
    org = (
        session.get(Organization, principal.organization_id) if principal.organization_id else None
    )
    return PrincipalRead(
        name=principal.name,
        display_name=principal.display_name,
        kind=principal.kind,
        roles=roles,
        domains=domains,
        organization=org.name if org else None,
        disabled=principal.disabled_at is not None,
        created_at=principal.created_at,
    )


def list_principals(session: Session, *, actor: Actor) -> list[PrincipalRead]:
    """Every principal with its roles."""
    actor.require("*", "principal", "read")
    rows = session.exec(select(Principal).order_by(col(Principal.name))).all()
    return [principal_read(session, p) for p in rows]


def disable_principal(
    session: Session, name: str, *, reason: str, actor: Actor, clock: Clock
) -> Principal:
    """Disable a principal: its tokens stop working and its roles are removed."""
    actor.require("*", "principal", "disable")
    principal = get_principal(session, name)
    if principal.disabled_at is not None:
        raise Conflict(f"principal {name!r} is already disabled")
    now = clock.now()
    if not claim(session, principal, "disabled_at", disabled_at=now):
        raise Conflict(f"principal {name!r} is already disabled")
    remove_rules(session, "g", user_subject(name), now=now)
    record(session, actor, "principal.disable", subject=principal, at=now, reason=reason)
    session.flush()
    return principal


def create_token(
    session: Session, name: str, *, days: int, description: str, actor: Actor, clock: Clock
) -> ApiTokenIssued:
    """Issue an API token for a principal (admins, or the principal itself)."""
    if actor.name != name:
        actor.require("*", "token", "create")
    principal = get_principal(session, name)
    if principal.disabled_at is not None:
        raise Conflict(f"principal {name!r} is disabled")
    now = clock.now()
    token, secret = issue_api_token(
        session, principal, days=days, description=description, now=now, issued_by=actor.name
    )
    record(
        session,
        actor,
        "token.create",
        subject=token,
        at=now,
        details={"principal": name, "expires_at": token.expires_at.isoformat()},
    )
    return ApiTokenIssued(id=token.id, token=secret, expires_at=token.expires_at)


def revoke_token(session: Session, token_id: str, *, actor: Actor, clock: Clock) -> ApiToken:
    """Revoke a token at once (admins, or the token's own principal)."""
    token = session.get(ApiToken, token_id)
    owner = session.get(Principal, token.principal_id) if token else None
    # Another principal's token looks exactly like a missing one to a caller that may not
    # revoke it (a 403 for real ids was an oracle for which token ids exist).
    if (
        token is None
        or owner is None
        or (actor.name != owner.name and not actor.can("*", "token", "revoke"))
    ):
        raise NotFound(f"token {token_id!r} not found")
    if token.revoked_at is not None:
        raise Conflict(f"token {token_id!r} is already revoked")
    now: datetime = clock.now()
    if not claim(session, token, "revoked_at", revoked_at=now):
        raise Conflict(f"token {token_id!r} is already revoked")
    record(
        session,
        actor,
        "token.revoke",
        subject=("token", token_id),
        at=now,
        details={"principal": owner.name},
    )
    session.flush()
    return token


def own_organization_id(session: Session, actor: Actor) -> int:
    """The id of the consumer organisation `actor` acts for; refused for anyone else."""
    org_name = actor.organization if isinstance(actor, Caller) else None
    if not org_name:
        raise Forbidden("only members of a consumer organization act for one")
    return saved_id(get_organization(session, org_name).id)
