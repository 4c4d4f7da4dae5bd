"""The console's inbox: a principal's own notifications, mark read (forms; htmx in place).

Served by the same service as `/api/v1/notifications` (policies/notifications/inbox.py), which only
ever reads and marks the signed-in principal's own rows: another's id is "not found".
Forms carry the CSRF token (checked by the console router before any POST runs); with htmx a
mark-read swaps just the item, without it the browser follows a redirect back to the list.
"""

from typing import Annotated, Any

from litestar import Controller, Request, Response, get, post
from litestar.di import NamedDependency
from litestar.params import FromPath, QueryParameter
from litestar.response import Redirect

from catalog.console.auth import ROOT
from catalog.console.call import ConsoleCall
from policies.notifications import inbox as notifications

# Everyone signed in has an inbox; the service keeps it to the viewer's own notifications.
INBOX = {"permission": "authenticated"}
Req = Request[Any, Any, Any]
Text = Annotated[str | None, QueryParameter(max_length=200)]
SHOW = "^(unread|all)?$"


class InboxController(Controller):
    """`/console/inbox`: list, unread count, mark read."""

    path = f"{ROOT}/inbox"

    @get("/", opt=INBOX, sync_to_thread=True)
    def inbox(
        self,
        call: NamedDependency[ConsoleCall],
        show: Annotated[str | None, QueryParameter(pattern=SHOW)] = None,
        cursor: Text = None,
        notice: Text = None,
    ) -> Response[str]:
        """The viewer's notifications, newest first (all, or only unread ones)."""
        me = call.me
        view = show or "all"
        items, nxt = notifications.list_inbox(
            call.session,
            actor=me,
            unread_only=view == "unread",
            limit=call.page_size,
            cursor=cursor,
        )
        return call.render(
            "inbox.html",
            items=items,
            next_cursor=nxt,
            show=view,
            inbox_unread=notifications.unread_count(call.session, actor=me),
            may_decide=me.can("*", "request", "approve"),
            consumer=bool(me.organization),
            notice="Every notification is marked read." if notice == "all-read" else None,
        )

    @get("/count", opt=INBOX, sync_to_thread=True)
    def count(self, call: NamedDependency[ConsoleCall]) -> Response[str]:
        """The unread count for the navigation (htmx loads it into every page)."""
        unread = notifications.unread_count(call.session, actor=call.me)
        return call.render("inbox_count.html", inbox_unread=unread)

    @post("/{item_id:int}/read", opt=INBOX, sync_to_thread=True, status_code=303)
    def mark_read(
        self, item_id: FromPath[int], call: NamedDependency[ConsoleCall]
    ) -> Response[Any]:
        """Mark one read: htmx gets the item back, a plain form a redirect to the list."""
        item = notifications.mark_read(call.session, item_id, actor=call.me, now=call.clock.now())
        if call.request.headers.get("hx-request") == "true":
            page = call.render("inbox_item.html", item=item, status=200)
            page.headers["HX-Trigger"] = "inbox-changed"  # the navigation's count refreshes
            return page
        return Redirect(f"{ROOT}/inbox#n-{item.id}", status_code=303)

    @post("/read-all", opt=INBOX, sync_to_thread=True, status_code=303)
    def mark_all_read(self, call: NamedDependency[ConsoleCall]) -> Redirect:
        """Mark every unread notification read."""
        notifications.mark_all_read(call.session, actor=call.me, now=call.clock.now())
        return Redirect(f"{ROOT}/inbox?notice=all-read", status_code=303)
