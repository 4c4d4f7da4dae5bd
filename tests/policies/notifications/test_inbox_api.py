"""The inbox API: only one's own notifications, marks, pages, problem+json errors."""

from tests.policies.notifications.test_recipients import inbox
from tests.problems import assert_problem


def _filed(estate):
    dua = estate.dua()
    return estate.request(dua_id=dua["id"]).json()["id"]


def test_mark_read_is_ones_own_and_idempotent(estate, clock):
    _filed(estate)
    mine = inbox(estate, "admin1")["items"][0]
    theirs = inbox(estate, "admin2")["items"][0]
    assert mine["id"] != theirs["id"] and mine["read_at"] is None

    r = estate.call("admin1", "POST", f"/api/v1/notifications/{mine['id']}/read")
    assert r.status_code == 200, r.text
    assert r.json()["read_at"] is not None
    again = estate.call("admin1", "POST", f"/api/v1/notifications/{mine['id']}/read")
    assert again.status_code == 200 and again.json()["read_at"] == r.json()["read_at"]
    assert inbox(estate, "admin1")["unread"] == 0
    assert inbox(estate, "admin1", unread="true")["items"] == []

    # Someone else's notification, even by its id: exactly like a missing one.
    for target in (theirs["id"], 999_999):
        r = estate.call("admin1", "POST", f"/api/v1/notifications/{target}/read")
        body = assert_problem(r, 404, "not-found", f"notification {target} not found")
        assert body["errorCode"] == "RESOURCE_DOES_NOT_EXIST"
    assert inbox(estate, "admin2")["items"][0]["read_at"] is None  # untouched
    # A consumer's inbox never lists the admins' notifications.
    assert inbox(estate, "researcher")["items"] == []


def test_pages_newest_first_and_read_all(estate):
    for _ in range(3):
        _filed(estate)
    first = inbox(estate, "admin1", limit=2)
    assert len(first["items"]) == 2 and first["next_cursor"] and first["unread"] == 3
    rest = inbox(estate, "admin1", limit=2, cursor=first["next_cursor"])
    ids = [n["request_id"] for n in first["items"] + rest["items"]]
    assert ids == sorted(ids, reverse=True) and len(ids) == 3 and rest["next_cursor"] is None

    r = estate.call("admin1", "POST", "/api/v1/notifications/read-all")
    assert r.status_code == 200 and r.json() == {"marked": 3}
    assert inbox(estate, "admin1")["unread"] == 0
    assert inbox(estate, "admin2")["unread"] == 3


def test_bad_input_is_a_client_error(estate):
    r = estate.call("admin1", "GET", "/api/v1/notifications", params={"cursor": "nonsense"})
    assert_problem(r, 400, "invalid-parameter")
    r = estate.call("admin1", "GET", "/api/v1/notifications", params={"limit": 100_000})
    assert assert_problem(r, 400, "invalid-parameter")["errorCode"] == "INVALID_PARAMETER_VALUE"
    r = estate.call("admin1", "POST", "/api/v1/notifications/0/read")
    assert_problem(r, 422, "validation-error")
    assert_problem(estate.client.get("/api/v1/notifications"), 401)  # no token
