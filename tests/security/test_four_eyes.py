"""Four eyes compares people, not names: creators and token issuers of a requester never decide."""

from sqlmodel import Session, col, select
from typer.testing import CliRunner

from catalog.audit.models import AuditEvent
from catalog.cli import app
from policies.principals.models import ApiToken, Principal
from tests.problems import assert_problem


def _sock_puppet(estate, creator: str, issuer: str) -> None:
    """A consumer `sock` created by `creator`, whose token `issuer` issued."""
    r = estate.call(
        creator,
        "POST",
        "/api/v1/principals",
        json={
            "name": "sock",
            "display_name": "Sock",
            "roles": ["consumer"],
            "organization": "research-lab",
        },
    )
    assert r.status_code == 201, r.text
    t = estate.call(issuer, "POST", "/api/v1/principals/sock/tokens", json={"days": 5})
    assert t.status_code == 201, t.text
    estate.tokens["sock"] = t.json()["token"]


def _denials(engine, actor: str) -> list[AuditEvent]:
    with Session(engine) as s:
        return list(
            s.exec(
                select(AuditEvent)
                .where(AuditEvent.action == "access.denied", AuditEvent.actor == actor)
                .order_by(col(AuditEvent.id))
            ).all()
        )


def test_provenance_is_recorded(estate, engine):
    _sock_puppet(estate, creator="admin1", issuer="admin2")
    with Session(engine) as s:
        sock = s.exec(select(Principal).where(Principal.name == "sock")).one()
        assert sock.created_by == "admin1"
        tokens = s.exec(select(ApiToken).where(ApiToken.principal_id == sock.id)).all()
        assert [t.issued_by for t in tokens] == ["admin2"]


def test_the_creator_of_the_requester_may_not_decide(estate, engine):
    _sock_puppet(estate, creator="admin1", issuer="root")
    rid = estate.request("sock", dua_id=estate.dua()["id"]).json()["id"]
    for verb, body in (("approve", {}), ("deny", {"reason": "no"})):
        path = f"/api/v1/access-requests/{rid}/{verb}"
        r = estate.call("admin1", "POST", path, json=body)
        assert_problem(r, 403)
        problem = r.json()
        assert problem["type"] == "https://fhir-mesh.dev/problems/forbidden"
        assert "four-eyes rule" in problem["detail"]
        assert "created its requester" in problem["detail"]
        entries = [e for e in _denials(engine, "admin1") if e.subject == f"POST {path}"]
        assert len(entries) == 1 and "four-eyes rule" in (entries[0].reason or "")
    assert (
        estate.call("admin2", "POST", f"/api/v1/access-requests/{rid}/approve", json={}).status_code
        == 200
    )


def test_the_issuer_of_a_token_of_the_requester_may_not_decide(estate):
    t = estate.call("admin2", "POST", "/api/v1/principals/researcher/tokens", json={"days": 1})
    assert t.status_code == 201, t.text
    rid = estate.request(dua_id=estate.dua()["id"]).json()["id"]
    r = estate.call("admin2", "POST", f"/api/v1/access-requests/{rid}/approve", json={})
    assert_problem(r, 403)
    assert "issued a token of its requester" in r.json()["detail"]
    ok = estate.call("admin1", "POST", f"/api/v1/access-requests/{rid}/approve", json={})
    assert ok.status_code == 200, ok.text


def test_the_cli_applies_the_same_rule(estate, engine, database_url, tmp_path):
    _sock_puppet(estate, creator="admin1", issuer="root")
    rid = estate.request("sock", dua_id=estate.dua()["id"]).json()["id"]
    env = {"MESH_DATABASE_URL": database_url, "MESH_HOME": str(tmp_path / "home")}
    result = CliRunner().invoke(app, ["requests", "approve", str(rid), "--as", "admin1"], env=env)
    assert result.exit_code == 1, result.output
    assert "four-eyes rule" in result.output
    assert [e.subject for e in _denials(engine, "admin1")] == ["mesh requests approve"]
    ok = CliRunner().invoke(app, ["requests", "approve", str(rid), "--as", "admin2"], env=env)
    assert ok.exit_code == 0, ok.output
