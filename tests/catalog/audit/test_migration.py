"""Upgrading moves the existing change events into the chained audit store, and back."""

from datetime import UTC, datetime

from sqlalchemy import text
from sqlmodel import Session

from catalog.audit.chain import verify_chain
from catalog.kernel import migrate
from catalog.kernel.db import make_engine
from tests.catalog.audit.support import entries

BEFORE = "b3f95fd95fa7"


def test_existing_events_are_chained_and_survive_a_downgrade(backend, fresh_database_url):
    engine = make_engine(fresh_database_url(backend))
    try:
        migrate.upgrade(engine, BEFORE)
        at = datetime(2026, 1, 15, 12, 0, 0, 123456, tzinfo=UTC)
        with engine.begin() as conn:
            for subject_type, subject, details in (
                ("domain", "labs", "{}"),
                ("version", "labs/cbc@1.0.0", '{"counts": {"rows": 3}}'),
                ("dua", "4", '{"organization": "sepsis-research", "tiers": ["limited"]}'),
            ):
                conn.execute(
                    text(
                        "INSERT INTO change_event (at, actor, action, subject_type, subject, "
                        "reason, details) VALUES (:at, 'cli:ops', :action, :st, :s, NULL, :d)"
                    ),
                    {
                        "at": at if backend == "postgresql" else at.replace(tzinfo=None),
                        "action": f"{subject_type}.create",
                        "st": subject_type,
                        "s": subject,
                        "d": details,
                    },
                )
        migrate.upgrade(engine)
        rows = entries(engine)
        assert [(r.id, r.action, r.outcome) for r in rows] == [
            (1, "domain.create", "success"),
            (2, "version.create", "success"),
            (3, "dua.create", "success"),
        ]
        assert (rows[1].product, rows[1].product_version) == ("labs/cbc", "1.0.0")
        assert rows[1].details == {"counts": {"rows": 3}}
        assert rows[2].organization == "sepsis-research"
        assert rows[0].at == at
        with Session(engine) as session:
            assert verify_chain(session).ok

        migrate.downgrade(engine, BEFORE)
        with engine.connect() as conn:
            back = conn.execute(text("SELECT id, action FROM change_event ORDER BY id")).all()
        assert [tuple(r) for r in back] == [
            (1, "domain.create"),
            (2, "version.create"),
            (3, "dua.create"),
        ]
    finally:
        engine.dispose()
