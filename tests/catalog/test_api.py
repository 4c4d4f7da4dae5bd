"""The catalog REST API end to end through the real app (both databases)."""

import re

import pytest
from sqlalchemy import create_engine

from catalog.app import create_app
from tests.factories import domain_body, product_body, version_body
from tests.problems import PROBLEM, assert_problem


def seed(client, domain="st-marys", product="patients", versions=("1.0.0",)):
    assert client.post("/api/v1/domains", json=domain_body(domain)).status_code == 201
    assert (
        client.post(f"/api/v1/domains/{domain}/products", json=product_body(product)).status_code
        == 201
    )
    for v in versions:
        r = client.post(f"/api/v1/products/{domain}/{product}/versions", json=version_body(v))
        assert r.status_code == 201, r.text


def test_domains(client, clock):
    r = client.post("/api/v1/domains", json=domain_body("labs", kind="clinical-domain"))
    assert r.status_code == 201
    assert r.json() == {
        **domain_body("labs", kind="clinical-domain"),
        "created_at": "2026-01-15T12:00:00Z",
        "created_by": "env:admin",
        "updated_at": "2026-01-15T12:00:00Z",
        "updated_by": "env:admin",
    }
    assert [d["name"] for d in client.get("/api/v1/domains").json()] == ["labs"]
    assert client.get("/api/v1/domains/labs").json()["kind"] == "clinical-domain"
    body = assert_problem(
        client.post("/api/v1/domains", json=domain_body("labs")),
        409,
        "conflict",
        "domain 'labs' already exists",
    )
    assert body["errorCode"] == "ALREADY_EXISTS"
    assert_problem(
        client.get("/api/v1/domains/ghost"), 404, "not-found", "domain 'ghost' not found"
    )


def test_product_and_versions(client):
    seed(client, versions=("1.0.0", "1.1.0"))
    detail = client.get("/api/v1/products/st-marys/patients").json()
    assert detail["latest_version"] == "1.1.0"
    assert [v["version"] for v in detail["versions"]] == ["1.1.0", "1.0.0"]
    assert detail["tiers"] == ["deidentified", "limited", "full"]
    version = client.get("/api/v1/products/st-marys/patients/versions/1.0.0").json()
    assert version["status"] == "draft"
    assert version["columns"][0] == {
        "name": "patient_id",
        "type": "string",
        "nullable": False,
        "classification": "direct_identifier",
        "description": "",
        "surrogate": None,
        "code_system": None,
        "allowed_values": None,
        "fhir_type": None,
        "references": None,
    }
    assert version["sla"] == {
        "freshness": "4h",
        "freshness_column": "birth_date",
        "max_quarantined_percent": 5.0,
        "max_findings_percent": 5.0,
        "max_orphan_percent": 0.0,
        "max_duplicate_percent": 100.0,
        "completeness": [{"column": "birth_date", "min_percent": 98.0}],
        "availability_percent": 99.5,
    }
    assert version["delta_location"] is None and version["tier_tables"] is None


def test_validation_problem_lists_field_paths(client):
    seed(client)
    body = version_body("1.2.0")
    body["columns"][1]["type"] = "datetime"
    body["tiers"] = ["secret"]
    problem = assert_problem(
        client.post("/api/v1/products/st-marys/patients/versions", json=body),
        422,
        "validation-error",
    )
    paths = {e["path"] for e in problem["errors"]}
    assert paths == {"columns.1.type", "tiers.0"}
    assert problem["errorCode"] == "INVALID_PARAMETER_VALUE"


@pytest.mark.parametrize("version", ["1.0", "v1.2.0", "1.2.03", "1.2.0-rc1"])
def test_invalid_semver_is_422(client, version):
    seed(client)
    problem = assert_problem(
        client.post("/api/v1/products/st-marys/patients/versions", json=version_body(version)),
        422,
        "validation-error",
    )
    assert problem["errors"][0]["path"] == "version"
    assert "MAJOR.MINOR.PATCH" in problem["errors"][0]["message"]


def test_breaking_change_without_major_bump_is_422(client):
    seed(client)
    body = version_body("1.1.0")
    body["columns"] = body["columns"][:2]
    problem = assert_problem(
        client.post("/api/v1/products/st-marys/patients/versions", json=body),
        422,
        "breaking-change",
    )
    assert problem["errors"] == [
        {"path": "columns.heart_rate", "message": "column 'heart_rate' removed"}
    ]
    body["version"] = "2.0.0"
    assert client.post("/api/v1/products/st-marys/patients/versions", json=body).status_code == 201


def test_duplicates_and_unknowns(client):
    seed(client)
    assert_problem(
        client.post("/api/v1/domains/st-marys/products", json=product_body()),
        409,
        "conflict",
    )
    assert_problem(
        client.post("/api/v1/products/st-marys/patients/versions", json=version_body()),
        409,
        "conflict",
    )
    assert_problem(
        client.post("/api/v1/domains/ghost/products", json=product_body()), 404, "not-found"
    )
    assert_problem(client.get("/api/v1/products/st-marys/ghost"), 404, "not-found")
    assert_problem(
        client.get("/api/v1/products/st-marys/patients/versions/3.0.0"), 404, "not-found"
    )
    assert_problem(client.get("/api/v1/no-such-route"), 404, "not-found")
    assert_problem(client.delete("/api/v1/domains"), 405, "method-not-allowed")


