"""The inbox API: `GET /api/v1/notifications`, mark one or all read. Only one's own, ever."""

from typing import Annotated

from litestar import get
from litestar.di import NamedDependency
from litestar.params import QueryParameter

from catalog.kernel.pagination import PageRequest
from catalog.kernel.problems import LIST_ERRORS, READ_ERRORS, SEARCH_ERRORS
from catalog.kernel.routing import action
from policies.notifications import inbox as notifications
from policies.notifications.models import MarkedRead, NotificationPage, NotificationRead
from policies.routing import ANY, Call, GovernanceController, RowId


class NotificationController(GovernanceController):
    """The caller's notifications: every principal has an inbox (ANY), and the service only
    ever reads the caller's own rows."""

    path = "/api/v1/notifications"
    tags = ("notifications",)

    @get("/", sync_to_thread=True, opt=ANY, responses=SEARCH_ERRORS)
    def list_notifications(
        self,
        call: Call,
        page: NamedDependency[PageRequest],
        unread: Annotated[bool, QueryParameter(description="Only unread ones.")] = False,
    ) -> NotificationPage:
        """The caller's notifications, newest first, with the unread count."""
        items, nxt = notifications.list_inbox(
            call.session, actor=call.actor, unread_only=unread, limit=page.size, cursor=page.cursor
        )
        return NotificationPage(
            items=items,
            next_cursor=nxt,
            unread=notifications.unread_count(call.session, actor=call.actor),
        )

    @action("/{notification_id:int}/read", opt=ANY, responses=READ_ERRORS)
    def mark_read(self, notification_id: RowId, call: Call) -> NotificationRead:
        """Mark one of the caller's notifications read (404 for anyone else's)."""
        return notifications.mark_read(
            call.session, notification_id, actor=call.actor, now=call.clock.now()
        )

    @action("/read-all", opt=ANY, responses=LIST_ERRORS)
    def mark_all_read(self, call: Call) -> MarkedRead:
        """Mark every unread notification of the caller read."""
        return MarkedRead(
            marked=notifications.mark_all_read(call.session, actor=call.actor, now=call.clock.now())
        )
