"""DUA coverage is exactly `domain/name`, `domain/*` or `*/*`, matched without globbing."""

from datetime import UTC, datetime, timedelta

import pytest
from typer.testing import CliRunner

from catalog.cli import app
from policies.duas.models import Dua
from policies.duas.service import covers
from tests.problems import assert_problem

GLOBS = [
    "[a-z]*/[!x]*",
    "st-marys/p*",
    "*/patients",
    "s?-marys/*",
    "*",
    "st-marys",
    "a/b/c",
    "*/*x",
]


@pytest.mark.parametrize("pattern", GLOBS)
def test_the_api_refuses_any_other_coverage_shape(estate, pattern):
    body = {
        "organization": "research-lab",
        "title": "Study",
        "purpose": "research",
        "tiers": ["deidentified"],
        "coverage": ["labs/*", pattern],
        "approval_reference": "IRB-1",
        "document_sha256": "a" * 64,
        "effective_from": datetime.now(UTC).isoformat(),
        "expires_at": (datetime.now(UTC) + timedelta(days=30)).isoformat(),
    }
    r = estate.call("root", "POST", "/api/v1/duas", json=body)
    assert_problem(r, 422)
    problem = r.json()
    assert problem["type"] == "https://fhir-mesh.dev/problems/validation-error"
    assert "must be domain/name, domain/* or */*" in problem["detail"]
    assert estate.call("root", "GET", "/api/v1/duas").json()["items"] == []


def test_the_cli_refuses_a_glob(estate, database_url, tmp_path):
    doc = tmp_path / "dua.pdf"
    doc.write_bytes(b"%PDF")
    env = {"MESH_DATABASE_URL": database_url, "MESH_HOME": str(tmp_path / "home")}
    args = ["duas", "create", "research-lab", "--title", "T", "--purpose", "research"]
    args += ["--tier", "deidentified", "--cover", "[a-z]*/[!x]*", "--approval-reference", "I"]
    args += ["--document", str(doc), "--expires", "2099-01-01"]
    result = CliRunner().invoke(app, args, env=env)
    assert result.exit_code == 2, result.output
    assert "coverage '[a-z]*/[!x]*' must be domain/name, domain/* or */*" in result.output
    ok = CliRunner().invoke(app, [*args[:9], "--cover", "st-marys/*", *args[11:]], env=env)
    assert ok.exit_code == 0, ok.output


def test_matching_is_by_segment_not_by_glob():
    assert covers("*/*", "labs/lab-results")
    assert covers("labs/*", "labs/lab-results")
    assert covers("labs/lab-results", "labs/lab-results")
    assert not covers("labs/*", "labs-east/lab-results")
    assert not covers("labs/lab", "labs/lab-results")
    # A pattern stored before the check (another shape) covers nothing.
    for glob in GLOBS:
        assert not covers(glob, "st-marys/patients"), glob
    dua = Dua(coverage=["[a-z]*/[!x]*"], tiers=[], purpose="research")
    from policies.duas.service import dua_covers

    assert not dua_covers(dua, "st-marys/patients")
