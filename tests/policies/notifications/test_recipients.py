"""Who is told of what, through the real API: written with the change, never of one's own act."""

import json

from sqlmodel import Session, select

from policies.notifications.models import Notification
from tests.problems import assert_problem

JUSTIFICATION = "Cohort study of sepsis outcomes across the network"


def inbox(estate, who, **params):
    r = estate.call(who, "GET", "/api/v1/notifications", params=params)
    assert r.status_code == 200, r.text
    return r.json()


def kinds(estate, who):
    return [(n["kind"], n["request_id"], n["grant_id"]) for n in inbox(estate, who)["items"]]


def test_a_filed_request_reaches_the_admins_and_the_owning_facility(estate):
    dua = estate.dua()
    r = estate.request(dua_id=dua["id"])
    assert r.status_code == 201, r.text
    rid = r.json()["id"]
    for admin in ("admin1", "admin2", "dual"):
        page = inbox(estate, admin)
        assert [(n["kind"], n["request_id"]) for n in page["items"]] == [("request-filed", rid)]
        assert page["items"][0]["link"] == f"/console/review/{rid}"
        assert page["unread"] == 1
    owner = inbox(estate, "pub-sm")["items"]
    assert [(n["kind"], n["link"]) for n in owner] == [
        ("request-filed", "/console/catalog/st-marys/patients")
    ]
    for nobody in ("researcher", "quality", "pub-rv", "auditor1"):
        assert inbox(estate, nobody)["items"] == [], nobody
    item = inbox(estate, "admin1")["items"][0]
    assert item["title"] == f"Access request #{rid} filed"
    assert "st-marys/patients" in item["body"] and "deidentified" in item["body"]


def test_decisions_reach_the_requester_and_carry_no_free_text(estate, engine):
    dua = estate.dua()
    approved = estate.request(dua_id=dua["id"]).json()["id"]
    r = estate.approve(approved, reason="Looks fine: IRB reference checked by phone")
    assert r.status_code == 200, r.text
    grant = r.json()["items"][0]
    denied = estate.request(dua_id=dua["id"]).json()["id"]
    r = estate.call(
        "admin2",
        "POST",
        f"/api/v1/access-requests/{denied}/deny",
        json={"reason": "Patient Jane Roe asked us to withhold her chart"},
    )
    assert r.status_code == 200, r.text

    got = inbox(estate, "researcher")["items"]
    assert [(n["kind"], n["request_id"]) for n in got] == [
        ("request-denied", denied),
        ("request-approved", approved),
    ]
    assert got[1]["link"] == f"/console/my/requests#request-{approved}"
    assert grant["expires_at"][:10] in got[1]["body"]
    assert "reason is on the request's page" in got[0]["body"]
    # Deciders hear nothing of their own decision; the other admins are not told either.
    assert {n["kind"] for n in inbox(estate, "admin1")["items"]} == {"request-filed"}
    # Free text (justification, reasons) never leaves in a notification.
    with Session(engine) as session:
        texts = json.dumps(
            [[n.title, n.body, n.facts] for n in session.exec(select(Notification)).all()]
        )
    for secret in (JUSTIFICATION, "Jane Roe", "IRB reference checked"):
        assert secret not in texts


def test_withdrawn_requests_and_revoked_grants(estate):
    dua = estate.dua()
    rid = estate.request(dua_id=dua["id"]).json()["id"]
    r = estate.call("researcher", "POST", f"/api/v1/access-requests/{rid}/withdraw")
    assert r.status_code == 200, r.text
    assert ("request-withdrawn", rid, None) in kinds(estate, "admin1")
    assert ("request-withdrawn", rid, None) in kinds(estate, "pub-sm")
    assert all(k != "request-withdrawn" for k, _, _ in kinds(estate, "researcher"))

    _, grant = estate.approved_grant()
    r = estate.call(
        "admin2", "POST", f"/api/v1/grants/{grant['id']}/revoke", json={"reason": "DUA breach"}
    )
    assert r.status_code == 200, r.text
    for who in ("researcher", "pub-sm"):
        assert ("grant-revoked", grant["request_id"], grant["id"]) in kinds(estate, who), who
    for who in ("quality", "pub-rv", "admin1"):
        assert all(k != "grant-revoked" for k, _, _ in kinds(estate, who)), who
    revoked = next(n for n in inbox(estate, "researcher")["items"] if n["kind"] == "grant-revoked")
    assert revoked["link"] == "/console/my/grants" and "DUA breach" not in revoked["body"]


