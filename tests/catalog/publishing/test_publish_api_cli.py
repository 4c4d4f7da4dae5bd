"""Publishing through the REST API and the `mesh` CLI."""

import json

import pytest
from litestar.testing import TestClient
from typer.testing import CliRunner

from catalog.app import create_app
from catalog.cli import app
from tests.catalog.publishing.conftest import PATIENT_VIEW, ROWS, VERSION_BODY
from tests.conftest import ADMIN_TOKEN
from tests.factories import domain_body
from tests.problems import assert_problem

PRODUCT_BODY = {
    "name": "patients",
    "title": "Patients",
    "owner_team": "Reg",
    "owner_email": "r@example.org",
    "source_resources": ["Patient"],
}


@pytest.fixture
def api(publish_settings, engine, clock):
    with TestClient(create_app(publish_settings, engine=engine, clock=clock)) as client:
        client.headers["Authorization"] = f"Bearer {ADMIN_TOKEN}"
        assert client.post("/api/v1/domains", json=domain_body()).status_code == 201
        assert (
            client.post("/api/v1/domains/st-marys/products", json=PRODUCT_BODY).status_code == 201
        )
        assert (
            client.post(
                "/api/v1/products/st-marys/patients/versions", json=VERSION_BODY
            ).status_code
            == 201
        )
        yield client


@pytest.fixture
def mesh(database_url, publish_settings):
    """Runs `mesh ARGS` on the API's database and home."""
    env = {"MESH_DATABASE_URL": database_url, "MESH_HOME": str(publish_settings.home)}
    return lambda *args: CliRunner().invoke(app, [str(a) for a in args], env=env)


def test_publish_and_quarantine_over_the_api(api, export_dir):
    r = api.post(
        "/api/v1/products/st-marys/patients/versions/1.0.0/publish",
        json={"source": str(export_dir)},
    )
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["status"] == "published"
    assert set(body["tier_tables"]) == {"deidentified", "limited", "full"}
    assert body["counts"]["rows"] == len(ROWS)
    assert body["lineage"]["raw_files"][0]["name"] == "Patient.ndjson"

    q = api.get("/api/v1/products/st-marys/patients/quarantine", params={"limit": 3}).json()
    assert q["total"] == 7 and q["counts"]["json"] == 2
    assert len(q["items"]) == 3 and q["next_cursor"]
    rest = api.get(
        "/api/v1/products/st-marys/patients/quarantine",
        params={"limit": 50, "cursor": q["next_cursor"]},
    ).json()
    lines = [i["line"] for i in q["items"] + rest["items"]]
    assert lines == sorted(lines) and len(lines) == 7
    only = api.get(
        "/api/v1/products/st-marys/patients/quarantine", params={"rule": "json", "version": "1.0.0"}
    ).json()
    assert only["total"] == 2 and {i["rule"] for i in only["items"]} == {"json"}

    again = api.post(
        "/api/v1/products/st-marys/patients/versions/1.0.0/publish",
        json={"source": str(export_dir)},
    )
    assert_problem(again, 409)
    assert again.json()["type"].endswith("/conflict")

    rebuilt = api.post("/api/v1/products/st-marys/patients/versions/1.0.0/reconvert", json={})
    assert rebuilt.status_code == 201, rebuilt.text
    assert rebuilt.json()["version"] == "1.0.1"
    assert rebuilt.json()["lineage"]["reconverted_from"] == "1.0.0"


def test_publish_api_refuses_sources_outside_the_roots(api, tmp_path):
    r = api.post(
        "/api/v1/products/st-marys/patients/versions/1.0.0/publish", json={"source": "/etc"}
    )
    assert_problem(r, 403)
    assert r.json()["detail"] == (
        "the source is outside the folders this server may publish from for domain st-marys"
    )
    missing = api.post(
        "/api/v1/products/st-marys/patients/versions/1.0.0/publish",
        json={"source": str(tmp_path / "sources" / "st-marys" / "nothing-here")},
    )
    assert_problem(missing, 400)
    assert missing.json()["type"].endswith("/invalid-parameter")
    assert missing.json()["detail"].endswith("does not exist")
    not_found = api.post(
        "/api/v1/products/st-marys/patients/versions/9.0.0/publish",
        json={"source": str(tmp_path / "sources" / "st-marys")},
    )
    assert_problem(not_found, 404)


def test_publish_and_quarantine_on_the_cli(api, mesh, export_dir, tmp_path):
    result = mesh("publish", "st-marys/patients", "--version", "1.0.0", "--from", export_dir)
    assert result.exit_code == 0, result.output
    assert (
        "st-marys/patients 1.0.0: published - 15 input records, 8 rows, 0 excluded by the view, 7 quarantined"
        in result.stdout
    )
    assert "tier deidentified: Delta version 0" in result.stdout
    listed = mesh("quarantine", "list", "st-marys/patients", "--json")
    assert json.loads(listed.stdout)["total"] == 7
    view = tmp_path / "view.json"
    view.write_text(json.dumps(PATIENT_VIEW))
    rebuilt = mesh("reconvert", "st-marys/patients", "--version", "1.0.0", "--view", view)
    assert rebuilt.exit_code == 0, rebuilt.output
    assert "st-marys/patients 1.0.1: published" in rebuilt.stdout


def test_quarantined_publish_exits_3(api, mesh, export_dir):
    body = dict(VERSION_BODY, version="1.1.0", sla={"completeness": ["birth_date >= 99%"]})
    assert api.post("/api/v1/products/st-marys/patients/versions", json=body).status_code == 201
    result = mesh("publish", "st-marys/patients", "--version", "1.1.0", "--from", export_dir)
    assert result.exit_code == 3
    assert "quarantined" in result.stdout and "FAIL completeness:birth_date" in result.stdout
    shown = api.get("/api/v1/products/st-marys/patients/versions/1.1.0").json()
    assert shown["status"] == "quarantined"
    assert "completeness:birth_date" in shown["status_reason"]


def test_synth_command(tmp_path):
    out = tmp_path / "export"
    result = CliRunner().invoke(
        app,
        [
            "synth",
            "--patients",
            "20",
            "--seed",
            "3",
            "--out",
            str(out),
            "--as-of",
            "2026-11-01T12:00:00+00:00",
        ],
    )
    assert result.exit_code == 0, result.output
    assert (out / "st-marys" / "Patient.ndjson").is_file()
    assert "20 people" in result.stdout
