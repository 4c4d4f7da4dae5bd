"""The estate every sharing test reads: the demo on SQLite, served by uvicorn on loopback."""

import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

import pytest
import uvicorn
from typer.testing import CliRunner

from catalog.app import create_app
from catalog.cli import app as mesh
from catalog.db import make_engine
from catalog.settings import Settings


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


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


@contextmanager
def serving(settings: Settings, port: int) -> Iterator[None]:
    """The app for `settings` under uvicorn on 127.0.0.1:port, in a thread of this process."""
    server = uvicorn.Server(
        uvicorn.Config(
            create_app(settings, engine=make_engine(settings.resolved_database_url)),
            host="127.0.0.1",
            port=port,
            log_level="warning",
        )
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    for _ in range(100):
        if server.started:
            break
        time.sleep(0.05)
    try:
        yield
    finally:
        server.should_exit = True
        thread.join(timeout=5)
