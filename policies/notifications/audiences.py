"""Who hears of a notification, and which console page serves each audience.

Audiences: `admin` (every platform admin), `owner` (the publishers of the product's domain, the
owning facility), `requester`, `grantee` (the principals of the organisation holding a grant).
Principals are read from the policy table's grouping lines, as the policy engine reads them;
disabled principals are left out.
"""

from collections.abc import Iterable
from dataclasses import dataclass

from sqlmodel import Session, col, select

from policies.enforcer import USER_PREFIX, role_subject
from policies.models import CasbinRule, Role
from policies.notifications.models import NotificationKind
from policies.principals.models import Principal

ADMIN, OWNER, REQUESTER, GRANTEE = "admin", "owner", "requester", "grantee"
# When one principal is reached in two ways, the first of these names its link.
PRIORITY = (ADMIN, OWNER, REQUESTER, GRANTEE)


@dataclass(frozen=True)
class Recipient:
    """A principal to tell, why (its audience), and where its console link leads."""

    principal: str
    audience: str
    link: str


def enabled_principals(session: Session, names: Iterable[str]) -> list[str]:
    """The principals among `names` that exist and are not disabled, sorted."""
    wanted = set(names)
    if not wanted:
        return []
    rows = session.exec(
        select(Principal.name).where(
            col(Principal.name).in_(wanted), col(Principal.disabled_at).is_(None)
        )
    ).all()
    return sorted(rows)


def _holders(session: Session, role: Role, domains: set[str]) -> list[str]:
    """Principals holding `role` in one of `domains` (the policy table's grouping lines)."""
    subjects = session.exec(
        select(CasbinRule.v0).where(
            CasbinRule.ptype == "g",
            CasbinRule.v1 == role_subject(role.value),
            col(CasbinRule.v2).in_(domains),
        )
    ).all()
    names = [s.removeprefix(USER_PREFIX) for s in subjects if s and s.startswith(USER_PREFIX)]
    return enabled_principals(session, names)


def platform_admins(session: Session) -> list[str]:
    """Every enabled platform-admin principal."""
    return _holders(session, Role.PLATFORM_ADMIN, {"*"})


def publishers(session: Session, domains: set[str]) -> list[str]:
    """The principals publishing for any of `domains`: the owning facility's team."""
    return _holders(session, Role.PUBLISHER, {*domains, "*"})


def members(session: Session, organization_id: int | None) -> list[str]:
    """The enabled principals of a consumer organisation."""
    rows = session.exec(
        select(Principal.name).where(
            Principal.organization_id == organization_id, col(Principal.disabled_at).is_(None)
        )
    ).all()
    return sorted(rows)


REQUEST_KINDS = frozenset(
    {
        NotificationKind.REQUEST_FILED,
        NotificationKind.REQUEST_APPROVED,
        NotificationKind.REQUEST_DENIED,
        NotificationKind.REQUEST_WITHDRAWN,
    }
)
# Who hears of each kind, beyond principals: e-mail goes to the addresses of these audiences.
AUDIENCES: dict[NotificationKind, tuple[str, ...]] = {
    NotificationKind.REQUEST_FILED: (ADMIN, OWNER),
    NotificationKind.REQUEST_WITHDRAWN: (ADMIN, OWNER),
    NotificationKind.REQUEST_APPROVED: (REQUESTER,),
    NotificationKind.REQUEST_DENIED: (REQUESTER,),
    NotificationKind.GRANT_REVOKED: (GRANTEE, OWNER),
    NotificationKind.GRANT_EXPIRING_14D: (GRANTEE, OWNER),
    NotificationKind.GRANT_EXPIRING_1D: (GRANTEE, OWNER),
    NotificationKind.GRANT_REVIEW_DUE: (GRANTEE, OWNER, ADMIN),
    NotificationKind.VERSION_DEPRECATED: (GRANTEE, OWNER),
    NotificationKind.VERSION_RETIRED: (GRANTEE, OWNER),
}


def audience_link(
    kind: NotificationKind, audience: str, *, product: str | None, request_id: int | None
) -> str:
    """The console page that serves `audience`'s part in a notification of `kind`.

    Admins decide requests in the review queue and manage grants on the grants page; owners
    look at their product; a requester at its organisation's requests; a grantee at its grants.
    """
    if audience == ADMIN:
        if kind in REQUEST_KINDS and request_id:
            return f"/console/review/{request_id}"
        return f"/console/grants?product={product}" if product else "/console/grants"
    if audience == OWNER:
        return f"/console/catalog/{product}" if product else "/console/catalog"
    if audience == REQUESTER and request_id:
        return f"/console/my/requests#request-{request_id}"
    return "/console/my/grants"


def recipients_of(
    names: Iterable[str],
    audience: str,
    kind: NotificationKind,
    product: str | None,
    rid: int | None,
) -> list[Recipient]:
    """`names` as recipients of `audience`, each with the audience's link."""
    link = audience_link(kind, audience, product=product, request_id=rid)
    return [Recipient(name, audience, link) for name in names]
