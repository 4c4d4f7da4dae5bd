"""The one place every state change is recorded: who did what to which object, when and why.

Services call `record_event` in the same transaction as the change, so an event exists exactly
when its change does.
"""

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import JSON, Column
from sqlmodel import Field, Session, SQLModel

from catalog.db import UtcDateTime


@dataclass(frozen=True)
class Actor:
    """Who is acting: a principal name (API) or `cli:<os user>` (command line)."""

    name: str


class ChangeEvent(SQLModel, table=True):
    """An append-only record of one state change."""

    __tablename__ = "change_event"

    id: int | None = Field(default=None, primary_key=True)
    at: datetime = Field(sa_type=UtcDateTime, index=True)
    actor: str = Field(max_length=200, index=True)
    action: str = Field(max_length=64, index=True)
    subject_type: str = Field(max_length=32)
    subject: str = Field(max_length=300, index=True)
    reason: str | None = Field(default=None, max_length=4000)
    details: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))


def record_event(
    session: Session,
    *,
    at: datetime,
    actor: Actor,
    action: str,
    subject_type: str,
    subject: str,
    reason: str | None = None,
    details: dict[str, Any] | None = None,
) -> ChangeEvent:
    """Add an event to the current transaction."""
    event = ChangeEvent(
        at=at,
        actor=actor.name,
        action=action,
        subject_type=subject_type,
        subject=subject,
        reason=reason,
        details=details or {},
    )
    session.add(event)
    return event
