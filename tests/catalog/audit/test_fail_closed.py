"""The audit entry is part of the change's transaction: no entry, no change (fail closed)."""

import uuid
from collections.abc import Iterator
from contextlib import contextmanager

import pytest
from sqlalchemy import text
from sqlalchemy.engine import Engine
from sqlalchemy.exc import DBAPIError
from sqlmodel import Session

from catalog.audit.record import Actor, new_entry, record_failure, record_now
from catalog.audit.writer import GroupCommit, Ticket
from catalog.kernel.db import transaction
from catalog.kernel.errors import Unavailable
from catalog.products import service
from tests.catalog.audit.support import entries, verify
from tests.factories import domain_body, make_domain
from tests.problems import assert_problem


@contextmanager
def audit_writes_failing(engine: Engine, when: str = "TRUE") -> Iterator[None]:
    """Make audit inserts fail (a full disk, a lost privilege...) `when` holds, for the block."""
    name = f"audit_down_{uuid.uuid4().hex[:8]}"
    with engine.begin() as conn:
        if engine.dialect.name == "postgresql":
            conn.execute(
                text(
                    f"CREATE FUNCTION {name}() RETURNS trigger LANGUAGE plpgsql AS "
                    f"$$ BEGIN IF {when} THEN RAISE EXCEPTION 'audit store unavailable'; "
                    "END IF; RETURN NEW; END $$"
                )
            )
            conn.execute(
                text(
                    f"CREATE TRIGGER {name} BEFORE INSERT ON audit_event "
                    f"FOR EACH ROW EXECUTE FUNCTION {name}()"
                )
            )
        else:
            conn.execute(
                text(
                    f"CREATE TRIGGER {name} BEFORE INSERT ON audit_event WHEN {when} "
                    "BEGIN SELECT RAISE(ABORT, 'audit store unavailable'); END"
                )
            )
    try:
        yield
    finally:
        with engine.begin() as conn:
            if engine.dialect.name == "postgresql":
                conn.execute(text(f"DROP TRIGGER {name} ON audit_event"))
                conn.execute(text(f"DROP FUNCTION {name}()"))
            else:
                conn.execute(text(f"DROP TRIGGER {name}"))


def test_a_change_whose_entry_cannot_be_written_is_not_committed(engine, clock):
    def create_domain() -> None:
        with transaction(engine) as session:
            make_domain(session, clock, "riverside")

    with audit_writes_failing(engine):
        with pytest.raises(DBAPIError, match="audit store unavailable"):
            create_domain()
        with Session(engine) as session:
            assert service.list_domains(session) == []
    with transaction(engine) as session:
        make_domain(session, clock, "riverside")
    assert [e.action for e in entries(engine)] == ["domain.create"]


def test_the_api_refuses_a_change_it_cannot_audit(client, engine):
    with audit_writes_failing(engine):
        response = client.post("/api/v1/domains", json=domain_body("riverside"))
        assert response.status_code >= 400
        assert "audit store" not in response.text
    assert_problem(client.get("/api/v1/domains/riverside"), 404)


def read_entry(clock, action="sharing.query"):
    return new_entry(
        at=clock.now(),
        actor=Actor("recipient:sepsis-research"),
        action=action,
        subject=("table", "sepsis-research.st-marys.patients"),
    )


def test_a_read_whose_entry_cannot_be_written_is_refused(engine, clock):
    kwargs = {
        "at": clock.now(),
        "actor": Actor("recipient:sepsis-research"),
        "action": "sharing.query",
        "subject": ("table", "sepsis-research.st-marys.patients"),
    }
    sink = GroupCommit(engine)
    with audit_writes_failing(engine), pytest.raises(Unavailable) as refused:
        record_now(sink, **kwargs)
    assert refused.value.status == 503
    assert record_failure(sink, **kwargs) is not None  # the store is back
    with audit_writes_failing(engine):
        assert record_failure(sink, **kwargs) is None  # logged, not raised
    sink.dispose()
    assert [e.action for e in entries(engine)] == ["sharing.query"]


def test_one_bad_entry_does_not_refuse_the_rest_of_its_batch(engine, clock):
    writer = GroupCommit(engine)
    good, bad, also_good = (
        Ticket([read_entry(clock)], lambda: None),
        Ticket([read_entry(clock, "poison")], lambda: None),
        Ticket([read_entry(clock, "sharing.metadata")], lambda: None),
    )
    condition = "NEW.action = 'poison'"
    with audit_writes_failing(engine, when=condition):
        writer._write_batch([good, bad, also_good])
    assert [(t.failed) for t in (good, bad, also_good)] == [
        False,
        True,
        False,
    ]
    assert [e.action for e in entries(engine)] == ["sharing.query", "sharing.metadata"]
    assert verify(engine).ok
