"""Four eyes, expiry on an injected clock, DUA revocation, publisher scope, authentication."""

import json
import time
from datetime import timedelta

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa
from litestar.testing import TestClient

from catalog.app import create_app
from catalog.products import service as products
from catalog.products.models import VersionStatus
from tests.factories import version_body
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


def test_grant_expiry_review_and_suspension_follow_the_clock(estate, clock):
    dua, grant = estate.approved_grant(
        reason=IRB, expires_at=(clock.now() + timedelta(days=200)).isoformat()
    )
    assert grant["state"] == "active"
    assert grant["expires_at"] == dua["expires_at"]  # 365 days asked, the DUA ends first
    gid = grant["id"]

    def state():
        return estate.call("root", "GET", f"/api/v1/grants/{gid}").json()["state"]

    clock.advance(days=91)
    assert state() == "review-due"
    overdue = estate.call("root", "GET", "/api/v1/grants", params={"state": "review-due"}).json()[
        "items"
    ]
    assert [g["id"] for g in overdue] == [gid]
    clock.advance(days=14)
    assert state() == "suspended"
    # (the principals' 30-day tokens have expired by now; the bootstrap admin reviews)
    reviewed = estate.call(
        "root", "POST", f"/api/v1/grants/{gid}/review", json={"reason": "annual review done"}
    )
    assert reviewed.json()["state"] == "active"
    clock.advance(days=100)
    assert state() == "expired"  # the DUA's expiry bounds the grant


def test_grant_never_outlives_its_dua(estate, clock):
    dua = estate.dua(expires_at=(clock.now() + timedelta(days=30)).isoformat())
    rid = estate.request(dua_id=dua["id"], days=365).json()["id"]
    grant = estate.call("admin1", "POST", f"/api/v1/access-requests/{rid}/approve", json={}).json()[
        "items"
    ][0]
    assert (
        grant["expires_at"]
        == estate.call("root", "GET", "/api/v1/duas").json()["items"][0]["expires_at"]
    )


def test_dua_revocation_ends_its_grants_and_revoke_is_immediate(estate):
    dua, grant = estate.approved_grant(reason=IRB)
    _, other = estate.approved_grant(reason=IRB, title="Second study")
    r = estate.call(
        "root", "POST", f"/api/v1/duas/{dua['id']}/revoke", json={"reason": "consent withdrawn"}
    )
    assert r.status_code == 200 and r.json()["active"] is False
    assert (
        estate.call("root", "GET", f"/api/v1/grants/{grant['id']}").json()["state"] == "dua-ended"
    )
    assert estate.call("root", "GET", f"/api/v1/grants/{other['id']}").json()["state"] == "active"
    revoked = estate.call(
        "admin2", "POST", f"/api/v1/grants/{other['id']}/revoke", json={"reason": "misuse"}
    )
    assert revoked.json()["state"] == "revoked"
    assert (
        estate.call(
            "admin2", "POST", f"/api/v1/grants/{other['id']}/revoke", json={"reason": "again"}
        ).status_code
        == 409
    )


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


def test_publisher_scope_on_catalog_writes(estate):
    ok = estate.call(
        "pub-sm", "POST", "/api/v1/products/st-marys/patients/versions", json=version_body()
    )
    assert ok.status_code == 201
    other = estate.call(
        "pub-sm", "POST", "/api/v1/products/riverside/vitals/versions", json=version_body()
    )
    assert_problem(other, 403)
    assert other.json()["detail"] == "missing permission product:write in domain 'riverside'"
    publish = estate.call(
        "pub-sm",
        "POST",
        "/api/v1/products/riverside/vitals/versions/1.0.0/publish",
        json={"source": "/x"},
    )
    assert_problem(publish, 403)


def test_deprecation_notifies_grant_holders(estate, session):
    estate.call("root", "POST", "/api/v1/products/st-marys/patients/versions", json=version_body())
    version = products.get_version(session, "st-marys", "patients", "1.0.0")
    version.status = VersionStatus.PUBLISHED
    session.commit()
    _, grant = estate.approved_grant(reason=IRB)
    r = estate.call(
        "pub-sm",
        "POST",
        "/api/v1/products/st-marys/patients/versions/1.0.0/deprecate",
        json={"reason": "replaced by 2.0.0"},
    )
    assert r.status_code == 200, r.text
    assert r.json()["affected_grants"] == [grant["id"]]
    notices = estate.call("researcher", "GET", "/api/v1/grants").json()["items"][0]["notices"]
    assert len(notices) == 1
    assert notices[0]["message"].startswith(
        "version 1.0.0 was deprecated: replaced by 2.0.0; served until "
    )


# --- authentication -------------------------------------------------------------------------------


