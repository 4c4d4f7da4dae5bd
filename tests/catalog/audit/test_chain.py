"""The hash chain: appends verify; edits, deletions and truncation are found; edits are refused."""

import threading
from itertools import pairwise

import pytest
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError
from sqlmodel import Session, select

from catalog.audit.chain import CHECKPOINT_OPTION, entry_hash, fields_of, record_checkpoint
from catalog.audit.context import RequestContext, request_scope
from catalog.audit.models import GENESIS, AuditCheckpoint, AuditEvent
from catalog.audit.record import record_failure, record_now
from catalog.audit.writer import GroupCommit
from catalog.kernel.db import transaction
from catalog.kernel.errors import Forbidden
from policies.enforcer import Caller
from tests.catalog.audit.support import AUDITOR, append, entries, record, tamper, verify


def test_appends_chain_and_verify(engine, clock):
    append(engine, clock, 3)
    append(engine, clock, 2)
    rows = entries(engine)
    assert [r.id for r in rows] == [1, 2, 3, 4, 5]
    assert rows[0].prev_hash == GENESIS
    assert all(later.prev_hash == earlier.hash for earlier, later in pairwise(rows))
    assert all(r.hash == entry_hash(fields_of(r), r.prev_hash) for r in rows)
    report = verify(engine)
    assert report.ok
    assert (report.entries, report.head_id, report.head_hash) == (5, 5, rows[-1].hash)
    assert report.broken_id is None


def test_empty_log_verifies(engine):
    report = verify(engine)
    assert report.ok
    assert (report.entries, report.head_id, report.head_hash) == (0, None, None)


def refused_change(engine, clock):
    """A transaction that records an entry, then fails."""
    with transaction(engine) as session:
        record(session, clock, action="grant.revoke")
        raise Forbidden("missing permission grant:revoke")


def test_entries_commit_and_roll_back_with_their_change(engine, clock):
    with pytest.raises(Forbidden):
        refused_change(engine, clock)
    assert entries(engine) == []
    with Session(engine) as session:
        record(session, clock, action="domain.create")
        session.rollback()
        record(session, clock, action="domain.update")
        session.commit()
    assert [e.action for e in entries(engine)] == ["domain.update"]


def test_record_failure_writes_in_its_own_transaction(engine, clock):
    with pytest.raises(Forbidden):
        refused_change(engine, clock)
    written = record_failure(
        GroupCommit(engine),
        at=clock.now(),
        actor=AUDITOR,
        action="grant.revoke",
        subject=("grant", "7"),
        outcome="denied",
        reason="missing permission grant:revoke",
    )
    assert written is not None
    [entry] = entries(engine)
    assert (entry.id, entry.action, entry.outcome) == (1, "grant.revoke", "denied")
    assert verify(engine).ok


def test_context_and_derived_fields_are_recorded(engine, clock):
    caller = Caller("dr-okafor", organization="sepsis-research", token_id="0123456789abcdef")
    with (
        request_scope(RequestContext("req-42", "10.1.2.3", "delta-sharing/1.2")),
        transaction(engine) as session,
    ):
        record(session, clock, actor=caller, subject_type="version", subject="labs/cbc@2.1.0")
        record(
            session,
            clock,
            action="dua.create",
            subject_type="dua",
            subject="3",
            details={"organization": "quality-team", "tier": "limited"},
        )
    first, second = entries(engine)
    assert (first.request_id, first.client_address, first.user_agent) == (
        "req-42",
        "10.1.2.3",
        "delta-sharing/1.2",
    )
    assert (first.token_id, first.organization) == ("0123456789abcdef", "sepsis-research")
    assert (first.product, first.product_version) == ("labs/cbc", "2.1.0")
    assert (second.organization, second.tier, second.product) == ("quality-team", "limited", None)


def test_credentials_never_reach_the_log(engine, clock):
    secret = "mesh_0123456789abcdef_" + "S" * 43
    with transaction(engine) as session:
        record(
            session,
            clock,
            details={
                "token": secret,
                "note": f"pasted {secret} by mistake",
                "nested": {"Secret": 1},
            },
        )
    [entry] = entries(engine)
    assert entry.details == {
        "token": "[redacted]",
        "note": "pasted mesh_0123456789abcdef_[redacted] by mistake",
        "nested": {"Secret": "[redacted]"},
    }
    assert verify(engine).ok


# --- tampering -----------------------------------------------------------------------------------


@pytest.mark.parametrize(("column", "value"), [("action", "product.read"), ("outcome", "denied")])
def test_an_edited_entry_is_named(engine, clock, column, value):
    append(engine, clock, 5)
    tamper(engine, f"UPDATE audit_event SET {column} = :value WHERE id = 3", value=value)
    report = verify(engine)
    assert not report.ok
    assert report.broken_id == 3
    assert report.problem == "its content does not match its hash: it was altered"
    assert (report.entries, report.head_id) == (2, 2)


