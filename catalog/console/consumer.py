"""Consumer pages beside the wizard: renewing a grant before it ends."""

from litestar import Controller, post
from litestar.di import NamedDependency
from litestar.params import FromPath
from litestar.response import Redirect
from sqlmodel import Session

from catalog.console.auth import ROOT, viewer
from catalog.console.routes import FILING, Form, Req, _end_of, _field
from catalog.kernel.clock import Clock
from catalog.kernel.errors import InvalidParameter
from catalog.kernel.settings import Settings
from policies.enforcer import PolicyEngine
from policies.requests import renewal


class RenewalController(Controller):
    """`POST /console/my/grants/{id}/renew`: a renewal request through `renew_grant`."""

    path = f"{ROOT}/my/grants"

    @post("/{grant_id:int}/renew", opt=FILING, sync_to_thread=True, status_code=303)
    def renew(
        self,
        request: Req,
        grant_id: FromPath[int],
        data: Form,
        session: NamedDependency[Session],
        settings: NamedDependency[Settings],
        clock: NamedDependency[Clock],
        policy: NamedDependency[PolicyEngine],
    ) -> Redirect:
        """File the renewal; it is decided in the review queue like any request."""
        end = _field(data, "end")
        if not end:
            raise InvalidParameter("choose the end date of the renewed grant")
        filed = renewal.renew_grant(
            session,
            grant_id,
            until=_end_of(end),
            actor=viewer(request),
            policy=policy,
            settings=settings,
            clock=clock,
        )
        return Redirect(f"{ROOT}/my/requests?notice=renewal#request-{filed.id}", status_code=303)
