"""Principal names never stand for roles: Casbin subjects are `user:NAME`, roles `role:NAME`."""

from datetime import UTC, datetime

import pytest
import sqlalchemy as sa
from sqlmodel import Session, select
from typer.testing import CliRunner

from catalog.cli import app
from catalog.kernel import migrate
from catalog.kernel.db import make_engine
from policies.enforcer import add_rule, role_subject, user_subject
from policies.models import CasbinRule, PrincipalKind
from policies.principals.models import Principal
from tests.conftest import ADMIN_TOKEN
from tests.problems import assert_problem


def _principal_named_like_a_role(engine, name: str, org_id: int | None = None) -> None:
    """A principal that predates the name check (or was written by SQL): role consumer only."""
    now = datetime.now(UTC)
    with Session(engine) as s:
        s.add(
            Principal(
                name=name,
                display_name=name,
                kind=PrincipalKind.PERSON,
                organization_id=org_id,
                created_at=now,
                created_by="sql",
            )
        )
        add_rule(s, "g", [user_subject(name), role_subject("member"), "*"], now=now)
        add_rule(s, "g", [user_subject(name), role_subject("consumer"), "*"], now=now)
        s.commit()


@pytest.mark.parametrize("name", ["platform-admin", "auditor", "publisher", "consumer", "member"])
def test_a_principal_may_not_be_named_like_a_role(estate, name):
    r = estate.call(
        "root",
        "POST",
        "/api/v1/principals",
        json={
            "name": name,
            "display_name": "Eve",
            "roles": ["consumer"],
            "organization": "research-lab",
        },
    )
    assert_problem(r, 400)
    body = r.json()
    assert body["type"] == "https://fhir-mesh.dev/problems/invalid-parameter"
    assert "reserved" in body["detail"] and name in body["detail"]


def test_a_principal_named_like_a_role_gets_only_its_own_roles(estate, engine):
    for name in ("platform-admin", "auditor"):
        _principal_named_like_a_role(engine, name)
        token = estate.call("root", "POST", f"/api/v1/principals/{name}/tokens", json={"days": 1})
        assert token.status_code == 201, token.text
        estate.tokens[name] = token.json()["token"]

    created = estate.call(
        "platform-admin",
        "POST",
        "/api/v1/principals",
        json={"name": "mallory", "display_name": "M", "roles": ["platform-admin"]},
    )
    assert_problem(created, 403)
    assert created.json()["type"] == "https://fhir-mesh.dev/problems/forbidden"
    audit = estate.call("auditor", "GET", "/api/v1/audit")
    assert_problem(audit, 403)
    assert "audit:read" in audit.json()["detail"]
    # The real roles still work.
    assert estate.call("auditor1", "GET", "/api/v1/audit").status_code == 200
    assert estate.call("admin1", "GET", "/api/v1/principals").status_code == 200
    listed = {
        p["name"]: p["roles"] for p in estate.call("root", "GET", "/api/v1/principals").json()
    }
    assert listed["platform-admin"] == ["consumer"]
    assert listed["admin1"] == ["platform-admin"]


def test_policy_check_takes_the_principal_name(estate, engine, database_url, tmp_path):
    _principal_named_like_a_role(engine, "platform-admin")
    runner = CliRunner()
    env = {"MESH_DATABASE_URL": database_url, "MESH_HOME": str(tmp_path / "home")}
    deny = runner.invoke(app, ["policy", "check", "platform-admin", "principal", "create"], env=env)
    assert deny.exit_code == 1, deny.output
    assert deny.stdout.startswith("DENY platform-admin principal:create in *")
    assert "roles of principal platform-admin: member@*, consumer@*" in deny.stdout
    allow = runner.invoke(app, ["policy", "check", "admin1", "principal", "create"], env=env)
    assert allow.exit_code == 0, allow.output
    assert "matched: p, role:platform-admin, *, *, *" in allow.stdout
    # MESH_ADMIN_TOKEN's principal keeps its rights, in the API and in `mesh policy check`.
    env_admin = runner.invoke(
        app,
        ["policy", "check", "env:admin", "principal", "create"],
        env=env | {"MESH_ADMIN_TOKEN": ADMIN_TOKEN},
    )
    assert env_admin.exit_code == 0, env_admin.output
    assert env_admin.stdout.startswith("ALLOW env:admin principal:create")
    assert estate.call("root", "GET", "/api/v1/principals").status_code == 200


def test_cli_refuses_a_principal_named_like_a_role(database_url, tmp_path, engine):
    runner = CliRunner()
    env = {"MESH_DATABASE_URL": database_url, "MESH_HOME": str(tmp_path / "home")}
    result = runner.invoke(
        app, ["principals", "create", "auditor", "--role", "platform-admin"], env=env
    )
    assert result.exit_code == 1
    assert "reserved" in result.output
    with Session(engine) as s:
        assert s.exec(select(Principal).where(Principal.name == "auditor")).first() is None


def test_migration_namespaces_existing_policy_lines_and_back(backend, fresh_database_url):
    engine = make_engine(fresh_database_url(backend))
    rules = sa.table(
        "casbin_rule", sa.column("ptype"), sa.column("v0"), sa.column("v1"), sa.column("v2")
    )
    try:
        migrate.upgrade(engine, "5a1f0c2d9e7b")
        with engine.begin() as conn:
            before = {tuple(r) for r in conn.execute(sa.select(rules)).all()}
            assert ("p", "platform-admin", "*", "*") in before
            conn.execute(
                sa.insert(rules),
                [
                    {"ptype": "g", "v0": "platform-admin", "v1": "consumer", "v2": "*"},
                    {"ptype": "g", "v0": "pub", "v1": "publisher", "v2": "st-marys"},
                ],
            )
        migrate.upgrade(engine)
        with Session(engine) as s:
            after = {
                (r.ptype, r.v0, r.v1, r.v2)
                for r in s.exec(select(CasbinRule).where(CasbinRule.ptype != "p2")).all()
            }
        assert ("p", "role:platform-admin", "*", "*") in after
        assert ("g", "user:platform-admin", "role:consumer", "*") in after
        assert ("g", "user:pub", "role:publisher", "st-marys") in after
        assert all(r[1].startswith("role:" if r[0] == "p" else "user:") for r in after)
        migrate.downgrade(engine, "5a1f0c2d9e7b")
        with engine.connect() as conn:
            back = {tuple(r) for r in conn.execute(sa.select(rules)).all()}
        assert ("g", "platform-admin", "consumer", "*") in back
        assert before <= back
        assert not any((r[1] or "").startswith(("role:", "user:")) for r in back)
    finally:
        engine.dispose()


def test_cli_refuses_a_namespaced_principal_name(database_url, tmp_path, engine):
    env = {"MESH_DATABASE_URL": database_url, "MESH_HOME": str(tmp_path / "home")}
    result = CliRunner().invoke(
        app, ["principals", "create", "role:auditor", "--role", "consumer"], env=env
    )
    assert result.exit_code == 2, result.output
    assert "name" in result.output and "Traceback" not in result.output
