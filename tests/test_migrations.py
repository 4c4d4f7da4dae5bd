"""Alembic migrations produce exactly the models' schema, and downgrade cleanly, on both backends."""

from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import inspect

from catalog.kernel import migrate
from catalog.kernel.db import make_engine
from migrations.metadata import metadata


def test_upgrade_head_matches_models_and_downgrade_empties(backend, fresh_database_url):
    engine = make_engine(fresh_database_url(backend))
    try:
        migrate.upgrade(engine)
        assert migrate.is_current(engine)
        with engine.connect() as conn:
            context = MigrationContext.configure(conn, opts={"compare_type": True})
            diff = compare_metadata(context, metadata)
        assert diff == []
        assert set(metadata.tables) <= set(inspect(engine).get_table_names())

        migrate.downgrade(engine, "base")
        assert set(inspect(engine).get_table_names()) <= {"alembic_version"}
        assert migrate.current_revision(engine) is None

        migrate.upgrade(engine)
        assert migrate.is_current(engine)
    finally:
        engine.dispose()
