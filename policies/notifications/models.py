"""The notification (one per event), its inbox rows (one per principal) and its outbox."""

from datetime import datetime
from enum import StrEnum
from typing import Any

from pydantic import BaseModel
from sqlalchemy import JSON, Column, Index, String, UniqueConstraint
from sqlmodel import Field as SQLField
from sqlmodel import SQLModel

from catalog.kernel.db import UtcDateTime


class NotificationKind(StrEnum):
    """What happened; each kind has its audience (`service.py`)."""

    REQUEST_FILED = "request-filed"
    REQUEST_APPROVED = "request-approved"
    REQUEST_DENIED = "request-denied"
    REQUEST_WITHDRAWN = "request-withdrawn"
    GRANT_REVOKED = "grant-revoked"
    GRANT_EXPIRING_14D = "grant-expiring-14d"
    GRANT_EXPIRING_1D = "grant-expiring-1d"
    GRANT_REVIEW_DUE = "grant-review-due"
    VERSION_DEPRECATED = "version-deprecated"
    VERSION_RETIRED = "version-retired"


class Channel(StrEnum):
    """Ways out of the process."""

    WEBHOOK = "webhook"
    EMAIL = "email"


class DeliveryStatus(StrEnum):
    """An outbox row: waiting (first try or a retry), done, or given up after the last attempt."""

    PENDING = "pending"
    SENT = "sent"
    FAILED = "failed"


class Notification(SQLModel, table=True):
    """One event people are told about. Text carries no PHI: product names, ids and dates only.

    `dedupe_key` is unique: the same event (`grant:7:expiring-14d`) is written once however
    many scans, processes or retries try.
    """

    __tablename__ = "notification"

    id: int | None = SQLField(default=None, primary_key=True)
    kind: NotificationKind = SQLField(sa_type=String(32))
    dedupe_key: str = SQLField(max_length=200, unique=True)
    title: str = SQLField(max_length=300)
    body: str = SQLField(max_length=2000)
    product: str | None = SQLField(default=None, max_length=130)
    request_id: int | None = None
    grant_id: int | None = None
    # Dates and ids the text names, for webhooks and templates (never free text).
    facts: dict[str, Any] = SQLField(default_factory=dict, sa_column=Column(JSON, nullable=False))
    created_at: datetime = SQLField(sa_type=UtcDateTime)
    created_by: str = SQLField(max_length=200)
    # When the deliverer turned it into outbox rows (one per configured channel and address);
    # null: not yet. Set once, by whichever process claims it first.
    dispatched_at: datetime | None = SQLField(default=None, sa_type=UtcDateTime, index=True)


class NotificationRecipient(SQLModel, table=True):
    """An inbox row: one principal's copy of a notification, with its own link and read mark."""

    __tablename__ = "notification_recipient"
    __table_args__ = (
        UniqueConstraint("notification_id", "principal", name="uq_notification_recipient"),
        Index("ix_notification_recipient_inbox", "principal", "read_at"),
    )

    id: int | None = SQLField(default=None, primary_key=True)
    notification_id: int = SQLField(foreign_key="notification.id", index=True)
    # A principal name, as `access_request.requester` stores it.
    principal: str = SQLField(max_length=100)
    # Why this principal hears of it: admin, owner, requester, grantee.
    audience: str = SQLField(max_length=16)
    link: str = SQLField(max_length=300)
    read_at: datetime | None = SQLField(default=None, sa_type=UtcDateTime)


class NotificationDelivery(SQLModel, table=True):
    """The outbox: one row per webhook POST or e-mail, delivered after commit, retried."""

    __tablename__ = "notification_delivery"
    __table_args__ = (
        UniqueConstraint(
            "notification_id", "channel", "target", name="uq_notification_delivery_target"
        ),
        Index("ix_notification_delivery_due", "status", "next_attempt_at"),
    )

    id: int | None = SQLField(default=None, primary_key=True)
    notification_id: int = SQLField(foreign_key="notification.id", index=True)
    channel: Channel = SQLField(sa_type=String(16))
    # The webhook URL or the e-mail address.
    target: str = SQLField(max_length=500)
    audience: str = SQLField(max_length=16)
    status: DeliveryStatus = SQLField(default=DeliveryStatus.PENDING, sa_type=String(16))
    attempts: int = 0
    next_attempt_at: datetime = SQLField(sa_type=UtcDateTime)
    last_attempt_at: datetime | None = SQLField(default=None, sa_type=UtcDateTime)
    last_error: str | None = SQLField(default=None, max_length=500)
    sent_at: datetime | None = SQLField(default=None, sa_type=UtcDateTime)
    created_at: datetime = SQLField(sa_type=UtcDateTime)


# --- API shapes ----------------------------------------------------------------------------------


class NotificationRead(BaseModel):
    """One notification in a principal's inbox."""

    id: int
    kind: NotificationKind
    title: str
    body: str
    link: str
    product: str | None
    request_id: int | None
    grant_id: int | None
    created_at: datetime
    read_at: datetime | None


class NotificationPage(BaseModel):
    """A page of the inbox, newest first; pass `next_cursor` back as `cursor`."""

    items: list[NotificationRead]
    next_cursor: str | None
    unread: int


class MarkedRead(BaseModel):
    """How many notifications a mark-all-read changed."""

    marked: int
