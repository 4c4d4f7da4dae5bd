"""The estate every sharing test reads: the demo on SQLite, served by uvicorn on loopback."""

import pytest
from typer.testing import CliRunner

from catalog.cli import app as mesh
from catalog.settings import Settings
from tests.live import free_port, serving


@pytest.fixture(scope="package")
def estate(tmp_path_factory):
    """The demo estate on SQLite: published tiers, a research group with a de-identified grant."""
    home = tmp_path_factory.mktemp("sharing-home")
    runner = CliRunner()
    env = {"MESH_DATABASE_URL": "", "MESH_HOME": str(home)}
    port = free_port()
    result = runner.invoke(
        mesh, ["demo", "--no-serve", "--patients", "250", "--port", str(port)], env=env
    )
    assert result.exit_code == 0, result.output
    token = runner.invoke(
        mesh,
        ["recipients", "token", "sepsis-research", "--endpoint", f"http://127.0.0.1:{port}"],
        env=env,
    )
    assert token.exit_code == 0, token.output
    settings = Settings(home=home, port=port, policy_refresh_seconds=0)
    with serving(settings, port):
        yield {
            "env": env,
            "home": home,
            "profile": str(home / "profiles" / "sepsis-research.share"),
            "port": port,
            "settings": settings,
        }