def test_an_edit_with_a_recomputed_hash_breaks_the_next_link(engine, clock):
    append(engine, clock, 5)
    third = entries(engine)[2]
    third.action = "product.read"
    forged = entry_hash(fields_of(third), third.prev_hash)
    tamper(
        engine, "UPDATE audit_event SET action = 'product.read', hash = :h WHERE id = 3", h=forged
    )
    report = verify(engine)
    assert (report.ok, report.broken_id) == (False, 4)
    assert report.problem == "its prev_hash does not match the hash of entry 3"


@pytest.mark.parametrize(
    ("entries_made", "deleted", "problem"),
    [
        (5, 3, "entry 3 is missing: entry 4 follows entry 2"),
        (2, 1, "entry 1 is missing: entry 2 follows entry 0"),  # the first entry
    ],
)
def test_a_deleted_entry_is_named(engine, clock, entries_made, deleted, problem):
    append(engine, clock, entries_made)
    tamper(engine, "DELETE FROM audit_event WHERE id = :id", id=deleted)
    report = verify(engine)
    assert (report.ok, report.broken_id) == (False, deleted)
    assert report.problem == problem


def test_a_truncated_and_rewritten_tail_is_found_against_a_checkpoint(engine, clock):
    append(engine, clock, 5)
    with transaction(engine) as session:
        checkpoint = record_checkpoint(session, verify(engine), at=clock.now(), created_by="tester")
    assert checkpoint is not None
    assert (checkpoint.last_id, checkpoint.head_hash) == (5, entries(engine)[-1].hash)

    tamper(engine, "DELETE FROM audit_event WHERE id >= 4")
    report = verify(engine)
    assert (report.ok, report.broken_id) == (False, 4)
    assert report.problem.startswith(
        f"entry 4 is missing: checkpoint {checkpoint.id} of {checkpoint.at.isoformat()} "
        "recorded the log up to entry 5"
    )

    # Appending new entries after the truncation produces a valid-looking chain...
    append(engine, clock, 2, action="product.update")
    report = verify(engine)
    # ...that disagrees with the checkpoint at entry 5.
    assert (report.ok, report.broken_id) == (False, 5)
    assert "checkpoint" in (report.problem or "")


def test_checkpoints_are_written_every_n_entries(engine, clock):
    every_two = engine.execution_options(**{CHECKPOINT_OPTION: 2})
    append(every_two, clock, 3)
    append(every_two, clock, 2)
    with Session(engine) as session:
        checkpoints = session.exec(select(AuditCheckpoint).order_by(AuditCheckpoint.id)).all()
    rows = entries(engine)
    assert [(c.last_id, c.head_hash, c.created_by) for c in checkpoints] == [
        (2, rows[1].hash, "system"),
        (4, rows[3].hash, "system"),
    ]
    tamper(engine, "DELETE FROM audit_event WHERE id >= 4")
    assert (verify(engine).broken_id, verify(engine).checkpoints) == (4, 2)


def test_the_application_cannot_change_or_delete_entries(engine, clock, backend):
    append(engine, clock, 2)
    with transaction(engine) as session:
        record_checkpoint(session, verify(engine), at=clock.now(), created_by="tester")
    statements = [
        "UPDATE audit_event SET outcome = 'denied' WHERE id = 1",
        "DELETE FROM audit_event WHERE id = 2",
        "UPDATE audit_checkpoint SET last_id = 1",
        "DELETE FROM audit_checkpoint",
    ]
    if backend == "postgresql":
        statements += ["TRUNCATE audit_event", "TRUNCATE audit_checkpoint"]
    for statement in statements:
        with pytest.raises(DBAPIError, match="append-only"), engine.begin() as conn:
            conn.execute(text(statement))
    # Through the ORM too.
    with transaction(engine) as session:
        entry = session.get(AuditEvent, 1)
    assert entry is not None
    with pytest.raises(DBAPIError, match="append-only"), transaction(engine) as session:
        session.merge(entry).action = "product.read"
    assert verify(engine).ok
    assert [e.outcome for e in entries(engine)] == ["success", "success"]


@pytest.mark.parametrize("how", ["in the change's transaction", "group-committed"])
def test_concurrent_appends_keep_one_chain(engine, clock, how):
    threads, per_thread = 8, 10
    barrier = threading.Barrier(threads)
    errors: list[BaseException] = []
    sink = GroupCommit(engine)

    def work(worker: int) -> None:
        try:
            barrier.wait()
            for i in range(per_thread):
                fields = {"action": "sharing.query", "subject_type": "table"}
                if how == "group-committed":
                    record_now(
                        sink,
                        at=clock.now(),
                        actor=AUDITOR,
                        action="sharing.query",
                        subject=("table", f"w{worker}/{i}"),
                    )
                    continue
                with transaction(engine) as session:
                    record(session, clock, subject=f"w{worker}/{i}", **fields)
        except BaseException as exc:  # reported below
            errors.append(exc)

    pool = [threading.Thread(target=work, args=(n,)) for n in range(threads)]
    for thread in pool:
        thread.start()
    for thread in pool:
        thread.join()
    assert errors == []
    report = verify(engine)
    assert report.ok
    assert report.entries == threads * per_thread
    assert len({e.subject for e in entries(engine)}) == threads * per_thread
