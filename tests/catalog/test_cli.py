"""The `mesh` command line, run in-process against the real databases."""

import json
import secrets
from pathlib import Path

import pytest
from typer.testing import CliRunner

from catalog.cli import app

EXAMPLE = Path(__file__).resolve().parents[2] / "products.example.yaml"


@pytest.fixture
def mesh(database_url, tmp_path):
    """Run `mesh ARGS` against the test database; returns the click result."""
    runner = CliRunner()

    def run(*args, env=None):
        return runner.invoke(
            app,
            [str(a) for a in args],
            env={"MESH_DATABASE_URL": database_url, "MESH_HOME": str(tmp_path / "home")}
            | (env or {}),
        )

    return run


def test_apply_prints_plan_then_nothing_to_change(mesh):
    first = mesh("apply", EXAMPLE)
    assert first.exit_code == 0, first.output
    assert "  + domain st-marys" in first.stdout
    assert "  + version labs/lab-results@2.0.0" in first.stdout
    assert "Plan: 20 to create, 0 to update, 0 unchanged, 0 refused." in first.stdout
    assert first.stdout.rstrip().endswith("Applied.")

    second = mesh("apply", EXAMPLE)
    assert second.exit_code == 0
    assert "+" not in second.stdout.replace("Plan:", "")
    assert "Plan: 0 to create, 0 to update, 20 unchanged, 0 refused." in second.stdout
    assert second.stdout.rstrip().endswith("Nothing to change.")


def test_dry_run_changes_nothing(mesh):
    dry = mesh("apply", EXAMPLE, "--dry-run")
    assert dry.exit_code == 0
    assert "Dry run: nothing was changed." in dry.stdout
    listed = mesh("products", "list", "--json")
    assert json.loads(listed.stdout) == []


def test_malformed_file_reports_file_line_and_path(mesh, tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text(EXAMPLE.read_text().replace("type: int8", "type: tinyint"))
    result = mesh("apply", bad)
    assert result.exit_code == 1
    line = next(i + 1 for i, text in enumerate(bad.read_text().splitlines()) if "tinyint" in text)
    assert result.stderr.startswith(
        f"{bad}:{line}: domains[1].products[0].versions[0].columns[4].type: unknown type 'tinyint'"
    )
    assert json.loads(mesh("products", "list", "--json").stdout) == []


def test_refused_plan_applies_nothing(mesh, tmp_path):
    text = EXAMPLE.read_text().replace("- version: 2.0.0\n", "- version: 1.0.1\n")
    changed = tmp_path / "breaking.yaml"
    changed.write_text(text)
    result = mesh("apply", changed)
    assert result.exit_code == 1
    assert "  ! version labs/lab-results@1.0.1" in result.stdout
    assert "nothing was applied" in result.stderr
    assert json.loads(mesh("domains", "list", "--json").stdout) == []


def test_browse_and_lifecycle(mesh):
    assert mesh("apply", EXAMPLE).exit_code == 0
    products = json.loads(mesh("products", "list", "--json", "--tag", "legacy").stdout)
    assert [f"{p['domain']}/{p['name']}" for p in products] == [
        "northgate/conditions",
        "northgate/patients",
    ]
    shown = mesh("products", "show", "labs/lab-results")
    assert "labs/lab-results" in shown.stdout and "2.0.0" in shown.stdout
    version = json.loads(
        mesh("versions", "show", "labs/lab-results", "--version", "2.0.0", "--json").stdout
    )
    assert version["columns"][5]["name"] == "value_numeric"
    table = mesh("versions", "show", "st-marys/encounters", "--version", "1.0.0")
    assert "timestamp[us," in table.stdout

    result = mesh(
        "products", "deprecate", "northgate/patients", "--reason", "replaced by the MPI feed"
    )
    assert result.exit_code == 0 and "is now deprecated" in result.stdout
    detail = json.loads(mesh("products", "show", "northgate/patients", "--json").stdout)
    assert detail["status"] == "deprecated"
    assert detail["status_changed_by"].startswith("cli:")
    again = mesh("products", "deprecate", "northgate/patients", "--reason", "again")
    assert again.exit_code == 1 and "cannot become deprecated" in again.stderr
    retired = mesh(
        "versions", "retire", "labs/lab-results", "--version", "1.0.0", "--reason", "superseded"
    )
    assert retired.exit_code == 0


def test_errors_are_clean(mesh):
    missing = mesh("products", "show", "labs/ghost")
    assert missing.exit_code == 1
    assert missing.stderr.strip() == "error: product 'labs/ghost' not found"
    bad_ref = mesh("products", "show", "just-a-name")
    assert bad_ref.exit_code == 2
    assert "DOMAIN/NAME" in bad_ref.stderr


def test_unmigrated_database_is_refused(tmp_path):
    runner = CliRunner()
    home = tmp_path / "fresh"
    result = runner.invoke(
        app, ["products", "list", "--home", str(home)], env={"MESH_DATABASE_URL": ""}
    )
    assert result.exit_code == 1
    assert "run `mesh db upgrade` first" in result.stderr
    upgraded = runner.invoke(
        app, ["db", "upgrade", "--home", str(home)], env={"MESH_DATABASE_URL": ""}
    )
    assert upgraded.exit_code == 0
    assert (home / "catalog.db").is_file()
    current = runner.invoke(
        app, ["db", "current", "--home", str(home)], env={"MESH_DATABASE_URL": ""}
    )
    assert "(up to date)" in current.stdout


@pytest.mark.slow
def test_demo_is_safe_to_rerun(tmp_path):
    runner = CliRunner()
    home = tmp_path / "demo-home"
    env = {"MESH_DATABASE_URL": ""}
    args = ["demo", "--home", str(home), "--no-serve", "--patients", "40"]
    first = runner.invoke(app, args, env=env)
    assert first.exit_code == 0, first.output
    assert "20 to create" in first.stdout
    assert (
        (home / "catalog.db").is_file()
        and (home / "storage").is_dir()
        and (home / "profiles").is_dir()
    )
    assert "labs/lab-results 2.0.0: published" in first.stdout
    assert "northgate/conditions 1.0.0: quarantined" in first.stdout
    domains = sorted(p.name for p in (home / "sources").iterdir())
    assert domains == ["labs", "northgate", "riverside", "st-marys"]  # one publish root each
    assert all(len(list((home / "sources" / d).iterdir())) == 1 for d in domains)
    second = runner.invoke(app, args, env=env)
    assert second.exit_code == 0
    assert "0 to create, 0 to update, 20 unchanged" in second.stdout
    assert "Every example version is already published or quarantined." in second.stdout


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({}, "MESH_SIGNING_KEY must be set"),
        ({"MESH_SIGNING_KEY": "changeme"}, "MESH_SIGNING_KEY must be set"),
        (
            {"MESH_SIGNING_KEY": secrets.token_urlsafe(48), "MESH_ADMIN_TOKEN": "admin"},
            "MESH_ADMIN_TOKEN",
        ),
    ],
)
def test_serve_refuses_missing_or_weak_secrets(tmp_path, env, message):
    result = CliRunner().invoke(
        app,
        ["serve", "--home", str(tmp_path / "home")],
        env={"MESH_DATABASE_URL": "", "MESH_SIGNING_KEY": "", "MESH_ADMIN_TOKEN": "", **env},
    )
    assert result.exit_code == 1
    assert "refusing to serve" in result.output
    assert message in result.output
