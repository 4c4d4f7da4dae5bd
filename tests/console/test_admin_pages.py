"""Platform admin pages: bulk decisions with a result per item, queue filters, the decision
page, grants filters, recipient credentials, DUAs."""

import re

from sqlmodel import Session, select

from catalog.audit.models import AuditEvent


def _filed(estate, who="researcher", **kw):
    r = estate.request(who, **kw)
    assert r.status_code == 201, r.text
    return r.json()["id"]


def test_bulk_decisions_report_each_item_and_refusals_do_not_fail_the_batch(people, estate, engine):
    dua = estate.dua()["id"]
    ours = [_filed(estate, dua_id=dua) for _ in range(3)]
    quality = estate.dua(organization="quality-team", purpose="quality-improvement")["id"]
    own = _filed(estate, "dual", dua_id=quality, purpose="quality-improvement")
    assert estate.approve(ours[2]).status_code == 200  # already decided before the batch

    admin = people("dual")  # a platform admin, and the requester of `own`
    queue = admin.get("/console/review?show=pending")
    for rid in (ours[0], ours[1], own):
        assert f'name="request" value="{rid}"' in queue.text
    r = admin.post(
        "/console/review/bulk",
        {
            "request": [str(ours[0]), str(own), str(ours[1]), str(ours[2])],
            "decision": "approve",
            "end": "2026-09-30",
            "reason": "IRB approved",
        },
        csrf_from="/console/review?show=pending",
    )
    assert r.status_code == 200, r.text
    rows = dict(re.findall(r'<tr id="result-(\d+)">(.*?)</tr>', r.text, re.S))
    assert "approved: 1 grant(s), ending 2026-09-30" in rows[str(ours[0])]
    assert "approved: 1 grant(s)" in rows[str(ours[1])]
    assert "refused" in rows[str(own)] and "four-eyes rule" in rows[str(own)]
    assert "refused" in rows[str(ours[2])] and "is approved, not pending" in rows[str(ours[2])]
    assert "2 of 4 decided; 2 refused" in r.text

    states = {
        rid: estate.call("root", "GET", f"/api/v1/access-requests/{rid}").json()["status"]
        for rid in (*ours, own)
    }
    assert states == {ours[0]: "approved", ours[1]: "approved", ours[2]: "approved", own: "pending"}
    with Session(engine) as s:
        denied = s.exec(
            select(AuditEvent).where(
                AuditEvent.action == "access.denied", AuditEvent.actor == "dual"
            )
        ).all()
        approvals = s.exec(
            select(AuditEvent).where(
                AuditEvent.action == "request.approve", AuditEvent.actor == "dual"
            )
        ).all()
    assert [(e.subject, e.reason[:15]) for e in denied] == [(str(own), "four-eyes rule:")]
    assert sorted(int(e.subject) for e in approvals) == sorted(ours[:2])


def test_bulk_deny_needs_a_reason_per_item_and_then_denies_each(people, estate):
    dua = estate.dua()["id"]
    ids = [_filed(estate, dua_id=dua) for _ in range(2)]
    admin = people("admin1")
    form = {"request": [str(i) for i in ids], "decision": "deny"}
    r = admin.post("/console/review/bulk", form, csrf_from="/console/review")
    assert r.status_code == 200
    assert r.text.count("denying a request needs a reason") == 2
    r = admin.post(
        "/console/review/bulk", form | {"reason": "out of scope"}, csrf_from="/console/review"
    )
    assert "2 of 2 decided; 0 refused" in r.text
    mine = people("researcher").get("/console/my/requests").text
    assert mine.count("denied") >= 2 and "out of scope" in mine


def test_bulk_decisions_need_csrf_and_the_review_permission(people, estate, engine):
    dua = estate.dua()["id"]
    rid = _filed(estate, dua_id=dua)
    admin = people("admin1")
    r = admin.client.post(
        "/console/review/bulk",
        data={"request": str(rid), "decision": "approve"},
        follow_redirects=False,
    )
    assert r.status_code == 403 and "security token" in r.text
    consumer = people("researcher")
    r = consumer.post("/console/review/bulk", {"request": str(rid), "decision": "approve"})
    assert r.status_code == 403 and "missing permission request:approve" in r.text
    assert estate.call("root", "GET", f"/api/v1/access-requests/{rid}").json()["status"] == (
        "pending"
    )
    nothing = admin.post("/console/review/bulk", {"decision": "approve"})
    assert nothing.status_code == 400 and "select at least one request" in nothing.text


def test_queue_filters_by_age_tier_and_dua(people, estate, clock):
    dua = estate.dua()["id"]
    other = estate.dua(title="Second study")["id"]
    old = _filed(estate, dua_id=dua)
    clock.advance(seconds=5 * 86400)
    new = _filed(estate, dua_id=other)
    admin = people("admin1")
    aged = admin.get("/console/review?older=3").text
    assert f"Request {old}<" in aged and f"Request {new}<" not in aged
    assert "5 days ago" in aged
    by_dua = admin.get(f"/console/review?dua={other}").text
    assert f"Request {new}<" in by_dua and f"Request {old}<" not in by_dua
    assert "Request" not in admin.get("/console/review?tier=full").text.split("</form>")[1]
    assert admin.get("/console/review?older=soon").status_code == 400


def test_decision_page_shows_recent_decisions_and_owner_comments(people, estate):
    dua = estate.dua()["id"]
    earlier = _filed(estate, dua_id=dua)
    assert estate.approve(earlier, reason="first cohort").status_code == 200
    rid = _filed(estate, dua_id=dua)
    c = estate.call(
        "pub-sm", "POST", f"/api/v1/access-requests/{rid}/comments", json={"body": "fine by us"}
    )
    assert c.status_code == 201, c.text
    page = people("admin2").get(f"/console/review/{rid}").text
    assert "Recent decisions on the same products" in page
    assert f"Request {earlier}</a>: research-lab, deidentified" in page
    assert "approved</span> by admin1" in page and "first cohort" in page
    assert '<strong>pub-sm</strong> <span class="badge tier">owning facility</span>' in page
    assert "Sepsis outcomes study" in page and "(end date)" in page
    assert "research-lab's grants" in page and "st-marys/patients (deidentified)" in page
