"""A grant an approval creates is one every read serves: one rule set over the same fields."""

from sqlmodel import Session

from catalog.kernel.clock import SystemClock
from policies.duas.service import get_dua
from policies.enforcer import PolicyEngine
from policies.grants.models import Grant
from policies.minimum_necessary import check_grant
from policies.models import Purpose
from policies.requests.models import AccessRequest
from tests.problems import assert_problem

JUSTIFICATION = "Cohort study of sepsis outcomes across the network"


def _full_request(estate) -> tuple[int, int]:
    dua = estate.dua(organization="quality-team", purpose="quality-improvement", tiers=["full"])
    r = estate.request("quality", dua_id=dua["id"], tier="full", purpose="quality-improvement")
    assert r.status_code == 201, r.text
    return int(r.json()["id"]), int(dua["id"])


def test_a_short_approval_reason_leaves_the_grant_servable(estate, engine):
    rid, _ = _full_request(estate)
    r = estate.call(
        "admin1", "POST", f"/api/v1/access-requests/{rid}/approve", json={"reason": "ok"}
    )
    assert r.status_code == 200, r.text
    item = r.json()["items"][0]
    assert item["state"] == "active"
    assert (item["justification"], item["approval_reason"]) == (JUSTIFICATION, "ok")
    # The read-time rule (sharing's) over the stored grant allows it.
    policy = PolicyEngine(engine, SystemClock(), refresh_seconds=0)
    with Session(engine) as s:
        grant = s.get(Grant, item["id"])
        assert grant is not None
        request = s.get(AccessRequest, grant.request_id)
        assert request is not None
        check_grant(
            policy,
            grant,
            get_dua(s, grant.dua_id),
            purpose=Purpose(request.purpose),
            product=item["product"],
            now=estate.clock.now(),
        )


def test_an_approval_the_reads_would_refuse_is_refused_naming_the_rule(estate):
    rid, dua_id = _full_request(estate)
    revoked = estate.call(
        "root", "POST", f"/api/v1/duas/{dua_id}/revoke", json={"reason": "IRB withdrew it"}
    )
    assert revoked.status_code == 200, revoked.text
    r = estate.approve(rid, reason="approved by the QI committee")
    assert_problem(r, 403, "policy-refused")
    body = r.json()
    assert body["type"] == "https://fhir-mesh.dev/problems/policy-refused"
    assert "the DUA is not in force" in body["detail"]
    after = estate.call("admin1", "GET", f"/api/v1/access-requests/{rid}").json()
    assert after["status"] == "pending"
    grants = estate.call("admin1", "GET", "/api/v1/grants").json()["items"]
    assert [g for g in grants if g["request_id"] == rid] == []
