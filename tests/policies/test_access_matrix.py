"""The governance matrix through the HTTP API with real tokens: who may do what, and why not."""

from datetime import timedelta

import pytest

from tests.problems import assert_problem

# --- minimum necessary: DUA state x tier x purpose ------------------------------------------------

DUA_STATES = {
    "active-deid": {},
    "active-limited": {"tiers": ["deidentified", "limited"]},
    "active-full-qi": {
        "tiers": ["deidentified", "limited", "full"],
        "purpose": "quality-improvement",
    },
    "active-full-research": {"tiers": ["deidentified", "limited", "full"]},
    "expired": {"__expired": True},
    "not-yet-effective": {"__future": True},
    "revoked": {"__revoked": True},
    "other-coverage": {"coverage": ["riverside/*"]},
}

# (dua state, tier, request purpose, expected status, reason fragment)
MATRIX = [
    ("active-deid", "deidentified", "research", 201, None),
    ("active-deid", "limited", "research", 403, "does not permit the limited tier"),
    ("active-deid", "full", "research", 403, "does not permit the full tier"),
    ("active-deid", "deidentified", "quality-improvement", 403, "purpose differs from the DUA"),
    ("active-limited", "deidentified", "research", 201, None),
    ("active-limited", "limited", "research", 201, None),
    ("active-limited", "full", "research", 403, "does not permit the full tier"),
    ("active-full-qi", "full", "quality-improvement", 201, None),
    ("active-full-qi", "limited", "quality-improvement", 201, None),
    (
        "active-full-research",
        "full",
        "research",
        403,
        "needs purpose operations or quality-improvement",
    ),
    ("active-full-research", "limited", "research", 201, None),
    ("expired", "deidentified", "research", 403, "not in force"),
    ("not-yet-effective", "deidentified", "research", 403, "not in force"),
    ("revoked", "deidentified", "research", 403, "not in force"),
    ("other-coverage", "deidentified", "research", 403, "does not cover the product"),
]


def make_dua(estate, state):
    spec = dict(DUA_STATES[state])
    now = estate.clock.now()
    if spec.pop("__expired", False):
        spec |= {
            "effective_from": (now - timedelta(days=400)).isoformat(),
            "expires_at": (now - timedelta(days=1)).isoformat(),
        }
    if spec.pop("__future", False):
        spec |= {
            "effective_from": (now + timedelta(days=10)).isoformat(),
            "expires_at": (now + timedelta(days=400)).isoformat(),
        }
    revoke = spec.pop("__revoked", False)
    dua = estate.dua(**spec)
    if revoke:
        r = estate.call(
            "root", "POST", f"/api/v1/duas/{dua['id']}/revoke", json={"reason": "study halted"}
        )
        assert r.status_code == 200
    return dua


@pytest.mark.parametrize(
    ("state", "tier", "purpose", "status", "reason"),
    MATRIX,
    ids=[f"{m[0]}-{m[1]}-{m[2]}" for m in MATRIX],
)
def test_minimum_necessary(estate, state, tier, purpose, status, reason):
    dua = make_dua(estate, state)
    r = estate.request(dua_id=dua["id"], tier=tier, purpose=purpose)
    assert r.status_code == status, r.text
    if reason:
        body = r.json()
        assert body["type"].endswith("/policy-refused")
        assert body["errorCode"] == "PERMISSION_DENIED"
        assert reason in body["detail"]


def test_dua_of_another_organization_is_not_found(estate):
    dua = estate.dua(organization="quality-team", purpose="quality-improvement")
    r = estate.request(dua_id=dua["id"], purpose="quality-improvement")
    assert_problem(r, 404)


# --- roles x actions ------------------------------------------------------------------------------

