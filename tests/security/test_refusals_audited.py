"""Every refusal is recorded once as `access.denied`, wherever it is decided (guard or service)."""

import pytest
from sqlmodel import Session, col, select
from typer.testing import CliRunner

from catalog.audit.models import AuditEvent
from catalog.cli import app
from tests.problems import assert_problem

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


def assert_one_denial(engine, before, *, actor, subject, reason, problem):
    new = denials(engine)[len(before) :]
    assert len(new) == 1, [(e.actor, e.subject, e.reason) for e in new]
    entry = new[0]
    assert (entry.actor, entry.subject, entry.outcome) == (actor, subject, "denied")
    assert reason in (entry.reason or "")
    assert entry.details["problem"] == problem
    return entry


def assert_refused_call(estate, engine, who, method, path, *, reason, **kw):
    """`who` calls `method path` (`kw`: its body), is refused 403 and audited once as forbidden."""
    before = denials(engine)
    r = estate.call(who, method, path, **kw)
    assert_problem(r, 403)
    entry = assert_one_denial(
        engine, before, actor=who, subject=f"{method} {path}", reason=reason, problem="forbidden"
    )
    return r, entry


def test_a_consumer_approving_its_own_request_is_audited(estate, engine):
    dua = estate.dua()
    rid = estate.request(dua_id=dua["id"]).json()["id"]
    path = f"/api/v1/access-requests/{rid}/approve"
    r, entry = assert_refused_call(
        estate,
        engine,
        "researcher",
        "POST",
        path,
        reason="missing permission request:approve",
        json={},
    )
    body = r.json()
    assert body["type"] == PROBLEMS + "forbidden"
    assert "request:approve" in body["detail"]
    assert entry.request_id and entry.token_id


def test_four_eyes_refusal_is_audited(estate, engine):
    dua = estate.dua(organization="quality-team", purpose="quality-improvement")
    rid = estate.request("dual", dua_id=dua["id"], purpose="quality-improvement").json()["id"]
    path = f"/api/v1/access-requests/{rid}/approve"
    r, _ = assert_refused_call(estate, engine, "dual", "POST", path, reason="four-eyes", json={})
    assert "four-eyes" in r.json()["detail"]


def assert_auditor_refused(estate, engine, path, permission, body):
    """auditor1's POST of `body` to `path` is refused for want of `permission` and audited once."""
    reason = f"missing permission {permission}"
    r, _ = assert_refused_call(estate, engine, "auditor1", "POST", path, reason=reason, json=body)
    assert r.json()["detail"] == f"{reason} in any domain"


def test_an_auditor_revoking_a_grant_is_audited(estate, engine):
    grant_id = int(estate.approved_grant()[1]["id"])
    path = f"/api/v1/grants/{grant_id}/revoke"
    assert_auditor_refused(estate, engine, path, "grant:revoke", {"reason": "because"})


def test_an_auditor_issuing_a_token_is_audited(estate, engine):
    path = "/api/v1/principals/researcher/tokens"
    assert_auditor_refused(estate, engine, path, "token:create", {"days": 1})


def test_a_policy_refusal_is_audited(estate, engine):
    dua = estate.dua()  # deidentified only
    before = denials(engine)
    r = estate.request(dua_id=dua["id"], tier="limited")
    assert_problem(r, 403, "policy-refused")
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
    _, entry = assert_refused_call(
        estate, engine, "researcher", "GET", "/api/v1/audit", reason="missing permission audit:read"
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
