"""Consumer pages beside the wizard: renewing a grant before it ends."""

from litestar import Controller, post
from litestar.di import NamedDependency
from litestar.params import FromPath
from litestar.response import Redirect

from catalog.console.auth import ROOT
from catalog.console.call import ConsoleCall
from catalog.console.routes import FILING, Form, _end_of, _field
from catalog.kernel.errors import InvalidParameter
from policies.requests import renewal


class RenewalController(Controller):
    """`POST /console/my/grants/{id}/renew`: a renewal request through `renew_grant`."""

    path = f"{ROOT}/my/grants"

    @post("/{grant_id:int}/renew", opt=FILING, sync_to_thread=True, status_code=303)
    def renew(
        self, grant_id: FromPath[int], data: Form, call: NamedDependency[ConsoleCall]
    ) -> Redirect:
        """File the renewal; it is decided in the review queue like any request."""
        end = _field(data, "end")
        if not end:
            raise InvalidParameter("choose the end date of the renewed grant")
        filed = renewal.renew_grant(
            call.session,
            grant_id,
            until=_end_of(end),
            actor=call.me,
            policy=call.policy,
            settings=call.settings,
            clock=call.clock,
        )
        return Redirect(f"{ROOT}/my/requests?notice=renewal#request-{filed.id}", status_code=303)
