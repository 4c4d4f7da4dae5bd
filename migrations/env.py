"""Alembic environment: the schema is SQLModel.metadata of every table module."""

from alembic import context
from sqlalchemy import engine_from_config, pool

from catalog.kernel.settings import Settings
from migrations.metadata import metadata

config = context.config
target_metadata = metadata


def _url() -> str:
    return config.get_main_option("sqlalchemy.url") or Settings().resolved_database_url


def run_migrations_offline() -> None:
    _run(url=_url(), literal_binds=True)


def run_migrations_online() -> None:
    connection = config.attributes.get("connection")
    if connection is not None:
        _run(connection=connection)
        return
    engine = engine_from_config(
        {"sqlalchemy.url": _url()}, prefix="sqlalchemy.", poolclass=pool.NullPool
    )
    with engine.connect() as conn:
        _run(connection=conn)


def _run(**target) -> None:
    """Migrate `target` (a connection, or a URL offline) with batch ALTERs and type comparison."""
    context.configure(
        target_metadata=target_metadata, render_as_batch=True, compare_type=True, **target
    )
    with context.begin_transaction():
        context.run_migrations()


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