def test_malformed_json_body(client):
    r = client.post(
        "/api/v1/domains", content=b"{not json", headers={"content-type": "application/json"}
    )
    assert r.status_code in (400, 422)
    assert r.headers["content-type"].startswith(PROBLEM)
    assert "Traceback" not in r.text


def test_lifecycle_endpoints_record_who_and_when(client, clock):
    seed(client)
    clock.advance(hours=3)
    r = client.post(
        "/api/v1/products/st-marys/patients/deprecate", json={"reason": "replaced by mpi"}
    )
    assert r.status_code == 200
    body = r.json()
    assert body["status"] == "deprecated"
    assert body["status_reason"] == "replaced by mpi"
    assert body["status_changed_by"] == "env:admin"
    assert body["status_changed_at"] == "2026-01-15T15:00:00Z"
    assert_problem(
        client.post("/api/v1/products/st-marys/patients/deprecate", json={"reason": "again"}),
        409,
        "conflict",
    )
    assert_problem(
        client.post("/api/v1/products/st-marys/patients/retire", json={}), 422, "validation-error"
    )
    assert_problem(
        client.post(
            "/api/v1/products/st-marys/patients/versions/1.0.0/deprecate",
            json={"reason": "drafts cannot"},
        ),
        409,
        "conflict",
    )
    r = client.post(
        "/api/v1/products/st-marys/patients/versions/1.0.0/retire", json={"reason": "never used"}
    )
    assert r.json()["version"]["status"] == "retired"
    assert r.json()["affected_grants"] == []
    assert r.json()["served_until"] == "2026-01-15T15:00:00Z"
    r = client.post("/api/v1/products/st-marys/patients/retire", json={"reason": "decommissioned"})
    assert r.json()["status"] == "retired"


def test_search_pagination_and_filters(client):
    for domain in ("labs", "riverside"):
        client.post("/api/v1/domains", json=domain_body(domain))
    for i in range(7):
        domain = "labs" if i % 2 else "riverside"
        client.post(
            f"/api/v1/domains/{domain}/products",
            json=product_body(f"product-{i}", tags=[f"t{i % 3}"]),
        )
    client.post("/api/v1/products/labs/product-1/versions", json=version_body(tiers=["limited"]))

    seen, cursor = [], None
    while True:
        params = {"limit": 3} | ({"cursor": cursor} if cursor else {})
        page = client.get("/api/v1/products", params=params).json()
        assert len(page["items"]) <= 3
        seen += [f"{p['domain']}/{p['name']}" for p in page["items"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert seen == sorted(seen) and len(seen) == 7

    def names(**params):
        return [p["name"] for p in client.get("/api/v1/products", params=params).json()["items"]]

    assert names(domain="labs") == ["product-1", "product-3", "product-5"]
    assert names(tag="t0") == ["product-3", "product-0", "product-6"]
    assert names(tier="limited") == ["product-1"]
    assert names(q="PRODUCT-4") == ["product-4"]
    assert names(status="active", domain="labs", tag="t1") == ["product-1"]
    assert_problem(
        client.get("/api/v1/products", params={"cursor": "garbage"}), 400, "invalid-parameter"
    )
    assert_problem(client.get("/api/v1/products", params={"limit": 0}), 422, "validation-error")
    assert_problem(
        client.get("/api/v1/products", params={"limit": 100000}),
        400,
        "invalid-parameter",
        "limit must be at most 500",
    )
    assert_problem(
        client.get("/api/v1/products", params={"tier": "secret"}), 422, "validation-error"
    )


def test_openapi_docs_and_probes(client):
    spec = client.get("/schema/openapi.json").json()
    assert spec["info"]["title"] == "FHIR Mesh"
    assert "/api/v1/products/{domain}/{name}/versions/{version}" in spec["paths"]
    assert client.get("/schema").status_code == 200
    assert client.get("/healthz").json() == {"status": "ok"}
    assert client.get("/readyz").json() == {"status": "ready"}


def test_readyz_reports_unreachable_database(settings, tmp_path):
    broken = create_engine(f"sqlite:///{tmp_path}/missing-dir/nope/catalog.db")
    from litestar.testing import TestClient

    with TestClient(create_app(settings, engine=broken)) as c:
        response = c.get("/readyz")
    assert_problem(response, 503, "unavailable")
    assert str(tmp_path) not in response.text


def test_the_openapi_document_describes_request_bodies_as_the_server_checks_them(client):
    """Patterns and closed bodies (`extra="forbid"`) are in the document, and hold."""
    body = client.get("/schema/openapi.json").json()["components"]["schemas"]["DomainCreate"]
    assert body["additionalProperties"] is False
    name_pattern = body["properties"]["name"]["pattern"]
    assert re.fullmatch(name_pattern, "st-marys") and not re.fullmatch(name_pattern, "St_Marys")
    assert_problem(client.post("/api/v1/domains", json=domain_body("St_Marys")), 422)
    extra = domain_body("riverside") | {"owner": "someone"}
    assert_problem(client.post("/api/v1/domains", json=extra), 422)
    assert client.post("/api/v1/domains", json=domain_body("riverside")).status_code == 201
