"""Alembic migrations of the catalog database (`mesh db upgrade`)."""