def test_a_refused_change_writes_no_notification(estate):
    """The notification commits with its change: four eyes refuses, nothing is told."""
    dua = estate.dua(organization="quality-team")
    rid = estate.request("dual", dua_id=dua["id"]).json()["id"]
    assert_problem(estate.approve(rid, who="dual"), 403)
    assert estate.approve(rid, who="admin1").status_code == 200
    assert_problem(estate.approve(rid, who="admin2"), 409)  # already approved
    approvals = [k for k in kinds(estate, "dual") if k[0] == "request-approved"]
    assert approvals == [("request-approved", rid, None)]
    # The requester (also an admin) is not told of its own filing.
    assert ("request-filed", rid, None) not in kinds(estate, "dual")
    assert ("request-filed", rid, None) in kinds(estate, "admin1")


def test_deprecation_reaches_grantees_and_owners(estate, engine, clock):
    estate.approved_grant()
    body = {
        "version": "1.0.0",
        "columns": [{"name": "patient_id", "type": "string", "classification": "none"}],
        "tiers": ["deidentified"],
    }
    base = "/api/v1/products/st-marys/patients/versions"
    assert estate.call("root", "POST", base, json=body).status_code == 201
    # Deprecating a draft is refused; mark it published the way a publish would.
    from catalog.products.models import ProductVersion, VersionStatus

    with Session(engine) as session:
        version = session.exec(select(ProductVersion)).one()
        version.status = VersionStatus.PUBLISHED
        session.add(version)
        session.commit()
    estate.deprecate("1.0.0", "superseded by 2.0.0", who="pub-sm")
    got = [n for n in inbox(estate, "researcher")["items"] if n["kind"] == "version-deprecated"]
    assert len(got) == 1
    assert got[0]["title"] == "st-marys/patients 1.0.0 deprecated"
    assert "served until" in got[0]["body"] and "superseded" not in got[0]["body"]
    # The publisher acted: not told. Another org without a grant: not told.
    assert all(n["kind"] != "version-deprecated" for n in inbox(estate, "pub-sm")["items"])
    assert all(n["kind"] != "version-deprecated" for n in inbox(estate, "quality")["items"])
    # Retiring the product retires the version: told again, through the same listener.
    r = estate.call(
        "root", "POST", "/api/v1/products/st-marys/patients/retire", json={"reason": "closed"}
    )
    assert r.status_code == 200, r.text
    retired = [n for n in inbox(estate, "researcher")["items"] if n["kind"] == "version-retired"]
    assert [n["title"] for n in retired] == ["st-marys/patients 1.0.0 retired"]
    assert "version-retired" in [n["kind"] for n in inbox(estate, "pub-sm")["items"]]


def test_a_notification_commits_and_rolls_back_with_its_change(estate, engine, clock):
    """Written in the change's own transaction: rolled back together, committed together."""
    from catalog.audit.record import Operator
    from policies.requests import service as requests

    dua = estate.dua()
    rid = estate.request(dua_id=dua["id"]).json()["id"]
    operator = Operator("cli:operator")
    with Session(engine) as session:
        requests.deny_request(session, rid, reason="not now", actor=operator, clock=clock)
        assert session.exec(select(Notification).where(Notification.kind == "request-denied")).all()
        session.rollback()
    assert ("request-denied", rid, None) not in kinds(estate, "researcher")
    with Session(engine) as session:
        requests.deny_request(session, rid, reason="not now", actor=operator, clock=clock)
        session.commit()
    assert ("request-denied", rid, None) in kinds(estate, "researcher")
