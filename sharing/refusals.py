"""Every refusal of a sharing, file or activation request is audited (`outcome=denied`).

A cross-share 404, a tier guessed by name, an allow-list 403, a tampered or out-of-scope file
URL: each leaves one `sharing.denied` entry with the route (signatures and link secrets
redacted), the recipient and token id when the request got far enough to establish them, and
the reason (the internal one for file URLs, whose answer is the same whatever was wrong).
Authentication failures are not repeated here: they already leave `auth.failed`.

The entry is written after the answer, by a background task through the same group-commit
writer (or relay) as the reads: a flood of probes costs one batched commit per turn of the
loop, holds no handler thread, and can neither refuse nor slow a read; an entry that cannot be
written is logged, since the refusal it records stands anyway.
"""

import logging
import re
from typing import Any

from litestar import Request
from litestar.background_tasks import BackgroundTask

from catalog.audit.models import AuditEntry, Outcome
from catalog.audit.record import Actor, new_entry
from catalog.audit.writer import AuditSink
from catalog.kernel.errors import Unauthenticated

log = logging.getLogger("mesh.audit")

ACTION = "sharing.denied"
RECIPIENT = "mesh_recipient"  # request.state: the recipient authenticated for this request
TOKEN = "mesh_token_id"  # noqa: S105  (request.state key: its token id)
TABLE = "mesh_table"  # request.state: (product, tier) a refused file URL named
_SECRET_SEGMENT = re.compile(r"\b([a-z]+_[0-9a-f]{16})_[A-Za-z0-9_-]+")
_REDACTED_QUERY = frozenset({"x-amz-signature", "signature", "sig", "token"})
MAX_ROUTE = 300


def route_of(request: Request[Any, Any, Any]) -> str:
    """Method, path and query of a request, with link secrets and signatures redacted."""
    path = _SECRET_SEGMENT.sub(r"\1_[redacted]", request.url.path)
    query = "&".join(
        f"{key}={'[redacted]' if key.lower() in _REDACTED_QUERY else value}"
        for key, value in request.query_params.multi_items()
    )
    route = f"{request.method} {path}" + (f"?{query}" if query else "")
    return _SECRET_SEGMENT.sub(r"\1_[redacted]", route)[:MAX_ROUTE]


def denied_entry(
    request: Request[Any, Any, Any], status: int, code: str, reason: str
) -> AuditEntry:
    """The audit entry of one refused request."""
    state = request.state
    organization: str | None = state.get(RECIPIENT)
    token_id: str | None = state.get(TOKEN)
    product, tier = state.get(TABLE) or (None, None)
    route = route_of(request)
    return new_entry(
        at=request.app.state.clock.now(),
        actor=Actor(f"recipient:{organization}" if organization else "anonymous"),
        action=ACTION,
        subject=("route", route),
        outcome=Outcome.DENIED,
        organization=organization,
        product=product,
        tier=tier,
        token_id=token_id,
        reason=reason[:500],
        details={"status": status, "error_code": code, "route": route},
    )


def audited(request: Request[Any, Any, Any], exc: Exception, status: int, code: str) -> Any:
    """A background task writing the refusal's entry, or None for what is not audited here
    (authentication failures, which `auth.failed` records; server errors)."""
    if isinstance(exc, Unauthenticated) or status == 401 or status >= 500:
        return None
    reason = getattr(exc, "reason", None) or getattr(exc, "detail", None) or str(exc)
    try:
        entry = denied_entry(request, status, code, str(reason))
    except Exception:  # the refusal is answered whatever happens to its entry
        log.exception("audit entry of a refusal could not be built")
        return None
    return BackgroundTask(_write, request.app.state.audit, entry)


async def _write(sink: AuditSink, entry: AuditEntry) -> None:
    try:
        await sink.write_async([entry])
    except Exception as exc:
        log.error("audit entry of a refusal could not be written: %s", type(exc).__name__)
