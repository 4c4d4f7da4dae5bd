"""A home `mesh` creates is owner-only, whatever the caller's umask.

Run under the permissive default umask 0o022: the demo (migrate, apply, synthetic export,
publish into Delta through deltalake's Rust writer, surrogate mappings, governance, profile),
a recipient token and a second publish write every kind of file the CLI writes; none of them
may be readable by anyone but the owner.
"""

import os
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

from catalog.cli import app as mesh

pytestmark = pytest.mark.slow  # builds a demo estate, a subprocess or a browser


@pytest.fixture
def permissive_umask() -> Iterator[None]:
    before = os.umask(0o022)
    try:
        yield
    finally:
        os.umask(before)


def _exposed(home: Path) -> list[str]:
    found = []
    for path in [home, *home.rglob("*")]:
        mode = path.lstat().st_mode
        if stat.S_ISLNK(mode):
            continue
        if mode & 0o077:
            found.append(f"{oct(stat.S_IMODE(mode))} {path.relative_to(home.parent)}")
    return found


def test_the_cli_creates_an_owner_only_home(tmp_path, permissive_umask):
    home = tmp_path / "home"
    env = {"MESH_DATABASE_URL": "", "MESH_HOME": str(home)}
    runner = CliRunner()
    done = runner.invoke(mesh, ["demo", "--no-serve", "--patients", "250"], env=env)
    assert done.exit_code == 0, done.output
    token = runner.invoke(mesh, ["recipients", "token", "sepsis-research"], env=env)
    assert token.exit_code == 0, token.output
    os.umask(0o022)  # each command sets its own umask; start the next one permissive again
    export = tmp_path / "export"
    assert runner.invoke(mesh, ["synth", "--out", str(export), "--patients", "20"]).exit_code == 0

    storage = home / "storage"
    kinds = {
        "catalog.db": home / "catalog.db",
        "full tier": storage / "products" / "st-marys" / "patients" / "full",
        "raw": storage / "raw",
        "surrogates": storage / "protected" / "surrogates",
        "profile": home / "profiles" / "sepsis-research.share",
        "sources": home / "sources" / "st-marys",
    }
    for name, path in kinds.items():
        assert path.exists(), name
    assert any((kinds["full tier"]).glob("*.parquet"))  # written by deltalake (Rust)
    assert any((kinds["surrogates"]).rglob("*.parquet"))
    assert _exposed(home) == []
    assert _exposed(export) == []
    assert stat.S_IMODE(home.stat().st_mode) == 0o700
    assert stat.S_IMODE((home / "catalog.db").stat().st_mode) == 0o600
    (raw,) = list(kinds["raw"].iterdir())[:1]
    assert stat.S_IMODE(raw.stat().st_mode) == 0o400


def test_an_existing_world_readable_home_is_closed(tmp_path, permissive_umask):
    home = tmp_path / "old-home"
    home.mkdir(mode=0o755)
    home.chmod(0o755)
    env = {"MESH_DATABASE_URL": "", "MESH_HOME": str(home)}
    done = CliRunner().invoke(mesh, ["db", "upgrade"], env=env)
    assert done.exit_code == 0, done.output
    assert _exposed(home) == []
