"""Platform admin pages: bulk decisions with a result per item, queue filters, the decision
page, grants filters, recipient credentials, DUAs."""

import re
from datetime import timedelta

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


def test_grants_quick_filters_expiring_review_due_suspended(people, estate, clock, settings):
    dua = estate.dua()["id"]
    soon = _filed(estate, dua_id=dua, days=10)
    later = _filed(estate, dua_id=dua, products=("labs/lab-results",), days=300)
    for rid in (soon, later):
        assert estate.approve(rid).status_code == 200
    admin = people("admin1")
    expiring = admin.get("/console/grants?expiring=14").text
    assert "st-marys/patients" in expiring and "labs/lab-results" not in expiring
    assert "Expiring within 14 days" in expiring
    clock.advance(seconds=(settings.grant_review_days + 1) * 86400)
    admin = people("root")  # a fresh session (the env admin token: estate tokens last 30 days)
    due = admin.get("/console/grants?state=review-due").text
    assert "labs/lab-results" in due and "Record re-review of grant" in due
    grant_id = int(re.search(r'action="/console/grants/(\d+)/review"', due).group(1))
    r = admin.post(
        f"/console/grants/{grant_id}/review",
        {"reason": "still needed"},
        csrf_from="/console/grants",
    )
    assert r.status_code == 303 and "notice=reviewed" in r.headers["location"]
    assert "labs/lab-results" not in admin.get("/console/grants?state=review-due").text
    clock.advance(seconds=(settings.grant_review_days + settings.grant_review_grace_days) * 86400)
    admin = people("root")
    assert "labs/lab-results" in admin.get("/console/grants?state=suspended").text


def test_recipient_credentials_rotate_revoke_link_and_allow_list(people, estate, engine):
    admin = people("admin1")
    index = admin.get("/console/recipients")
    assert index.status_code == 200 and "/console/recipients/research-lab" in index.text
    page = admin.get("/console/recipients/research-lab")
    assert "No token yet" in page.text
    link = admin.post(
        "/console/recipients/research-lab/activation",
        {"days": "30", "valid_hours": "24"},
        csrf_from="/console/recipients/research-lab",
    )
    assert link.status_code == 200 and "shown once" in link.text
    assert re.search(r'value="http://[^"]+/console/activate/dsa_[^"]+"', link.text)
    rotated = admin.post(
        "/console/recipients/research-lab/rotate",
        {"days": "30", "grace_hours": "0"},
        csrf_from="/console/recipients/research-lab",
    )
    assert rotated.status_code == 200 and "shown once" in rotated.text
    assert "&#34;bearerToken&#34;: &#34;dsr_" in rotated.text
    token_id = re.search(r"dsr_([0-9a-f]+)_", rotated.text).group(1)
    page = admin.get("/console/recipients/research-lab").text
    assert f'id="token-{token_id}"' in page and "live, ends in 30 days" in page
    revoked = admin.post(
        "/console/recipients/research-lab/revoke",
        {"token_id": token_id},
        csrf_from="/console/recipients/research-lab",
    )
    assert revoked.status_code == 303
    assert "revoked" in admin.get("/console/recipients/research-lab").text
    saved = admin.post(
        "/console/recipients/research-lab/networks",
        {"cidrs": "10.0.0.0/8\n192.168.1.7"},
        csrf_from="/console/recipients/research-lab",
    )
    assert saved.status_code == 303
    api = estate.call("root", "GET", "/api/v1/recipients/research-lab/networks").json()
    assert api == {"cidrs": ["10.0.0.0/8", "192.168.1.7/32"]}
    bad = admin.post(
        "/console/recipients/research-lab/networks",
        {"cidrs": "not-an-address"},
        csrf_from="/console/recipients/research-lab",
    )
    assert bad.status_code == 400 and "is not an IP address or CIDR range" in bad.text
    with Session(engine) as s:
        actions = {
            e.action for e in s.exec(select(AuditEvent).where(AuditEvent.actor == "admin1")).all()
        }
    assert {
        "recipient.activation.create",
        "recipient.token.rotate",
        "recipient.token.revoke",
        "recipient.networks.set",
    } <= actions


def test_duas_page_warns_of_expiry_and_lists_the_grants_each_covers(people, estate, clock):
    soon = estate.dua(
        title="Ending soon", expires_at=(clock.now() + timedelta(days=10)).isoformat()
    )["id"]
    rid = _filed(estate, dua_id=soon, days=5)
    assert estate.approve(rid).status_code == 200
    estate.dua(title="Long study")
    page = people("admin1").get("/console/duas").text
    assert "Ending soon" in page and "Long study" in page
    section = page.split(f'id="dua-{soon}"')[1].split("</section>")[0]
    assert "ends in 10 days: its grants end with it" in section
    assert "st-marys/patients" in section and "active</span>" in section
    assert page.index("Ending soon") < page.index("Long study")  # soonest first
    assert "No grant under this DUA yet" in page
    assert people("auditor1").get("/console/duas").status_code == 200


def test_consumers_cannot_open_admin_pages_even_by_url(people, estate, engine):
    consumer = people("researcher")
    for path in (
        "/console/recipients",
        "/console/recipients/research-lab",
        "/console/duas",
        "/console/grants?expiring=14",
    ):
        r = consumer.get(path)
        assert r.status_code == 403, path
        assert "<h1>Forbidden</h1>" in r.text and "missing permission" in r.text
    r = consumer.post("/console/recipients/research-lab/rotate", {})
    assert r.status_code == 403 and "recipient:manage" in r.text
    auditor = people("auditor1")  # reads grants and DUAs, not credentials
    assert auditor.get("/console/recipients/research-lab").status_code == 403


def test_the_queues_batch_four_eyes_check_agrees_with_the_services_rule(estate, engine):
    from sqlmodel import col

    from catalog.audit.record import Actor
    from policies.principals.models import ApiToken, Principal
    from policies.requests.models import AccessRequest
    from policies.requests.service import four_eyes_blocked, four_eyes_refusal

    dua = estate.dua()["id"]
    quality = estate.dua(organization="quality-team", purpose="quality-improvement")["id"]
    _filed(estate, dua_id=dua)
    _filed(estate, "dual", dua_id=quality, purpose="quality-improvement")
    _filed(estate, "quality", dua_id=quality, purpose="quality-improvement")
    with Session(engine) as s:
        requests = list(s.exec(select(AccessRequest)).all())
        creators = set(s.exec(select(Principal.created_by)).all())
        issuers = set(
            s.exec(select(ApiToken.issued_by).where(col(ApiToken.issued_by).is_not(None))).all()
        )
        for name in {"admin1", "dual", "quality", "nobody", *creators, *issuers}:
            actor = Actor(name)
            expected = {r.id for r in requests if four_eyes_refusal(s, r, actor=actor) is not None}
            assert four_eyes_blocked(s, requests, actor=actor) == expected, name
