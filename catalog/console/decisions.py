"""Bulk decisions from the review queue: several requests, one decision, a result per item.

Each selected request is decided exactly as on its own page, by the same service function
(`approve_request` / `deny_request`), in its own transaction: one refused item (four eyes, the
minimum-necessary rules, a reason missing, already decided) is reported on its line and does
not undo or stop the others. A refusal is recorded in the audit trail as `access.denied`, once,
as the app's refusal hook records a refused single decision.
"""

from dataclasses import dataclass
from typing import Any

from litestar import Controller, Response, post
from litestar.di import NamedDependency
from sqlalchemy.engine import Engine

from catalog.audit.record import record_refusal
from catalog.console.auth import ROOT, viewer
from catalog.console.routes import REVIEW, Form, Req, _end_of, _field, _fields
from catalog.console.views import render
from catalog.kernel.clock import Clock
from catalog.kernel.db import transaction
from catalog.kernel.errors import Forbidden, InvalidParameter, MeshError
from catalog.kernel.settings import Settings
from policies.enforcer import PolicyEngine
from policies.requests.service import approve_request, deny_request

MAX_BULK = 100


@dataclass(frozen=True)
class ItemResult:
    """What happened to one selected request."""

    request_id: int
    ok: bool
    text: str


def _ids(form: dict[str, Any]) -> list[int]:
    picked = _fields(form, "request")
    if not picked:
        raise InvalidParameter("select at least one request")
    if len(picked) > MAX_BULK:
        raise InvalidParameter(f"select at most {MAX_BULK} requests at a time")
    if not all(p.isdigit() for p in picked):
        raise InvalidParameter("request numbers must be numbers")
    return list(dict.fromkeys(int(p) for p in picked))


class BulkDecisionController(Controller):
    """`POST /console/review/bulk`: approve or deny several requests, item by item."""

    path = f"{ROOT}/review/bulk"

    @post("/", opt=REVIEW, sync_to_thread=True, status_code=200)
    def decide(
        self,
        request: Req,
        data: Form,
        engine: NamedDependency[Engine],
        settings: NamedDependency[Settings],
        clock: NamedDependency[Clock],
        policy: NamedDependency[PolicyEngine],
    ) -> Response[str]:
        """Decide each selected request through the single-decision service; report each."""
        me = viewer(request)
        decision = _field(data, "decision")
        if decision not in ("approve", "deny"):
            raise InvalidParameter("choose approve or deny")
        reason = _field(data, "reason") or None
        end = _field(data, "end")
        expires_at = _end_of(end) if end and decision == "approve" else None
        results: list[ItemResult] = []
        for request_id in _ids(data):
            try:
                with transaction(engine) as session:
                    if decision == "approve":
                        grants = approve_request(
                            session,
                            request_id,
                            reason=reason,
                            actor=me,
                            policy=policy,
                            settings=settings,
                            clock=clock,
                            expires_at=expires_at,
                        )
                        ends = min(g.expires_at for g in grants).date().isoformat()
                        text = f"approved: {len(grants)} grant(s), ending {ends}"
                    else:
                        deny_request(session, request_id, reason=reason, actor=me, clock=clock)
                        text = "denied"
                results.append(ItemResult(request_id, True, text))
            except MeshError as exc:
                if isinstance(exc, Forbidden):
                    # Its transaction has rolled back; the refusal is recorded on its own.
                    exc.audit_details["bulk"] = True
                    record_refusal(
                        request.app.state.audit,
                        at=clock.now(),
                        actor=me,
                        refusal=exc,
                        subject=("request", str(request_id)),
                    )
                results.append(ItemResult(request_id, False, f"{exc.title}: {exc.detail}"))
        done = sum(1 for r in results if r.ok)
        return render(
            request,
            "review_bulk.html",
            results=results,
            decision=decision,
            summary=f"{done} of {len(results)} decided; {len(results) - done} refused",
        )
