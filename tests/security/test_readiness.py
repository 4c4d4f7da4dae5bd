"""/readyz says ready only when the API can answer: database reachable AND at the newest migration.

The probe: /readyz answered ready on an unmigrated database while every API route answered 500,
so an orchestrator sent traffic to a server that could serve none of it.
"""

from alembic.script import ScriptDirectory
from litestar.testing import TestClient

from catalog.app import create_app
from catalog.kernel import health, migrate
from catalog.kernel.db import make_engine
from catalog.kernel.settings import Settings


def _ready(settings: Settings, url: str):
    engine = make_engine(url)
    try:
        with TestClient(create_app(settings, engine=engine)) as client:
            return client.get("/readyz")
    finally:
        engine.dispose()


def test_readyz_refuses_an_unmigrated_then_an_outdated_database(
    backend, fresh_database_url, tmp_path
):
    settings = Settings(home=tmp_path / "home")
    url = fresh_database_url(backend)
    head = migrate.head_revision()
    previous = ScriptDirectory.from_config(migrate.alembic_config(url)).get_revision(head)
    assert previous is not None and isinstance(previous.down_revision, str)

    empty = _ready(settings, url)
    assert empty.status_code == 503
    assert empty.headers["content-type"].startswith("application/problem+json")
    assert empty.json()["type"].endswith("/unavailable")
    assert "no schema" in empty.json()["detail"] and "mesh db upgrade" in empty.json()["detail"]
    assert int(empty.headers["Retry-After"]) >= 1

    engine = make_engine(url)
    try:
        migrate.upgrade(engine, previous.down_revision)
        behind = _ready(settings, url)
        assert behind.status_code == 503
        assert previous.down_revision in behind.json()["detail"]
        assert head is not None and head in behind.json()["detail"]

        migrate.upgrade(engine)
        assert _ready(settings, url).json() == {"status": "ready"}
    finally:
        engine.dispose()


def test_the_migration_head_is_read_once_per_process():
    health.head_revision()
    before = health.head_revision.cache_info()
    for _ in range(3):
        health.head_revision()
    after = health.head_revision.cache_info()
    assert after.misses == before.misses and after.hits == before.hits + 3
