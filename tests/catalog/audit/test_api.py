"""The audit API and the request context: filters, pagination, who may read, request ids."""

import json
import re
from datetime import timedelta

import pytest
from sqlalchemy import text

from catalog.audit.context import REQUEST_ID_HEADER
from catalog.audit.record import Actor
from catalog.kernel.db import transaction
from tests.catalog.audit.support import entries, record, tamper
from tests.conftest import ADMIN_TOKEN
from tests.factories import domain_body
from tests.problems import assert_problem

SECRET_TOKEN = "mesh_0123456789abcdef_" + "Q" * 43
GENERATED_ID = re.compile(r"^[0-9a-f]{32}$")


def add_principal(client, name, roles, organization=None):
    if organization:
        org = {"name": organization, "title": organization, "contact_email": "a@b.example.org"}
        client.post("/api/v1/organizations", json=org)
    body = {"name": name, "display_name": name, "roles": roles, "organization": organization}
    assert client.post("/api/v1/principals", json=body).status_code == 201
    issued = client.post(f"/api/v1/principals/{name}/tokens", json={"days": 30})
    assert issued.status_code == 201
    return {"Authorization": f"Bearer {issued.json()['token']}"}


# --- request ids ---------------------------------------------------------------------------------


def test_every_response_carries_a_request_id(client):
    ok = client.get("/api/v1/domains")
    unknown = client.get("/api/v1/no-such-thing")
    health = client.get("/healthz")
    sharing = client.get("/delta-sharing/shares", headers={"Authorization": "Bearer nope"})
    anonymous = client.get("/api/v1/domains", headers={"Authorization": ""})
    bad_body = client.post("/api/v1/domains", content=b"{", headers={"Content-Type": "x/y"})
    for response, status in (
        (ok, 200),
        (unknown, 404),
        (health, 200),
        (sharing, 401),
        (anonymous, 401),
        (bad_body, 400),
    ):
        assert response.status_code == status, response.text
        assert GENERATED_ID.match(response.headers[REQUEST_ID_HEADER]), response.headers
    ids = {r.headers[REQUEST_ID_HEADER] for r in (ok, unknown, health, sharing, anonymous)}
    assert len(ids) == 5


@pytest.mark.parametrize(
    ("incoming", "kept"),
    [
        ("trace-01.ABC_x", True),
        ("a" * 64, True),
        ("a" * 65, False),
        ("has space", False),
        ("semi;colon", False),
        ("", False),
    ],
)
def test_a_sane_incoming_request_id_is_kept(client, incoming, kept):
    response = client.get("/healthz", headers={REQUEST_ID_HEADER: incoming})
    returned = response.headers[REQUEST_ID_HEADER]
    assert (returned == incoming) is kept
    if not kept:
        assert GENERATED_ID.match(returned)
    assert response.headers.get_list(REQUEST_ID_HEADER) == [returned]


def test_a_change_records_its_request(client):
    response = client.post(
        "/api/v1/domains",
        json=domain_body("riverside"),
        headers={REQUEST_ID_HEADER: "change-1", "User-Agent": "pytest-agent/1.0"},
    )
    assert response.status_code == 201
    page = client.get("/api/v1/audit", params={"action": "domain.create"}).json()
    [entry] = page["items"]
    assert entry["request_id"] == "change-1"
    assert entry["user_agent"] == "pytest-agent/1.0"
    assert entry["client_address"] == "testclient"
    assert (entry["actor"], entry["subject"], entry["outcome"]) == (
        "env:admin",
        "riverside",
        "success",
    )


# --- authentication and authorization failures --------------------------------------------------


def test_a_401_records_auth_failed_without_the_secret(client, engine):
    refused = client.get("/api/v1/domains", headers={"Authorization": f"Bearer {SECRET_TOKEN}"})
    assert_problem(refused, 401)
    assert refused.json()["type"] == "https://fhir-mesh.dev/problems/unauthenticated"
    anonymous = client.get("/api/v1/products", headers={"Authorization": ""})
    assert_problem(anonymous, 401)

    page = client.get("/api/v1/audit", params={"action": "auth.failed"}).json()
    first, second = reversed(page["items"])
    assert first["request_id"] == refused.headers[REQUEST_ID_HEADER]
    assert (first["actor"], first["outcome"], first["token_id"]) == (
        "anonymous",
        "failed",
        "0123456789abcdef",
    )
    assert (first["subject_type"], first["subject"]) == ("route", "GET /api/v1/domains")
    assert first["details"] == {"presented": "api-token"}
    assert (second["token_id"], second["details"]) == (None, {"presented": "none"})
    with engine.connect() as conn:
        dump = json.dumps(
            [list(r) for r in conn.execute(text("SELECT * FROM audit_event"))], default=str
        )
    assert "Q" * 20 not in dump
    assert ADMIN_TOKEN not in dump


