"""The governance commands of `mesh`, against the real databases."""

import json

import pytest
from litestar.testing import TestClient
from typer.testing import CliRunner

from catalog.app import create_app
from catalog.cli import app
from tests.factories import domain_body, product_body


@pytest.fixture
def mesh(database_url, tmp_path):
    runner = CliRunner()
    env = {"MESH_DATABASE_URL": database_url, "MESH_HOME": str(tmp_path / "home")}

    def run(*args, expect=0):
        result = runner.invoke(app, [str(a) for a in args], env=env)
        assert result.exit_code == expect, result.output
        return result

    return run


def test_governance_from_the_command_line(mesh, tmp_path, settings, engine, clock):
    boot = mesh("admin", "bootstrap", "alice")
    token = boot.stdout.strip().splitlines()[-1]
    assert token.startswith("mesh_")
    with TestClient(
        create_app(settings.model_copy(update={"admin_token": None}), engine=engine, clock=clock)
    ) as c:
        r = c.get("/api/v1/principals", headers={"Authorization": f"Bearer {token}"})
        assert r.status_code == 200 and [p["name"] for p in r.json()] == ["alice"]

    mesh("domains", "list")
    mesh("organizations", "create", "sepsis-research", "Sepsis Research", "lead@uni.example.org")
    mesh("principals", "create", "bob", "--role", "platform-admin")
    mesh("principals", "create", "carol", "--role", "consumer", "--organization", "sepsis-research")
    listed = json.loads(mesh("principals", "list", "--json").stdout)
    assert {p["name"]: p["roles"] for p in listed} == {
        "alice": ["platform-admin"],
        "bob": ["platform-admin"],
        "carol": ["consumer"],
    }

    allow = mesh("policy", "check", "carol", "own-request", "create")
    assert allow.stdout.startswith("ALLOW carol own-request:create in *")
    assert "matched: p, role:consumer, *, own-request, create" in allow.stdout
    deny = mesh("policy", "check", "carol", "request", "approve", expect=1)
    assert "no policy line matched (deny by default)" in deny.stdout

    doc = tmp_path / "dua.pdf"
    doc.write_bytes(b"%PDF signed agreement")
    with TestClient(create_app(settings, engine=engine, clock=clock)) as c:
        c.headers["Authorization"] = f"Bearer {settings.admin_token.get_secret_value()}"
        assert c.post("/api/v1/domains", json=domain_body("labs")).status_code == 201
        assert (
            c.post("/api/v1/domains/labs/products", json=product_body("lab-results")).status_code
            == 201
        )
    mesh(
        "duas",
        "create",
        "sepsis-research",
        "--title",
        "Sepsis study",
        "--purpose",
        "research",
        "--tier",
        "deidentified",
        "--cover",
        "labs/*",
        "--approval-reference",
        "IRB-7",
        "--document",
        doc,
        "--expires",
        "2027-12-31",
    )
    duas = json.loads(mesh("duas", "list", "--json").stdout)
    assert duas[0]["active"] is True and len(duas[0]["document_sha256"]) == 64

    request = ["requests", "create", "--as", "carol", "--product", "labs/lab-results"]
    request += ["--dua", duas[0]["id"], "--purpose", "research"]
    request += ["--justification", "Lactate trends in sepsis"]
    refused = mesh(*request, "--tier", "limited", expect=1)
    assert "does not permit the limited tier" in refused.stderr
    mesh(*request, "--tier", "deidentified")
    no_role = mesh("requests", "approve", "1", "--as", "carol", expect=1)
    assert "missing permission request:approve" in no_role.stderr
    mesh("requests", "approve", "1", "--as", "bob")
    grants = json.loads(mesh("grants", "list", "--json").stdout)
    assert [(g["product"], g["tier"], g["state"]) for g in grants] == [
        ("labs/lab-results", "deidentified", "active")
    ]
    mesh("grants", "revoke", grants[0]["id"], "--reason", "study closed")
    assert json.loads(mesh("grants", "list", "--json").stdout)[0]["state"] == "revoked"
    mesh("tokens", "revoke", boot.stdout.split("_")[1])
    mesh("principals", "disable", "carol", "--reason", "left")
    missing_as = mesh("requests", "list", expect=2)
    assert "--as PRINCIPAL" in missing_as.stderr


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (("admin", "bootstrap", "Not A Name"), "name:"),
        (("organizations", "create", "lab", "Lab", "not-an-address"), "contact_email:"),
        (("principals", "create", "Bad Name", "--role", "consumer"), "name:"),
        (
            (
                "requests", "create", "--as", "carol", "--product", "labs/lab-results",
                "--dua", "1", "--purpose", "research", "--tier", "deidentified",
                "--justification", "short",
            ),
            "justification:",
        ),
    ],
)  # fmt: skip
def test_a_value_the_body_refuses_is_a_usage_error(mesh, args, words):
    """Options are validated as the API's body: exit 2 and the field's words, no traceback."""
    refused = mesh(*args, expect=2)
    assert refused.stderr.startswith("error: ") and words in refused.stderr, refused.output
    assert "Traceback" not in refused.output
