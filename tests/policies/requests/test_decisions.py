"""Access-request decisions: four eyes, reasons, who sees which request, one set of grants under contention."""

import pytest

from tests.problems import assert_problem

IRB = "IRB approved"


def test_four_eyes(estate):
    dua = estate.dua(organization="quality-team", purpose="quality-improvement")
    r = estate.request("dual", dua_id=dua["id"], purpose="quality-improvement")
    assert r.status_code == 201, r.text
    rid = r.json()["id"]
    own = estate.call("dual", "POST", f"/api/v1/access-requests/{rid}/approve", json={})
    assert_problem(own, 403)
    assert "four-eyes" in own.json()["detail"]
    assert (
        estate.call("admin1", "POST", f"/api/v1/access-requests/{rid}/approve", json={}).status_code
        == 200
    )


def test_full_tier_approval_needs_a_reason(estate):
    dua = estate.dua(organization="quality-team", purpose="quality-improvement", tiers=["full"])
    rid = estate.request(
        "quality", dua_id=dua["id"], tier="full", purpose="quality-improvement"
    ).json()["id"]
    bare = estate.approve(rid)
    assert_problem(bare, 400)
    ok = estate.approve(rid, reason="Sepsis bundle compliance audit, QI committee minute 12")
    assert ok.status_code == 200
    grant = ok.json()["items"][0]
    assert grant["approval_reason"].startswith("Sepsis bundle")
    assert grant["justification"] == "Cohort study of sepsis outcomes across the network"


def test_consumers_see_only_their_own(estate):
    estate.approved_grant(reason=IRB)
    assert len(estate.call("researcher", "GET", "/api/v1/grants").json()["items"]) == 1
    assert estate.call("quality", "GET", "/api/v1/grants").json()["items"] == []
    assert len(estate.call("researcher", "GET", "/api/v1/access-requests").json()["items"]) == 1
    assert estate.call("quality", "GET", "/api/v1/access-requests").json()["items"] == []
    assert_problem(estate.call("quality", "GET", "/api/v1/access-requests/1"), 404)
    assert_problem(estate.call("quality", "GET", "/api/v1/grants/1"), 404)
    assert estate.call("quality", "GET", "/api/v1/duas").json()["items"] == []


def test_publishers_see_and_comment_on_requests_for_their_products_only(estate):
    dua = estate.dua(coverage=["*/*"])
    rid = estate.request(dua_id=dua["id"], products=["st-marys/patients"]).json()["id"]
    assert estate.call("pub-sm", "GET", f"/api/v1/access-requests/{rid}").status_code == 200
    assert [
        r["id"] for r in estate.call("pub-sm", "GET", "/api/v1/access-requests").json()["items"]
    ] == [rid]
    assert_problem(estate.call("pub-rv", "GET", f"/api/v1/access-requests/{rid}"), 404)
    assert estate.call("pub-rv", "GET", "/api/v1/access-requests").json()["items"] == []
    c = estate.call(
        "pub-sm",
        "POST",
        f"/api/v1/access-requests/{rid}/comments",
        json={"body": "Data is ready; note the MRN change in March."},
    )
    assert c.status_code == 201
    assert (
        estate.call(
            "pub-rv", "POST", f"/api/v1/access-requests/{rid}/comments", json={"body": "x"}
        ).status_code
        == 404
    )
    assert (
        estate.call("pub-sm", "POST", f"/api/v1/access-requests/{rid}/approve", json={}).status_code
        == 403
    )
    shown = estate.call("researcher", "GET", f"/api/v1/access-requests/{rid}").json()
    assert [c["author"] for c in shown["comments"]] == ["pub-sm"]


def test_concurrent_approvals_make_one_set_of_grants(backend, engine, estate, settings, clock):
    """Two admins approve the same request at once (real threads, PostgreSQL): one set of grants."""
    if backend != "postgresql":
        pytest.skip("SQLite has a single writer; PostgreSQL exercises the conditional update")
    import threading

    from sqlmodel import Session, select

    from catalog.audit.record import Operator
    from catalog.kernel.errors import Conflict
    from policies.enforcer import PolicyEngine
    from policies.grants.models import Grant
    from policies.requests.service import approve_request

    dua = estate.dua()
    rid = estate.request(dua_id=dua["id"], products=("st-marys/patients", "labs/lab-results"))
    rid = rid.json()["id"]
    policy = PolicyEngine(engine, clock, refresh_seconds=0)
    barrier = threading.Barrier(2)
    outcomes: list[str] = []

    def approver(name: str) -> None:
        with Session(engine, expire_on_commit=False) as own:
            barrier.wait()
            try:
                approve_request(
                    own,
                    rid,
                    reason=None,
                    actor=Operator(f"cli:{name}"),
                    policy=policy,
                    settings=settings,
                    clock=clock,
                )
                own.commit()
                outcomes.append("approved")
            except Conflict:
                own.rollback()
                outcomes.append("conflict")

    threads = [threading.Thread(target=approver, args=(n,)) for n in ("a", "b")]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert sorted(outcomes) == ["approved", "conflict"]
    with Session(engine) as check:
        grants = check.exec(select(Grant).where(Grant.request_id == rid)).all()
    assert len(grants) == 2  # one per product, once
