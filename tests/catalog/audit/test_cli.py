"""`mesh audit ...` against the real databases."""

import json
from datetime import timedelta

import pytest
from sqlmodel import Session, select
from typer.testing import CliRunner

from catalog.audit.models import AuditCheckpoint, AuditEvent
from catalog.cli import app
from tests.catalog.audit.support import append, tamper
from tests.catalog.audit.test_disclosures import build_trail


@pytest.fixture
def mesh(database_url, tmp_path):
    runner = CliRunner()

    def run(*args):
        env = {
            "MESH_DATABASE_URL": database_url,
            "MESH_HOME": str(tmp_path / "home"),
            "COLUMNS": "250",  # tables unwrapped
        }
        return runner.invoke(app, [str(a) for a in args], env=env)

    return run


def checkpoints(engine):
    with Session(engine) as session:
        return session.exec(select(AuditCheckpoint)).all()


def test_verify_passes_records_a_checkpoint_then_names_a_broken_entry(mesh, engine, clock):
    append(engine, clock, 4)
    ok = mesh("audit", "verify")
    assert ok.exit_code == 0, ok.output
    assert ok.stdout.startswith("audit log intact: 4 entries, head entry 4 (")
    [checkpoint] = checkpoints(engine)
    assert checkpoint.last_id == 4
    assert checkpoint.created_by.startswith("cli:")

    tamper(engine, "UPDATE audit_event SET action = 'product.read' WHERE id = 2")
    broken = mesh("audit", "verify")
    assert broken.exit_code == 1
    assert broken.stderr.strip() == (
        "error: audit log broken at entry 2: its content does not match its hash: it was altered"
    )
    assert len(checkpoints(engine)) == 1


def test_checkpoint_command(mesh, engine, clock):
    empty = mesh("audit", "checkpoint")
    assert empty.exit_code == 0
    assert "empty" in empty.stdout
    append(engine, clock, 2)
    made = mesh("audit", "checkpoint")
    assert made.exit_code == 0
    assert made.stdout.startswith("checkpoint 1: entry 2 ")
    tamper(engine, "DELETE FROM audit_event WHERE id = 2")
    refused = mesh("audit", "checkpoint")
    assert refused.exit_code == 1
    assert "broken at entry 2" in refused.stderr


def test_query_formats(mesh, engine, clock):
    build_trail(engine, clock)
    as_json = mesh("audit", "query", "--recipient", "quality-team", "--format", "json")
    assert as_json.exit_code == 0, as_json.output
    rows = json.loads(as_json.stdout)
    assert [r["action"] for r in rows] == [
        "sharing.list",
        "sharing.query",
        "sharing.query",
        "sharing.query",
    ]
    assert {r["organization"] for r in rows} == {"quality-team"}

    lines = mesh(
        "audit", "query", "--action", "sharing.*", "--outcome", "denied", "--format", "ndjson"
    )
    assert lines.exit_code == 0
    [denied] = [json.loads(line) for line in lines.stdout.splitlines()]
    assert (denied["tier"], denied["outcome"]) == ("full", "denied")

    table = mesh("audit", "query", "--product", "labs/cbc", "--limit", "1")
    assert table.exit_code == 0
    assert "labs/cbc@2.0.0" in table.stdout

    bad = mesh("audit", "query", "--since", "yesterday")
    assert bad.exit_code == 2
    assert "--since" in bad.stderr


def test_export_writes_a_time_range(mesh, engine, clock, tmp_path):
    start = build_trail(engine, clock)
    out = tmp_path / "audit.ndjson"
    result = mesh(
        "audit",
        "export",
        "--since",
        (start + timedelta(days=1)).isoformat(),
        "--until",
        (start + timedelta(days=2)).isoformat(),
        "--out",
        out,
    )
    assert result.exit_code == 0, result.output
    assert result.stdout.startswith("2 entries written to")
    lines = [json.loads(line) for line in out.read_text().splitlines()]
    assert [line["id"] for line in lines] == [2, 3]
    assert lines[1]["prev_hash"] == lines[0]["hash"]


def test_disclosures_command(mesh, engine, clock):
    build_trail(engine, clock)
    as_json = mesh("audit", "disclosures", "--product", "st-marys/patients", "--format", "json")
    assert as_json.exit_code == 0, as_json.output
    report = json.loads(as_json.stdout)
    assert [d["organization"] for d in report["disclosures"]] == ["quality-team", "sepsis-research"]
    table = mesh("audit", "disclosures", "--product", "st-marys/patients")
    assert table.exit_code == 0
    assert "sepsis-research" in table.stdout
    assert "1.0.0, 1.2.0, 1.10.0" in table.stdout
    bad = mesh("audit", "disclosures", "--product", "patients")
    assert bad.exit_code == 1
    assert "DOMAIN/NAME" in bad.stderr


def test_each_command_run_has_its_own_request_id(mesh, engine):
    for name in ("auditor-a", "auditor-b"):
        made = mesh("principals", "create", name, "--role", "auditor")
        assert made.exit_code == 0, made.output
    with Session(engine) as session:
        rows = session.exec(select(AuditEvent).where(AuditEvent.actor.startswith("cli:"))).all()
    ids = {r.subject: r.request_id for r in rows}
    assert set(ids) >= {"auditor-a", "auditor-b"}
    assert ids["auditor-a"].startswith("cli-") and ids["auditor-b"].startswith("cli-")
    assert ids["auditor-a"] != ids["auditor-b"]
    assert {r.user_agent for r in rows} == {"mesh-cli"}
    found = mesh("audit", "query", "--request-id", ids["auditor-a"], "--format", "json")
    assert found.exit_code == 0, found.output
    assert [e["subject"] for e in json.loads(found.stdout)] == ["auditor-a"]
