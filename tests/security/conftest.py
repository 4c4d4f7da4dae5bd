"""Fixtures the security probes share: the suites' own estates (imported, so pytest sees them),
and a small demo estate of this package's own (SQLite), so these tests may change recipients."""

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from catalog.cli import app as mesh
from catalog.db import make_engine
from catalog.settings import Settings
from tests.catalog.publishing.conftest import export_dir, patients_version
from tests.live import free_port, serving
from tests.policies.conftest import Estate, estate

__all__ = ["Estate", "estate", "export_dir", "own_estate", "patients_version"]


@pytest.fixture(scope="module")
def own_estate(tmp_path_factory):  # type: ignore[no-untyped-def]
    """The demo on SQLite served on loopback: sepsis-research holds de-identified grants."""
    home = tmp_path_factory.mktemp("security-home")
    runner = CliRunner()
    env = {"MESH_DATABASE_URL": "", "MESH_HOME": str(home)}
    port = free_port()
    result = runner.invoke(
        mesh, ["demo", "--no-serve", "--patients", "250", "--port", str(port)], env=env
    )
    assert result.exit_code == 0, result.output
    endpoint = f"http://127.0.0.1:{port}"
    token = runner.invoke(
        mesh, ["recipients", "token", "sepsis-research", "--endpoint", endpoint], env=env
    )
    assert token.exit_code == 0, token.output
    settings = Settings(home=home, port=port, policy_refresh_seconds=0)
    engine = make_engine(settings.resolved_database_url)
    profile = home / "profiles" / "sepsis-research.share"
    with serving(settings, port, engine=engine):
        yield {
            "env": env,
            "home": home,
            "base": endpoint,
            "profile": str(profile),
            "token": json.loads(Path(profile).read_text())["bearerToken"],
            "settings": settings,
            "engine": engine,
        }
    engine.dispose()
