"""The inbox API: `GET /api/v1/notifications`, mark one or all read. Only one's own, ever."""

from typing import Annotated

from litestar import get, post
from litestar.di import NamedDependency
from litestar.params import PathParameter, QueryParameter

from catalog.kernel import pagination
from catalog.kernel.problems import LIST_ERRORS, READ_ERRORS, SEARCH_ERRORS
from policies.models import MAX_ROW_ID
from policies.notifications import inbox as notifications
from policies.notifications.models import MarkedRead, NotificationPage, NotificationRead
from policies.routing import GovernanceController, ServiceCall

# Every principal has an inbox; the service only ever reads the caller's own rows.
ANY = {"permission": "authenticated"}


class NotificationController(GovernanceController):
    """The caller's notifications."""

    path = "/api/v1/notifications"
    tags = ("notifications",)

    @get("/", sync_to_thread=True, opt=ANY, responses=SEARCH_ERRORS)
    def list_notifications(
        self,
        call: NamedDependency[ServiceCall],
        unread: Annotated[bool, QueryParameter(description="Only unread ones.")] = False,
        limit: Annotated[int | None, QueryParameter(ge=1)] = None,
        cursor: Annotated[str | None, QueryParameter(max_length=200)] = None,
    ) -> NotificationPage:
        """The caller's notifications, newest first, with the unread count."""
        size = pagination.page_size(
            limit, default=call.settings.default_page_size, maximum=call.settings.max_page_size
        )
        items, nxt = notifications.list_inbox(
            call.session, actor=call.actor, unread_only=unread, limit=size, cursor=cursor
        )
        return NotificationPage(
            items=items,
            next_cursor=nxt,
            unread=notifications.unread_count(call.session, actor=call.actor),
        )

    @post(
        "/{notification_id:int}/read",
        sync_to_thread=True,
        status_code=200,
        opt=ANY,
        responses=READ_ERRORS,
    )
    def mark_read(
        self,
        notification_id: Annotated[int, PathParameter(ge=1, le=MAX_ROW_ID)],
        call: NamedDependency[ServiceCall],
    ) -> NotificationRead:
        """Mark one of the caller's notifications read (404 for anyone else's)."""
        return notifications.mark_read(
            call.session, notification_id, actor=call.actor, now=call.clock.now()
        )

    @post("/read-all", sync_to_thread=True, status_code=200, opt=ANY, responses=LIST_ERRORS)
    def mark_all_read(
        self,
        call: NamedDependency[ServiceCall],
    ) -> MarkedRead:
        """Mark every unread notification of the caller read."""
        return MarkedRead(
            marked=notifications.mark_all_read(call.session, actor=call.actor, now=call.clock.now())
        )
