"""The one place every change, read and refusal is recorded: the audit trail.

Services call `record` in the same transaction as the change, so an entry exists exactly
when its change does. `record_now` writes an entry that records no change of its own (a sharing
read) before the request is answered, group-committed with other requests' entries;
`record_failure` does the same for refusals, whose own transaction rolls back. Entries land in
the hash-chained `audit_event` table (`catalog/audit/`).
"""

import logging
import re
from datetime import datetime
from typing import Any, NotRequired, Protocol, TypedDict, Unpack

from sqlmodel import Session

from catalog.audit import chain
from catalog.audit.context import RequestContext, current_request
from catalog.audit.models import AuditEntry, Outcome
from catalog.audit.writer import AuditSink
from catalog.kernel.errors import Forbidden, MeshError, Unavailable

log = logging.getLogger("mesh.audit")


class Actor:
    """Who is acting, as the audit trail names them; allowed nothing unless a subclass says so.

    Services ask the actor whether an action is allowed. An API principal (`policies.enforcer.
    Caller`) answers through the policy engine; a recipient or an anonymous caller is only named
    in entries; the local operator (`Operator`) is the one permissive exception. (A plain class:
    the framework passes it through as is.)
    """

    # The API token the actor authenticated with (its id, never the secret) and its
    # organisation; both recorded with its audit entries.
    token_id: str | None = None
    organization: str | None = None

    def __init__(self, name: str) -> None:
        self.name = name

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.name!r})"

    def can(self, domain: str, obj: str, action: str) -> bool:
        """Whether this actor may do `action` on `obj` in `domain` (`*` = every domain)."""
        return False

    def require(self, domain: str, obj: str, action: str) -> None:
        """Raise Forbidden, naming the missing permission, unless allowed."""
        if not self.can(domain, obj, action):
            where = "any domain" if domain == "*" else f"domain {domain!r}"
            raise Forbidden(f"missing permission {obj}:{action} in {where}")


class Operator(Actor):
    """The local operator of the command line (`cli:<os user>`) or of the demo: holds the
    database credentials anyway, so every action is allowed (and audited under this name)."""

    def can(self, domain: str, obj: str, action: str) -> bool:
        return True


_SECRET_KEYS = frozenset(
    {"token", "secret", "password", "credential", "authorization", "signature", "api_key"}
)
# `<prefix><16 hex id>_<secret>`: API (`mesh_`) and recipient (`dsr_`) tokens.
_CREDENTIAL = re.compile(r"\b([a-z]+_[0-9a-f]{16})_[A-Za-z0-9_-]{16,}")


def _scrub(value: Any) -> Any:
    """Details never carry a credential: secret-named keys and token-shaped strings redacted."""
    if isinstance(value, dict):
        return {
            str(k): "[redacted]" if str(k).lower() in _SECRET_KEYS else _scrub(v)
            for k, v in value.items()
        }
    if isinstance(value, list | tuple):
        return [_scrub(v) for v in value]
    if isinstance(value, str):
        return _CREDENTIAL.sub(r"\1_[redacted]", value)
    if value is None or isinstance(value, bool | int | float):
        return value
    return str(value)


class EntryFields(TypedDict, total=False):
    """The optional fields of an audit entry (see `new_entry`)."""

    reason: str | None
    details: dict[str, Any] | None
    organization: str | None
    product: str | None
    product_version: str | None
    tier: str | None
    token_id: str | None
    context: RequestContext | None


class AuditSubject(Protocol):
    """A model an audit entry can name: its subject type and identifier."""

    @property
    def audit_subject(self) -> tuple[str, str]: ...


# What an entry is about: a model that names itself, or (subject type, identifier).
Subject = AuditSubject | tuple[str, str]


def subject_of(subject: Subject) -> tuple[str, str]:
    """(subject type, identifier) of `subject`."""
    return subject if isinstance(subject, tuple) else subject.audit_subject


class NewEntry(EntryFields):
    """The arguments of `new_entry`, as `record_now` and `record_failure` pass them on."""

    at: datetime
    actor: Actor
    action: str
    subject: Subject
    outcome: NotRequired[str]


