"""Inputs the fuzzer once turned into 500s: each now gets a clear 4xx."""

from tests.problems import assert_protocol_error


def test_options_on_a_guarded_route_is_not_a_server_error(client):
    r = client.options("/api/v1/domains")
    assert r.status_code < 500


def test_audit_times_outside_utc_are_refused(client):
    r = client.get("/api/v1/audit", params={"since": "0001-01-01T00:00:00+00:01"})
    assert r.status_code in (400, 422)
    assert r.headers["content-type"].startswith("application/problem+json")
    assert "range" in r.json()["detail"]


def test_non_ascii_page_tokens_and_signatures_are_refused(client):
    r = client.get("/delta-sharing/shares", params={"pageToken": "x.é"})
    assert r.status_code in (400, 401)  # never a 500, whatever is checked first
    f = client.get(
        "/delta-sharing/files/products/x/y/z/part.parquet",
        params={"X-Mesh-Recipient": "r", "X-Amz-Expires": "99999999999", "X-Amz-Signature": "é"},
    )
    assert_protocol_error(f, 403)
