"""Shared fixtures: every persistence test runs on SQLite and on PostgreSQL, schema by Alembic."""

import os
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from litestar.testing import TestClient
from sqlalchemy import text
from sqlalchemy.engine import Engine, make_url
from sqlmodel import Session

from catalog.app import create_app
from catalog.kernel import migrate
from catalog.kernel.db import make_engine
from catalog.kernel.settings import Settings
from migrations.metadata import metadata
from policies.enforcer import seed_default_policy
from tests.db_support import audit_protection_lifted
from tests.factories import FixedClock

POSTGRES_ENV = "MESH_TEST_POSTGRES_URL"

# What `make test-fast` leaves out (`-m "not slow"`): tests that build a demo estate through the
# CLI (these fixtures), spawn processes or drive a browser (marked `slow` in their modules).
DEMO_FIXTURES = {
    ("tests.sharing.conftest", "estate"),
    ("tests.security.conftest", "own_estate"),
    ("tests.sharing.test_revision_reader", "postgres_estate"),
}


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark `slow` every test whose fixtures build a demo estate."""
    for item in items:
        info = getattr(item, "_fixtureinfo", None)
        if info is None:
            continue
        for name, defs in info.name2fixturedefs.items():
            if defs and (defs[-1].func.__module__, name) in DEMO_FIXTURES:
                item.add_marker(pytest.mark.slow)
                break


def _create_postgres_database(admin_url: str) -> str:
    """A fresh database for this test session, so runs never see each other's data."""
    name = f"mesh_test_{uuid.uuid4().hex[:12]}"
    admin = make_engine(admin_url).execution_options(isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    admin.dispose()
    return make_url(admin_url).set(database=name).render_as_string(hide_password=False)


def _drop_postgres_database(admin_url: str, url: str) -> None:
    name = make_url(url).database
    admin = make_engine(admin_url).execution_options(isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()


@pytest.fixture(scope="session")
def fresh_database_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[object]:
    """Factory: `make(backend)` returns the URL of a new, empty database on that backend."""
    created: list[str] = []
    admin_url = os.environ.get(POSTGRES_ENV)

    def make(backend: str) -> str:
        if backend == "sqlite":
            path = tmp_path_factory.mktemp("db") / "catalog.db"
            return f"sqlite:///{path}"
        if not admin_url:
            pytest.skip(f"{POSTGRES_ENV} is not set: PostgreSQL cases skipped")
        url = _create_postgres_database(admin_url)
        created.append(url)
        return url

    yield make
    for url in created:
        assert admin_url is not None
        _drop_postgres_database(admin_url, url)


@pytest.fixture(scope="session", params=["sqlite", "postgresql"])
def backend(request: pytest.FixtureRequest) -> str:
    """Each persistence test runs once per database backend."""
    return str(request.param)


@pytest.fixture(scope="session")
def migrated_engines(fresh_database_url: object) -> Iterator[dict[str, Engine]]:
    """One migrated database per backend for the whole test session."""
    engines: dict[str, Engine] = {}
    yield engines
    for engine in engines.values():
        engine.dispose()


@pytest.fixture
def engine(
    backend: str, migrated_engines: dict[str, Engine], fresh_database_url
) -> Iterator[Engine]:
    """A migrated database, emptied after each test."""
    if backend not in migrated_engines:
        eng = make_engine(fresh_database_url(backend))
        migrate.upgrade(eng)
        migrated_engines[backend] = eng
    eng = migrated_engines[backend]
    yield eng
    _truncate(eng)


def _truncate(engine: Engine) -> None:
    """Empty every table, then restore the default policy the migration seeded."""
    # The governance revision row is kept, like the migration left it (the triggers bump it).
    tables = [t.name for t in reversed(metadata.sorted_tables) if t.name != "governance_revision"]
    # The audit tables are append-only (triggers); the test superuser lifts that for cleanup.
    with engine.begin() as conn, audit_protection_lifted(conn):
        if engine.dialect.name == "postgresql":
            names = ", ".join(f'"{t}"' for t in tables)
            conn.execute(text(f"TRUNCATE {names} RESTART IDENTITY CASCADE"))
        else:
            for table in tables:
                conn.execute(text(f'DELETE FROM "{table}"'))
    with Session(engine) as session:
        seed_default_policy(session, now=datetime.now(UTC))
        session.commit()


@pytest.fixture
def database_url(engine: Engine) -> str:
    """URL of the test database (for CLI tests that build their own engine)."""
    return engine.url.render_as_string(hide_password=False)


@pytest.fixture
def clock() -> FixedClock:
    """A clock tests move by hand."""
    return FixedClock()


@pytest.fixture
def session(engine: Engine) -> Iterator[Session]:
    """A session on the test database; tests commit or flush as the code under test does."""
    with Session(engine, expire_on_commit=False) as s:
        yield s


ADMIN_TOKEN = "test-admin-token-0123456789"


@pytest.fixture
def settings(tmp_path: Path, database_url: str) -> Settings:
    """Settings pointing at the test database and a temporary home."""
    return Settings(
        home=tmp_path / "home",
        database_url=database_url,
        admin_token=ADMIN_TOKEN,
        policy_refresh_seconds=0,
        publish_source_roots=[tmp_path / "sources"],
    )


@pytest.fixture
def client(settings: Settings, engine: Engine, clock: FixedClock) -> Iterator[TestClient]:
    """The real app in-process, called as the bootstrap platform admin."""
    with TestClient(create_app(settings, engine=engine, clock=clock)) as c:
        c.headers["Authorization"] = f"Bearer {ADMIN_TOKEN}"
        yield c