def test_only_auditors_and_platform_admins_read_the_audit_log(client):
    consumer = add_principal(client, "dr-okafor", ["consumer"], organization="sepsis-research")
    auditor = add_principal(client, "compliance", ["auditor"])
    for path in ("/api/v1/audit", "/api/v1/audit/verify", "/api/v1/audit/export"):
        refused = client.get(path, headers=consumer)
        assert_problem(refused, 403)
        body = refused.json()
        assert (body["type"], body["status"], body["errorCode"]) == (
            "https://fhir-mesh.dev/problems/forbidden",
            403,
            "PERMISSION_DENIED",
        )
        assert body["detail"] == "missing permission audit:read in any domain"
        assert client.get(path, headers=auditor).status_code == 200
    denied = client.get("/api/v1/audit", params={"outcome": "denied"}, headers=auditor).json()[
        "items"
    ]
    assert [(e["actor"], e["action"], e["subject"]) for e in denied] == [
        ("dr-okafor", "access.denied", f"GET {path}")
        for path in reversed(("/api/v1/audit", "/api/v1/audit/verify", "/api/v1/audit/export"))
    ]
    assert denied[0]["organization"] == "sepsis-research"
    assert denied[0]["details"] == {"problem": "forbidden", "permission": "audit:read"}
    assert re.match(r"^[0-9a-f]{16}$", denied[0]["token_id"])


# --- queries ---------------------------------------------------------------------------------------


@pytest.fixture
def trail(engine, clock):
    """Sharing reads of two recipients, an admin change and a refusal, one minute apart."""
    start = clock.now()
    rows = [
        ("sepsis-research", "st-marys/patients", "deidentified", "sharing.query", "success"),
        ("sepsis-research", "st-marys/patients", "deidentified", "sharing.file", "success"),
        ("quality-team", "st-marys/patients", "limited", "sharing.query", "success"),
        ("quality-team", "labs/cbc", "limited", "sharing.metadata", "success"),
        ("quality-team", "labs/cbc", "full", "sharing.query", "denied"),
        (None, "st-marys/patients", None, "product.deprecated", "success"),
    ]
    with transaction(engine) as session:
        for organization, product, tier, action, outcome in rows:
            record(
                session,
                clock,
                actor=Actor(organization or "admin1"),
                action=action,
                subject_type="table" if organization else "product",
                subject=product,
                organization=organization,
                product=product,
                tier=tier,
                outcome=outcome,
            )
            clock.advance(minutes=1)
    return start


def ids(response):
    assert response.status_code == 200, response.text
    return [e["id"] for e in response.json()["items"]]


def test_filters(client, trail):
    def query(**params):
        return ids(client.get("/api/v1/audit", params=params))

    assert query() == [6, 5, 4, 3, 2, 1]
    assert query(recipient="quality-team") == [5, 4, 3]
    assert query(product="labs/cbc") == [5, 4]
    assert query(product="") == [6, 5, 4, 3, 2, 1]  # an empty filter is no filter
    assert query(tier="limited") == [4, 3]
    assert query(action="sharing.query") == [5, 3, 1]
    assert query(action="sharing.*") == [5, 4, 3, 2, 1]
    assert query(outcome="denied") == [5]
    assert query(actor="admin1") == [6]
    assert query(recipient="quality-team", outcome="success", tier="limited") == [4, 3]
    since = (trail + timedelta(minutes=1)).isoformat()
    until = (trail + timedelta(minutes=3)).isoformat()
    assert query(since=since, until=until) == [3, 2]


def test_pagination_is_stable_while_entries_are_appended(client, trail, engine, clock):
    first = client.get("/api/v1/audit", params={"limit": 4})
    assert ids(first) == [6, 5, 4, 3]
    with transaction(engine) as session:
        record(session, clock, action="domain.create", subject_type="domain", subject="labs")
    second = client.get("/api/v1/audit", params={"limit": 4, "cursor": first.json()["next_cursor"]})
    assert ids(second) == [2, 1]
    assert second.json()["next_cursor"] is None


@pytest.mark.parametrize(
    "params",
    [
        {"cursor": "not-a-cursor"},
        {"outcome": "maybe"},
        {"product": "no-slash"},
        {"limit": 100000},
    ],
)
def test_bad_parameters_are_400(client, params):
    response = client.get("/api/v1/audit", params=params)
    assert_problem(response, 400)
    body = response.json()
    assert (body["type"], body["errorCode"]) == (
        "https://fhir-mesh.dev/problems/invalid-parameter",
        "INVALID_PARAMETER_VALUE",
    )


def test_export_streams_ndjson_oldest_first(client, trail):
    response = client.get(
        "/api/v1/audit/export", params={"since": (trail + timedelta(minutes=2)).isoformat()}
    )
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("application/x-ndjson")
    lines = [json.loads(line) for line in response.text.splitlines()]
    assert [line["id"] for line in lines] == [3, 4, 5, 6]
    assert all(len(line["hash"]) == 64 for line in lines)


def test_verify_endpoint(client, trail, engine):
    report = client.get("/api/v1/audit/verify").json()
    assert report["ok"] is True
    assert (report["entries"], report["head_id"]) == (6, 6)
    tamper(engine, "UPDATE audit_event SET tier = 'full' WHERE id = 3")
    report = client.get("/api/v1/audit/verify").json()
    assert (report["ok"], report["broken_id"]) == (False, 3)
    assert "altered" in report["problem"]
    assert len(entries(engine)) == 6
