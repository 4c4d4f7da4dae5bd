"""A caller learns nothing about what it may not see: same answer whether it exists or not."""

import pytest

FILTERS = [
    ("/api/v1/duas", "organization"),
    ("/api/v1/grants", "consumer"),
    ("/api/v1/access-requests", "consumer"),
]


@pytest.mark.parametrize(("path", "param"), FILTERS)
def test_filters_naming_other_or_unknown_organisations_answer_the_same(estate, path, param):
    dua = estate.dua(organization="quality-team", purpose="quality-improvement")
    rid = estate.request("quality", dua_id=dua["id"], purpose="quality-improvement").json()["id"]
    assert (
        estate.call("admin1", "POST", f"/api/v1/access-requests/{rid}/approve", json={}).status_code
        == 200
    )
    real = estate.call("researcher", "GET", path, params={param: "quality-team"})
    unknown = estate.call("researcher", "GET", path, params={param: "no-such-org"})
    assert (real.status_code, real.json()) == (200, {"items": [], "next_cursor": None})
    assert (unknown.status_code, unknown.json()) == (real.status_code, real.json())
    # A reviewer still filters; an unknown organisation is an empty page for it too.
    seen = estate.call("admin1", "GET", path, params={param: "quality-team"}).json()["items"]
    assert seen and all(i["organization"] == "quality-team" for i in seen)
    nothing = estate.call("admin1", "GET", path, params={param: "no-such-org"})
    assert (nothing.status_code, nothing.json()["items"]) == (200, [])


@pytest.mark.parametrize("path", ["/api/v1/grants", "/api/v1/access-requests"])
def test_an_unknown_product_filter_is_an_empty_page(estate, path):
    r = estate.call("researcher", "GET", path, params={"product": "nowhere/nothing"})
    assert (r.status_code, r.json()["items"]) == (200, [])


def test_revoking_another_principals_token_looks_like_a_missing_one(estate):
    issued = estate.call("root", "POST", "/api/v1/principals/quality/tokens", json={"days": 1})
    assert issued.status_code == 201, issued.text
    real_id = issued.json()["id"]
    real = estate.call("researcher", "POST", f"/api/v1/principals/tokens/{real_id}/revoke")
    unknown = estate.call("researcher", "POST", "/api/v1/principals/tokens/0123456789abcdef/revoke")
    assert real.status_code == unknown.status_code == 404
    assert (
        real.json()["type"] == unknown.json()["type"] == "https://fhir-mesh.dev/problems/not-found"
    )
    assert real.json()["detail"] == f"token {real_id!r} not found"
    assert unknown.json()["detail"] == "token '0123456789abcdef' not found"
    # The token still works; its owner and admins may still revoke it.
    assert (
        estate.call("admin1", "POST", f"/api/v1/principals/tokens/{real_id}/revoke").status_code
        == 200
    )
