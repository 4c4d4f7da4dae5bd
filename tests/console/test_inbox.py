"""The console inbox: one's own notifications, mark read with and without htmx, CSRF, counts."""

import re

from tests.policies.notifications.test_recipients import inbox

ITEM = re.compile(r'<li id="n-(\d+)" class="(unread|read)"')


def _filed(estate) -> int:
    dua = estate.dua()
    r = estate.request(dua_id=dua["id"])
    assert r.status_code == 201, r.text
    return r.json()["id"]


def test_empty_inbox_says_what_will_arrive(people):
    consumer = people("researcher").get("/console/inbox")
    assert consumer.status_code == 200
    assert "No notifications yet" in consumer.text
    assert "a request of your organisation is approved or denied" in consumer.text
    assert "waits for a platform admin" not in consumer.text
    admin = people("admin1").get("/console/inbox").text
    assert "waits for a platform admin's decision" in admin
    assert '<a href="/console/inbox" aria-current="page">Inbox' in admin


def test_list_and_mark_read_without_javascript(people, estate):
    rid = _filed(estate)
    admin = people("admin1")
    page = admin.get("/console/inbox")
    assert f"Access request #{rid} filed" in page.text
    assert f'href="/console/review/{rid}"' in page.text
    assert "1 unread" in page.text
    ((item_id, state),) = ITEM.findall(page.text)
    assert state == "unread"

    r = admin.post(f"/console/inbox/{item_id}/read", {}, csrf_from="/console/inbox")
    assert r.status_code == 303 and r.headers["location"] == f"/console/inbox#n-{item_id}"
    after = admin.get("/console/inbox").text
    assert ITEM.findall(after) == [(item_id, "read")] and "0 unread" in after
    assert admin.get("/console/inbox?show=unread").text.count('<li id="n-') == 0


def test_mark_read_with_htmx_swaps_the_item(people, estate):
    _filed(estate)
    admin = people("admin1")
    ((item_id, _),) = ITEM.findall(admin.get("/console/inbox").text)
    r = admin.post(
        f"/console/inbox/{item_id}/read",
        {},
        csrf_from="/console/inbox",
        headers={"HX-Request": "true"},
    )
    assert r.status_code == 200
    assert r.text.lstrip().startswith(f'<li id="n-{item_id}" class="read"')
    assert "<html" not in r.text
    assert r.headers["hx-trigger"] == "inbox-changed"  # the navigation's count refreshes


def test_the_navigation_count(people, estate):
    admin = people("admin1")
    # Every page asks for the count with htmx; without JavaScript the link is still there.
    home = admin.get("/console/").text
    assert 'hx-get="/console/inbox/count" hx-trigger="load, inbox-changed from:body"' in home
    assert "badge count" not in admin.get("/console/inbox/count").text
    _filed(estate)
    _filed(estate)
    count = admin.get("/console/inbox/count", headers={"HX-Request": "true"}).text
    assert count.startswith('<span id="inbox-count" hx-get="/console/inbox/count"')
    assert ">2<" in count


def test_a_principal_cannot_read_or_mark_anothers_notification(people, estate):
    _filed(estate)
    theirs = inbox(estate, "admin2")["items"][0]["id"]
    admin1 = people("admin1")
    assert [i for i, _ in ITEM.findall(admin1.get("/console/inbox").text)] != [str(theirs)]
    r = admin1.post(f"/console/inbox/{theirs}/read", {}, csrf_from="/console/inbox")
    assert r.status_code == 404 and f"notification {theirs} not found" in r.text
    assert inbox(estate, "admin2")["items"][0]["read_at"] is None
    # The consumer sees none of the admins' notifications, by list or by id.
    consumer = people("researcher")
    assert "No notifications yet" in consumer.get("/console/inbox").text
    r = consumer.post(f"/console/inbox/{theirs}/read", {}, csrf_from="/console/inbox")
    assert r.status_code == 404


def test_marking_needs_the_csrf_token(people, estate):
    _filed(estate)
    admin = people("admin1")
    ((item_id, _),) = ITEM.findall(admin.get("/console/inbox").text)
    r = admin.client.post(f"/console/inbox/{item_id}/read", data={}, follow_redirects=False)
    assert r.status_code == 403 and "Security token missing" in r.text
    r = admin.client.post("/console/inbox/read-all", data={"_csrf": "forged"})
    assert r.status_code == 403
    assert inbox(estate, "admin1")["unread"] == 1


def test_mark_all_read(people, estate):
    _filed(estate)
    _filed(estate)
    admin = people("admin1")
    r = admin.post("/console/inbox/read-all", {}, csrf_from="/console/inbox")
    assert r.status_code == 303
    page = admin.get(r.headers["location"]).text
    assert "Every notification is marked read." in page and "0 unread" in page
    assert inbox(estate, "admin2")["unread"] == 2  # only one's own


def test_signed_out_visitors_are_sent_to_sign_in(people):
    r = people().get("/console/inbox", follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"].startswith("/console/sign-in")
