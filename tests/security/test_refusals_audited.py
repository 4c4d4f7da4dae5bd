"""Every refusal is recorded once as `access.denied`, wherever it is decided (guard or service)."""

import pytest
from sqlmodel import Session, col, select
from typer.testing import CliRunner

from catalog.audit.models import AuditEvent
from catalog.cli import app

PROBLEMS = "https://fhir-mesh.dev/problems/"


def denials(engine) -> list[AuditEvent]:
    with Session(engine) as s:
        return list(
            s.exec(
                select(AuditEvent)
                .where(AuditEvent.action == "access.denied")
                .order_by(col(AuditEvent.id))
            ).all()
        )


def approved_grant(estate) -> int:
    dua = estate.dua()
    rid = estate.request(dua_id=dua["id"]).json()["id"]
    r = estate.call("admin1", "POST", f"/api/v1/access-requests/{rid}/approve", json={})
    assert r.status_code == 200, r.text
    return int(r.json()["items"][0]["id"])


def assert_one_denial(engine, before, *, actor, subject, reason, problem):
    new = denials(engine)[len(before) :]
    assert len(new) == 1, [(e.actor, e.subject, e.reason) for e in new]
    entry = new[0]
    assert (entry.actor, entry.subject, entry.outcome) == (actor, subject, "denied")
    assert reason in (entry.reason or "")
    assert entry.details["problem"] == problem
    return entry


def test_a_consumer_approving_its_own_request_is_audited(estate, engine):
    dua = estate.dua()
    rid = estate.request(dua_id=dua["id"]).json()["id"]
    before = denials(engine)
    path = f"/api/v1/access-requests/{rid}/approve"
    r = estate.call("researcher", "POST", path, json={})
    assert r.status_code == 403
    body = r.json()
    assert body["type"] == PROBLEMS + "forbidden"
    assert "request:approve" in body["detail"]
    entry = assert_one_denial(
        engine,
        before,
        actor="researcher",
        subject=f"POST {path}",
        reason="missing permission request:approve",
        problem="forbidden",
    )
    assert entry.request_id and entry.token_id


def test_four_eyes_refusal_is_audited(estate, engine):
    dua = estate.dua(organization="quality-team", purpose="quality-improvement")
    rid = estate.request("dual", dua_id=dua["id"], purpose="quality-improvement").json()["id"]
    before = denials(engine)
    path = f"/api/v1/access-requests/{rid}/approve"
    r = estate.call("dual", "POST", path, json={})
    assert r.status_code == 403
    assert "four-eyes" in r.json()["detail"]
    assert_one_denial(
        engine,
        before,
        actor="dual",
        subject=f"POST {path}",
        reason="four-eyes",
        problem="forbidden",
    )


def test_an_auditor_revoking_a_grant_is_audited(estate, engine):
    grant_id = approved_grant(estate)
    before = denials(engine)
    path = f"/api/v1/grants/{grant_id}/revoke"
    r = estate.call("auditor1", "POST", path, json={"reason": "because"})
    assert r.status_code == 403
    assert r.json()["detail"] == "missing permission grant:revoke in any domain"
    assert_one_denial(
        engine,
        before,
        actor="auditor1",
        subject=f"POST {path}",
        reason="missing permission grant:revoke",
        problem="forbidden",
    )


def test_an_auditor_issuing_a_token_is_audited(estate, engine):
    before = denials(engine)
    path = "/api/v1/principals/researcher/tokens"
    r = estate.call("auditor1", "POST", path, json={"days": 1})
    assert r.status_code == 403
    assert "token:create" in r.json()["detail"]
    assert_one_denial(
        engine,
        before,
        actor="auditor1",
        subject=f"POST {path}",
        reason="missing permission token:create",
        problem="forbidden",
    )


def test_a_policy_refusal_is_audited(estate, engine):
    dua = estate.dua()  # deidentified only
    before = denials(engine)
    r = estate.request(dua_id=dua["id"], tier="limited")
    assert r.status_code == 403
    body = r.json()
    assert body["type"] == PROBLEMS + "policy-refused"
    assert "does not permit the limited tier" in body["detail"]
    assert_one_denial(
        engine,
        before,
        actor="researcher",
        subject="POST /api/v1/access-requests",
        reason="does not permit the limited tier",
        problem="policy-refused",
    )


def test_a_guard_refusal_is_audited_once_with_the_permission(estate, engine):
    before = denials(engine)
    r = estate.call("researcher", "GET", "/api/v1/audit")
    assert r.status_code == 403
    entry = assert_one_denial(
        engine,
        before,
        actor="researcher",
        subject="GET /api/v1/audit",
        reason="missing permission audit:read",
        problem="forbidden",
    )
    assert entry.details["permission"] == "audit:read"


@pytest.mark.parametrize(
    ("who", "command", "reason"),
    [
        ("researcher", "approve", "missing permission request:approve"),
        ("dual", "approve", "four-eyes"),
        ("auditor1", "deny", "missing permission request:approve"),
    ],
)
def test_a_refused_command_is_audited(estate, engine, database_url, tmp_path, who, command, reason):
    dua = estate.dua(organization="quality-team", purpose="quality-improvement")
    rid = estate.request("dual", dua_id=dua["id"], purpose="quality-improvement").json()["id"]
    before = denials(engine)
    env = {"MESH_DATABASE_URL": database_url, "MESH_HOME": str(tmp_path / "home")}
    result = CliRunner().invoke(
        app, ["requests", command, str(rid), "--reason", "no", "--as", who], env=env
    )
    assert result.exit_code == 1, result.output
    assert reason in result.output
    entry = assert_one_denial(
        engine,
        before,
        actor=who,
        subject=f"mesh requests {command}",
        reason=reason,
        problem="forbidden",
    )
    assert entry.subject_type == "command"
    assert (entry.request_id or "").startswith("cli-")