def test_anonymous_and_bad_tokens_get_401(estate, clock):
    anonymous = estate.client.get("/api/v1/products")
    assert_problem(anonymous, 401)
    assert anonymous.headers["www-authenticate"].startswith("Bearer")
    assert anonymous.json()["type"].endswith("/unauthenticated")
    for token in (
        "nonsense",
        "mesh_",
        "mesh_abc_def",
        estate.tokens["researcher"][:-1] + "x",
        estate.tokens["researcher"][:20],
    ):
        r = estate.client.get("/api/v1/products", headers={"Authorization": f"Bearer {token}"})
        assert_problem(r, 401)
        assert r.json()["detail"] == "missing, invalid, expired or revoked credentials"
    assert estate.client.get("/healthz").status_code == 200
    assert estate.client.get("/schema/openapi.json").status_code == 200


def test_token_expiry_revocation_and_disabling(estate, clock):
    issued = estate.call(
        "researcher", "POST", "/api/v1/principals/researcher/tokens", json={"days": 1}
    ).json()
    headers = {"Authorization": f"Bearer {issued['token']}"}
    assert estate.client.get("/api/v1/products", headers=headers).status_code == 200
    clock.advance(days=1, seconds=1)
    assert_problem(estate.client.get("/api/v1/products", headers=headers), 401)
    other = estate.call(
        "researcher", "POST", "/api/v1/principals/researcher/tokens", json={}
    ).json()
    r = estate.call("researcher", "POST", f"/api/v1/principals/tokens/{other['id']}/revoke")
    assert r.status_code == 200
    assert (
        estate.client.get(
            "/api/v1/products", headers={"Authorization": f"Bearer {other['token']}"}
        ).status_code
        == 401
    )
    assert (
        estate.call("quality", "POST", "/api/v1/principals/researcher/tokens", json={}).status_code
        == 403
    )
    d = estate.call(
        "admin1", "POST", "/api/v1/principals/researcher/disable", json={"reason": "left the lab"}
    )
    assert d.status_code == 200 and d.json()["disabled"] is True
    assert_problem(estate.call("researcher", "GET", "/api/v1/products"), 401)


def test_policy_change_reaches_a_second_process(settings, engine, clock, estate):
    """The second process's next request sees the change (one governance revision, read as the
    request is authenticated), however long its refresh interval."""
    other_settings = settings.model_copy(update={"policy_refresh_seconds": 2.0})
    with TestClient(create_app(other_settings, engine=engine, clock=clock)) as second:
        headers = {"Authorization": f"Bearer {estate.tokens['pub-sm']}"}
        body = version_body()
        assert (
            second.post(
                "/api/v1/products/riverside/vitals/versions", json=body, headers=headers
            ).status_code
            == 403
        )
        # Through the first process, make pub-sm a publisher of riverside as well.
        from sqlmodel import Session

        from policies.enforcer import add_rule, role_subject, user_subject

        with Session(engine) as s:
            add_rule(
                s,
                "g",
                [user_subject("pub-sm"), role_subject("publisher"), "riverside"],
                now=clock.now(),
            )
            s.commit()
        assert (
            second.post(
                "/api/v1/products/riverside/vitals/versions", json=body, headers=headers
            ).status_code
            == 201
        )


def test_oidc_jwt(settings, engine, clock, estate):
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    jwk = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(key.public_key()))
    jwk |= {"kid": "test-key", "use": "sig", "alg": "RS256"}
    oidc = settings.model_copy(
        update={
            "oidc_issuer": "https://idp.example.org",
            "oidc_audience": "fhir-mesh",
            "oidc_jwks": json.dumps({"keys": [jwk]}),
        }
    )

    def token(sub="researcher", **claims):
        now = int(time.time())
        payload = {
            "iss": "https://idp.example.org",
            "aud": "fhir-mesh",
            "sub": sub,
            "iat": now,
            "exp": now + 300,
        } | claims
        return jwt.encode(payload, key, algorithm="RS256", headers={"kid": "test-key"})

    with TestClient(create_app(oidc, engine=engine, clock=clock)) as c:

        def get(t):
            return c.get("/api/v1/grants", headers={"Authorization": f"Bearer {t}"}).status_code

        assert get(token()) == 200
        assert get(token(sub="nobody")) == 401
        assert get(token(aud="other")) == 401
        assert get(token(iss="https://evil.example.org")) == 401
        assert get(token(exp=int(time.time()) - 3600)) == 401
        other_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        forged = jwt.encode(
            {
                "iss": "https://idp.example.org",
                "aud": "fhir-mesh",
                "sub": "admin1",
                "exp": int(time.time()) + 60,
            },
            other_key,
            algorithm="RS256",
            headers={"kid": "test-key"},
        )
        assert get(forged) == 401


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
