"""`mesh`: workflow commands notify like the API; scan, deliver and outbox from the shell."""

import json
from datetime import datetime, timedelta

import pytest
from sqlmodel import Session, select
from typer.testing import CliRunner

from catalog.cli import app
from catalog.products.models import ProductVersion, VersionStatus
from tests.policies.notifications.conftest import WEBHOOK_SECRET
from tests.policies.notifications.test_recipients import inbox, kinds


@pytest.fixture
def mesh(database_url, tmp_path):
    runner = CliRunner()
    env = {"MESH_DATABASE_URL": database_url, "MESH_HOME": str(tmp_path / "home")}

    def run(*args, expect=0, **more_env):
        result = runner.invoke(app, [str(a) for a in args], env=env | more_env)
        assert result.exit_code == expect, result.output
        return result

    return run


def test_commands_notify_and_the_outbox_delivers(mesh, estate, engine, webhook):
    dua = estate.dua()
    mesh(
        "requests", "create", "--as", "researcher", "--product", "st-marys/patients",
        "--tier", "deidentified", "--dua", dua["id"], "--purpose", "research",
        "--justification", "Lactate trends in sepsis", "--days", "30",
    )  # fmt: skip
    assert ("request-filed", 1, None) in kinds(estate, "admin2")
    mesh("requests", "approve", "1", "--as", "admin2")
    assert ("request-approved", 1, None) in kinds(estate, "researcher")

    # A version deprecated from the command line tells the grant holders, as the API does.
    body = {
        "version": "1.0.0",
        "columns": [{"name": "patient_id", "type": "string", "classification": "none"}],
        "tiers": ["deidentified"],
    }
    r = estate.call("root", "POST", "/api/v1/products/st-marys/patients/versions", json=body)
    assert r.status_code == 201
    with Session(engine) as session:
        version = session.exec(select(ProductVersion)).one()
        version.status = VersionStatus.PUBLISHED
        session.add(version)
        session.commit()
    mesh("versions", "deprecate", "st-marys/patients", "--version", "1.0.0", "--reason", "old")
    assert "version-deprecated" in [n["kind"] for n in inbox(estate, "researcher")["items"]]
    assert "version-deprecated" in [n["kind"] for n in inbox(estate, "pub-sm")["items"]]

    grant = estate.call("root", "GET", "/api/v1/grants").json()["items"][0]
    soon = datetime.fromisoformat(grant["expires_at"]) - timedelta(days=10)
    first = json.loads(mesh("notifications", "scan", "--at", soon.isoformat(), "--json").stdout)
    assert first == [{"grant": grant["id"], "kind": "grant-expiring-14d"}]
    again = mesh("notifications", "scan", "--at", soon.isoformat())
    assert "0 notification(s) written" in again.stdout

    hook = {"MESH_NOTIFY_WEBHOOK_URL": webhook.url, "MESH_NOTIFY_WEBHOOK_SECRET": WEBHOOK_SECRET}
    report = json.loads(mesh("notifications", "deliver", "--json", **hook).stdout)
    assert report["dispatched"] == 4 and len(report["sent"]) == 4 and report["failed"] == []
    assert sorted(p.json["kind"] for p in webhook.posts) == [
        "grant-expiring-14d",
        "request-approved",
        "request-filed",
        "version-deprecated",
    ]
    assert all(p.signed_with(WEBHOOK_SECRET) for p in webhook.posts)
    outbox = json.loads(mesh("notifications", "outbox", "--json").stdout)
    assert {(d["channel"], d["status"], d["attempts"]) for d in outbox} == {("webhook", "sent", 1)}
    assert json.loads(mesh("notifications", "outbox", "--status", "failed", "--json").stdout) == []


def test_a_plain_http_webhook_is_refused_at_startup(mesh):
    bad = mesh(
        "notifications", "deliver", expect=1,
        MESH_NOTIFY_WEBHOOK_URL="http://hooks.example.org/x",
        MESH_NOTIFY_WEBHOOK_SECRET=WEBHOOK_SECRET,
    )  # fmt: skip
    assert "must use https" in str(bad.exception) or "must use https" in bad.output
