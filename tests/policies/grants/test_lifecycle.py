"""Grants over time: expiry, review and suspension on an injected clock, never past their DUA, deprecation notices."""

from datetime import timedelta

from catalog.products import service as products
from catalog.products.models import VersionStatus
from tests.factories import version_body

IRB = "IRB approved"


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


def test_deprecation_notifies_grant_holders(estate, session):
    estate.call("root", "POST", "/api/v1/products/st-marys/patients/versions", json=version_body())
    version = products.get_version(session, "st-marys", "patients", "1.0.0")
    version.status = VersionStatus.PUBLISHED
    session.commit()
    _, grant = estate.approved_grant(reason=IRB)
    deprecated = estate.deprecate("1.0.0", "replaced by 2.0.0", who="pub-sm")
    assert deprecated["affected_grants"] == [grant["id"]]
    notices = estate.call("researcher", "GET", "/api/v1/grants").json()["items"][0]["notices"]
    assert len(notices) == 1
    assert notices[0]["message"].startswith(
        "version 1.0.0 was deprecated: replaced by 2.0.0; served until "
    )


# --- authentication -------------------------------------------------------------------------------