ROLE_MATRIX = [
    # (who, method, path, body, expected status)
    ("researcher", "GET", "/api/v1/products", None, 200),
    ("pub-sm", "GET", "/api/v1/products", None, 200),
    ("auditor1", "GET", "/api/v1/products", None, 200),
    ("researcher", "POST", "/api/v1/domains", {"name": "x"}, 403),
    ("pub-sm", "POST", "/api/v1/domains", {"name": "x"}, 403),
    ("pub-sm", "POST", "/api/v1/domains/st-marys/products", "product", 201),
    ("pub-sm", "POST", "/api/v1/domains/riverside/products", "product", 403),
    ("pub-rv", "POST", "/api/v1/domains/riverside/products", "product", 201),
    ("researcher", "POST", "/api/v1/domains/st-marys/products", "product", 403),
    ("admin1", "POST", "/api/v1/domains/riverside/products", "product", 201),
    ("pub-sm", "GET", "/api/v1/products/st-marys/patients/quarantine", None, 200),
    ("pub-sm", "GET", "/api/v1/products/riverside/vitals/quarantine", None, 403),
    ("researcher", "GET", "/api/v1/products/st-marys/patients/quarantine", None, 403),
    ("researcher", "GET", "/api/v1/principals", None, 403),
    ("auditor1", "GET", "/api/v1/principals", None, 200),
    ("pub-sm", "POST", "/api/v1/duas", "dua", 403),
    ("auditor1", "POST", "/api/v1/duas", "dua", 403),
    (
        "researcher",
        "POST",
        "/api/v1/organizations",
        {"name": "x", "title": "X", "contact_email": "a@b.org"},
        403,
    ),
    ("auditor1", "GET", "/api/v1/grants", None, 200),
    ("researcher", "GET", "/api/v1/grants", None, 200),
    ("pub-sm", "GET", "/api/v1/grants", None, 403),
]


@pytest.mark.parametrize(
    ("who", "method", "path", "body", "status"),
    ROLE_MATRIX,
    ids=[f"{m[0]}-{m[1]}-{m[2]}" for m in ROLE_MATRIX],
)
def test_roles(estate, who, method, path, body, status):
    from tests.factories import product_body

    if body == "product":
        body = product_body("new-product")
    elif body == "dua":
        body = {"organization": "research-lab"}
    r = (
        estate.call(who, method, path, json=body)
        if body is not None
        else estate.call(who, method, path)
    )
    assert r.status_code == status, r.text
    if status == 403:
        problem = r.json()
        assert problem["type"].endswith("/forbidden")
        assert problem["detail"].startswith("missing permission")


# --- request states x decisions -------------------------------------------------------------------


def filed(estate, **kw):
    dua = estate.dua(tiers=["deidentified", "limited"])
    r = estate.request(dua_id=dua["id"], **kw)
    assert r.status_code == 201, r.text
    return r.json()


DECISIONS = [
    # (state before, who, action, body, expected status)
    ("pending", "admin1", "approve", {}, 200),
    ("pending", "admin1", "deny", {"reason": "not enough justification"}, 200),
    ("pending", "admin1", "deny", {}, 400),
    ("pending", "researcher", "withdraw", None, 200),
    ("pending", "quality", "withdraw", None, 404),
    ("pending", "pub-sm", "approve", {}, 403),
    ("pending", "auditor1", "approve", {}, 403),
    ("pending", "researcher", "approve", {}, 403),
    ("approved", "admin2", "approve", {}, 409),
    ("approved", "admin2", "deny", {"reason": "too late"}, 409),
    ("approved", "researcher", "withdraw", None, 409),
    ("denied", "admin1", "approve", {}, 409),
    ("withdrawn", "admin1", "approve", {}, 409),
]


@pytest.mark.parametrize(
    ("state", "who", "action", "body", "status"),
    DECISIONS,
    ids=[f"{d[0]}-{d[1]}-{d[2]}-{d[4]}" for d in DECISIONS],
)
def test_request_decisions(estate, state, who, action, body, status):
    request = filed(estate)
    rid = request["id"]
    setup = {
        "approved": ("admin1", "approve", {}),
        "denied": ("admin1", "deny", {"reason": "no"}),
        "withdrawn": ("researcher", "withdraw", None),
    }
    if state in setup:
        by, act, payload = setup[state]
        assert (
            estate.call(
                by, "POST", f"/api/v1/access-requests/{rid}/{act}", json=payload
            ).status_code
            == 200
        )
    r = estate.call(who, "POST", f"/api/v1/access-requests/{rid}/{action}", json=body)
    assert r.status_code == status, r.text


def test_approving_twice_makes_one_grant(estate):
    rid = filed(estate, products=("st-marys/patients", "labs/lab-results"))["id"]
    first = estate.call("admin1", "POST", f"/api/v1/access-requests/{rid}/approve", json={})
    second = estate.call("admin2", "POST", f"/api/v1/access-requests/{rid}/approve", json={})
    assert first.status_code == 200, first.text
    assert_problem(second, 409)
    grants = estate.call("root", "GET", "/api/v1/grants").json()["items"]
    assert sorted(g["product"] for g in grants) == ["labs/lab-results", "st-marys/patients"]
