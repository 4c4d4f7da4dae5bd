"""Console tables: the session ids signed out before their lifetime ended."""

from datetime import datetime

from sqlmodel import Field, SQLModel

from catalog.kernel.db import UtcDateTime


class ConsoleSignOut(SQLModel, table=True):
    """A console session that was signed out: a replay of its sealed cookie is refused.

    The cookie is self-contained, so clearing it in the browser does not stop a copy of it from
    working; this row does, until the session's own lifetime would have ended it anyway
    (`expires_at`), after which the row is pruned.
    """

    __tablename__ = "console_signout"

    sid: str = Field(primary_key=True, max_length=64)
    principal: str = Field(max_length=200)
    signed_out_at: datetime = Field(sa_type=UtcDateTime)
    expires_at: datetime = Field(sa_type=UtcDateTime, index=True)
