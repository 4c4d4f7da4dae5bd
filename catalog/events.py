"""The one place every state change is recorded: who did what to which object, when and why.

Services call `record_event` in the same transaction as the change, so an event exists exactly
when its change does.
"""

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, Column
from sqlmodel import Field, Session, SQLModel

from catalog.db import UtcDateTime
from catalog.errors import Forbidden


class Actor:
    """Who is acting: a principal (API) or `cli:<os user>`, a local operator (command line).

    Services ask the actor whether an action is allowed; an API principal answers through the
    policy engine (policies/), while a local operator, who holds the database credentials
    anyway, is allowed everything. (A plain class: the framework passes it through as is.)
    """

    def __init__(self, name: str) -> None:
        self.name = name

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.name!r})"

    def can(self, domain: str, obj: str, action: str) -> bool:
        """Whether this actor may do `action` on `obj` in `domain` (`*` = every domain)."""
        return True

    def require(self, domain: str, obj: str, action: str) -> None:
        """Raise Forbidden, naming the missing permission, unless allowed."""
        if not self.can(domain, obj, action):
            where = "any domain" if domain == "*" else f"domain {domain!r}"
            raise Forbidden(f"missing permission {obj}:{action} in {where}")


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