def new_entry(
    *,
    at: datetime,
    actor: Actor,
    action: str,
    subject: Subject,
    outcome: str = Outcome.SUCCESS,
    **fields: Unpack[EntryFields],
) -> AuditEntry:
    """An audit entry, not yet chained or written.

    The request id, client address and user agent come from the request being served
    (`context` overrides). Left out, `organization` comes from `details["organization"]` or the
    actor's organisation, `product` / `product_version` from a `product` or `version` subject
    (`domain/name[@x.y.z]`), `tier` from `details["tier"]` and `token_id` from the actor.
    Never pass a credential: only token ids (secret-named details keys and token-shaped strings
    are redacted anyway).

    Sharing reads (`sharing.query`, `sharing.changes`, `sharing.metadata`, `sharing.file`)
    feed the accounting of disclosures when they carry `organization`, `product` (`domain/name`),
    `product_version`, `tier`, `token_id` and details `{"dua", "purpose", "files", "bytes"}`.
    """
    unknown = fields.keys() - EntryFields.__annotations__.keys()
    if unknown:  # (a dict of keyword arguments escapes the type checker)
        raise TypeError(f"not fields of an audit entry: {', '.join(sorted(unknown))}")
    subject_type, name = subject_of(subject)
    facts = _scrub(fields.get("details") or {})
    request = fields.get("context") or current_request()
    product, product_version = fields.get("product"), fields.get("product_version")
    if subject_type in ("product", "version") and product is None:
        product, _, version = name.partition("@")
        product_version = product_version or version or None
    organization = fields.get("organization")
    if organization is None:
        named = facts.get("organization")
        organization = named if isinstance(named, str) else actor.organization
    tier = fields.get("tier")
    if tier is None and isinstance(facts.get("tier"), str):
        tier = facts["tier"]
    return AuditEntry(
        at=at,
        actor=actor.name,
        action=action,
        subject_type=subject_type,
        subject=name,
        outcome=str(outcome),
        request_id=request.request_id if request else None,
        client_address=request.client_address if request else None,
        user_agent=request.user_agent if request else None,
        token_id=fields.get("token_id") or actor.token_id,
        organization=organization,
        product=product,
        product_version=product_version,
        tier=tier,
        reason=fields.get("reason"),
        details=facts,
    )


def record(
    session: Session,
    actor: Actor,
    action: str,
    *,
    subject: Subject,
    at: datetime,
    outcome: str = Outcome.SUCCESS,
    **fields: Unpack[EntryFields],
) -> AuditEntry:
    """Add an audit entry to the session's transaction: for changes (fields: `new_entry`).

    The entry is numbered, chained and inserted when the session commits (the chain lock is
    held for the commit only), and commits or rolls back with the transaction: if it cannot be
    written the commit fails, so nothing it records is committed and, for an API request, the
    response becomes an error instead of the data (fail closed). Entries are not visible to
    queries before that commit (`catalog.audit.chain.pending(session)` lists them).
    """
    entry = new_entry(at=at, actor=actor, action=action, subject=subject, outcome=outcome, **fields)
    chain.queue(session, entry)
    return entry


def record_now(sink: AuditSink, **fields: Unpack[NewEntry]) -> AuditEntry:
    """Write an entry that records no change of its own (a sharing read) before answering.

    Returns once the entry is committed by `sink` (the wiring's: group-committed with the entries
    other threads are writing at the same moment, here or in the relay), which keeps appends
    cheap under many concurrent readers; raises `Unavailable` (503) when it cannot be written,
    so the read is refused (fail closed). It blocks: call it from sync handlers (or through
    `sync_to_thread`). On SQLite (one writer at a time) call it while the request's own
    transaction holds no write.
    """
    entry = new_entry(**fields)
    sink.write([entry])
    return entry


async def record_entry(sink: AuditSink, entry: AuditEntry) -> None:
    """`record_now` for async handlers, with an entry from `new_entry`: awaits the group commit
    on the event loop without holding a thread; raises `Unavailable` (503) when it fails."""
    await sink.write_async([entry])


def record_failure(sink: AuditSink, **fields: Unpack[NewEntry]) -> AuditEntry | None:
    """Record a refusal outside the refused transaction (which rolls back), like `record_now`.

    Use it for authentication failures (`auth.failed`, outcome `failed`) and authorization
    refusals (outcome `denied`). The request is refused either way, so a failure to write is
    logged and answered None instead of raised. It blocks: from async code call it through
    `litestar.concurrency.sync_to_thread`.
    """
    fields.setdefault("outcome", Outcome.FAILED)
    try:
        return record_now(sink, **fields)
    except Unavailable:
        log.error("could not record %s (%s) in the audit log", fields["action"], fields["outcome"])
        return None


def refusal_entry(
    *, at: datetime, actor: Actor, refusal: MeshError, subject: Subject
) -> AuditEntry:
    """The `access.denied` entry of a refusal (a `Forbidden` raised anywhere), with its reason."""
    return new_entry(
        at=at,
        actor=actor,
        action="access.denied",
        subject=subject,
        outcome=Outcome.DENIED,
        reason=refusal.detail,
        details={"problem": refusal.slug, **refusal.audit_details},
    )


def record_refusal(
    sink: AuditSink,
    *,
    at: datetime,
    actor: Actor,
    refusal: MeshError,
    subject: Subject,
) -> None:
    """Record a refusal once, outside its rolled-back transaction (blocking; see `record_failure`).

    A refusal already recorded (`refusal.audited`) is not recorded again.
    """
    if refusal.audited:
        return
    refusal.audited = True
    entry = refusal_entry(at=at, actor=actor, refusal=refusal, subject=subject)
    try:
        sink.write([entry])
    except Unavailable:
        log.error("could not record access.denied in the audit log")
