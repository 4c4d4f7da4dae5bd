"""Revoking a DUA ends its grants at once."""

IRB = "IRB approved"


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
