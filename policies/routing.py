"""What the governance controllers share: the catch-all permission, the row id parameter, the
reason a decision must give, and the one dependency a handler hands its service."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

from litestar import Controller
from litestar.di import NamedDependency, Provide
from litestar.params import PathParameter
from litestar.types import Dependencies
from sqlmodel import Session

from catalog.audit.record import Actor
from catalog.kernel.clock import Clock
from catalog.kernel.errors import InvalidParameter
from catalog.kernel.settings import Settings
from policies.enforcer import PolicyEngine
from policies.models import MAX_ROW_ID, Decision

ANY = {"permission": "authenticated"}  # fine-grained checks happen in the service


RowId = Annotated[int, PathParameter(ge=1, le=MAX_ROW_ID)]


def required_reason(decision: Decision) -> str:
    """The reason of a decision that must give one (deny, revoke, disable)."""
    if not (decision.reason and decision.reason.strip()):
        raise InvalidParameter("a reason is required")
    return decision.reason


@dataclass(frozen=True, slots=True)
class ServiceCall:
    """What a governance handler passes to its service: the request's session (its unit of
    work), the authenticated caller, the clock, the settings and the policy engine. It is the
    `call` dependency: each field is one of the app's dependencies."""

    session: NamedDependency[Session]
    actor: NamedDependency[Actor]
    clock: NamedDependency[Clock]
    settings: NamedDependency[Settings]
    policy: NamedDependency[PolicyEngine]


Call = NamedDependency[ServiceCall]  # a governance handler's `call` parameter


class GovernanceController(Controller):
    """A controller whose handlers take `call: Call` instead of five dependencies."""

    dependencies: Dependencies | None = {  # noqa: RUF012 (litestar reads it from the class)
        "call": Provide(ServiceCall, sync_to_thread=False)
    }
