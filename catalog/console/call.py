"""What a console page works with, as one `call` dependency instead of five per handler.

Like the API's `call` (policies.routing.ServiceCall) it carries the request's session, which the
unit of work commits (catalog/kernel/unit_of_work.py), so a handler that takes it runs in a
thread (`sync_to_thread=True`).
"""

from dataclasses import dataclass
from typing import Any

from litestar import Request, Response
from litestar.di import NamedDependency
from sqlmodel import Session

from catalog.console.auth import viewer
from catalog.console.views import render
from catalog.kernel import pagination
from catalog.kernel.clock import Clock
from catalog.kernel.settings import Settings
from policies.enforcer import Caller, PolicyEngine


@dataclass(frozen=True, slots=True)
class ConsoleCall:
    """The request, its session, the clock, the settings and the policy engine of one page."""

    request: Request[Any, Any, Any]
    session: Session
    clock: Clock
    settings: Settings
    policy: PolicyEngine

    @property
    def me(self) -> Caller:
        """The signed-in viewer; Unauthenticated (to the sign-in page) for anybody else."""
        return viewer(self.request)

    @property
    def page_size(self) -> int:
        """How many items a console page lists (the API's default page size)."""
        return pagination.page_size(
            None, default=self.settings.default_page_size, maximum=self.settings.max_page_size
        )

    def render(self, template: str, *, status: int = 200, **context: Any) -> Response[str]:
        """The page `template` for this request (`catalog.console.views.render`)."""
        return render(self.request, template, status=status, **context)


def provide_call(
    request: Request[Any, Any, Any],
    session: NamedDependency[Session],
    clock: NamedDependency[Clock],
    settings: NamedDependency[Settings],
    policy: NamedDependency[PolicyEngine],
) -> ConsoleCall:
    """The console's `call` dependency (the others are the app's)."""
    return ConsoleCall(request, session, clock, settings, policy)
