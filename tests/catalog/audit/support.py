"""Builders for audit tests: entries written through the real `record`."""

from typing import Any

from sqlalchemy import text
from sqlalchemy.engine import Engine
from sqlmodel import Session, col, select

from catalog.audit.chain import verify_chain
from catalog.audit.models import AuditEvent, VerifyReport
from catalog.audit.record import Operator
from catalog.audit.record import record as record_entry
from catalog.kernel.db import transaction
from tests.db_support import audit_protection_lifted

AUDITOR = Operator("tester")


def record(session: Session, clock: Any, **overrides: Any) -> AuditEvent:
    """One entry at the clock's time (a product change unless told otherwise)."""
    fields: dict[str, Any] = {
        "action": "product.create",
        "subject_type": "product",
        "subject": "st-marys/patients",
        "actor": AUDITOR,
    } | overrides
    subject = (fields.pop("subject_type"), fields.pop("subject"))
    return record_entry(session, subject=subject, at=clock.now(), **fields)


def append(engine: Engine, clock: Any, count: int, **overrides: Any) -> None:
    """`count` entries in one committed transaction, one second apart."""
    with transaction(engine) as session:
        for i in range(count):
            record(session, clock, subject=f"st-marys/p{i}", **overrides)
            clock.advance(seconds=1)


def entries(engine: Engine) -> list[AuditEvent]:
    """Every entry, oldest first."""
    with Session(engine) as session:
        return list(session.exec(select(AuditEvent).order_by(col(AuditEvent.id))).all())


def verify(engine: Engine) -> VerifyReport:
    """Recompute the chain."""
    with Session(engine) as session:
        return verify_chain(session)


def tamper(engine: Engine, sql: str, **params: Any) -> None:
    """Change audit rows behind the application's back (the test superuser lifts the triggers)."""
    with engine.begin() as conn, audit_protection_lifted(conn):
        conn.execute(text(sql), params)
