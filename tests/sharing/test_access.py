"""The access snapshot: one per (token, governance revision), judged at every request's time.

Triggers bump the revision on every change, whoever makes it (raw SQL from another connection
here), policy lines included, so the next request sees it; the rules themselves still run
against the current time, so a snapshot never serves a revoked or expired token.
"""

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import SimpleNamespace

import pytest
import requests
from sqlalchemy import text
from sqlalchemy.engine import Engine
from sqlmodel import Session

from catalog.kernel.clock import SystemClock
from catalog.kernel.db import make_engine
from catalog.kernel.errors import Unauthenticated
from migrations.schema import GOVERNANCE_TABLES
from policies.auth import split_secret
from policies.enforcer import PolicyEngine, add_rule
from policies.principals.service import get_organization
from policies.revision import read_revision
from sharing import reads as service
from sharing.access import AccessSnapshots
from sharing.recipients import service as recipients
from tests.factories import organization

# The tables whose triggers bump the revision: the policy lines joined them in a2b7c9d4e1f6.
WATCHED = (*GOVERNANCE_TABLES, "casbin_rule")


@pytest.fixture
def estate_engine(estate):
    engine = make_engine(estate["settings"].resolved_database_url)
    yield engine
    engine.dispose()


def _token(estate) -> str:
    return json.loads(Path(estate["profile"]).read_text())["bearerToken"]


def _query(estate, recipient) -> int:
    url = (
        f"http://127.0.0.1:{estate['port']}/delta-sharing/shares/{recipient.share}"
        "/schemas/st-marys/tables/patients/query"
    )
    headers = {"Authorization": f"Bearer {recipient.token}"}
    return requests.post(url, json={}, headers=headers, timeout=10).status_code


def _revision(engine: Engine) -> int:
    with engine.connect() as conn:
        return int(conn.execute(text("SELECT revision FROM governance_revision")).scalar_one())


def test_changes_made_outside_the_server_reach_the_next_request(
    estate, estate_engine, own_recipient
):
    """Raw SQL from another connection (a script, an operator's fix) is seen at once."""
    assert _query(estate, own_recipient) == 200  # the rows are cached now
    parts = split_secret(own_recipient.token, recipients.TOKEN_PREFIX)
    assert parts is not None
    of_the_recipient = "organization_id = (SELECT id FROM organization WHERE name = :org)"
    changes = [
        (  # the token is revoked
            "UPDATE recipient_token SET revoked_at = :now WHERE id = :token",
            "UPDATE recipient_token SET revoked_at = NULL WHERE id = :token",
            401,
        ),
        (  # the DUA behind every grant is revoked
            f"UPDATE dua SET revoked_at = :now WHERE {of_the_recipient}",
            f"UPDATE dua SET revoked_at = NULL WHERE {of_the_recipient}",
            404,
        ),
        (  # the grant ends
            f"UPDATE access_grant SET expires_at = :past WHERE {of_the_recipient}",
            None,
            404,
        ),
    ]
    params = {
        "now": datetime.now(UTC),
        "past": datetime(2020, 1, 1, tzinfo=UTC),
        "token": parts[0],
        "org": own_recipient.share,
    }
    for change, undo, status in changes:
        before = _revision(estate_engine)
        with estate_engine.begin() as conn:
            conn.execute(text(change), params)
        assert _revision(estate_engine) > before
        assert _query(estate, own_recipient) == status, change
        if undo:
            with estate_engine.begin() as conn:
                conn.execute(text(undo), params)
            assert _query(estate, own_recipient) == 200


def _snapshots(engine: Engine, settings, **kwargs) -> AccessSnapshots:
    return AccessSnapshots(engine, PolicyEngine(engine, SystemClock()), settings, **kwargs)


def _revision_pair(engine: Engine):
    with engine.connect() as conn:
        return read_revision(conn)


def test_a_snapshot_is_still_judged_at_the_current_time(estate, estate_engine):
    """A token or grant that expires while its snapshot is kept is refused all the same."""
    snapshots = _snapshots(estate_engine, estate["settings"])
    token_id, secret = recipients.token_id_in(_token(estate))
    revision = _revision_pair(estate_engine)
    assert snapshots.lookup(token_id, revision) is None  # nothing read yet
    loaded = snapshots.load(token_id, revision)
    snapshot = snapshots.lookup(token_id, revision)
    assert snapshot is loaded  # kept: the next lookup needs no I/O
    now = datetime.now(UTC)
    who = snapshot.recipient(secret, now)
    assert snapshot.tables(who.organization, now)
    assert snapshot.token is not None
    later = snapshot.token[0].expires_at + timedelta(seconds=1)
    with pytest.raises(Unauthenticated):
        snapshot.recipient(secret, later)
    with pytest.raises(Unauthenticated):
        snapshot.recipient(secret[:-1] + ("A" if secret[-1] != "A" else "B"), now)
    far = datetime(2999, 1, 1, tzinfo=UTC)  # every grant has ended by then
    assert snapshot.tables(who.organization, far) == []


def test_a_snapshot_never_serves_a_revoked_token(estate, estate_engine):
    """Revoked from another connection: the revision moves, the kept snapshot is not used."""
    snapshots = _snapshots(estate_engine, estate["settings"])
    with Session(estate_engine) as session:  # a token of its own: the estate's stays live
        org = get_organization(session, "sepsis-research")
        _, credential = recipients.issue_recipient_token(
            session, org, days=1, now=datetime.now(UTC)
        )
        session.commit()
    token_id, secret = recipients.token_id_in(credential)
    before = _revision_pair(estate_engine)
    snapshots.load(token_id, before).recipient(secret, datetime.now(UTC))
    with estate_engine.begin() as conn:
        conn.execute(
            text("UPDATE recipient_token SET revoked_at = :now WHERE id = :id"),
            {"now": datetime.now(UTC), "id": token_id},
        )
    after = _revision_pair(estate_engine)
    assert after != before
    assert snapshots.lookup(token_id, after) is None
    with pytest.raises(Unauthenticated):
        snapshots.load(token_id, after).recipient(secret, datetime.now(UTC))
    assert snapshots.lookup(token_id, before) is None  # the older generation is gone


def test_an_older_revision_never_replaces_a_newer_one(estate, estate_engine):
    snapshots = _snapshots(estate_engine, estate["settings"])
    token_id, _ = recipients.token_id_in(_token(estate))
    count, stamp = _revision_pair(estate_engine) or (0, "")
    newer, older = (count + 2, "new"), (count + 1, "old")
    snapshots.load(token_id, newer)
    snapshots.load(token_id, older)  # a request that read its revision just before a change
    assert snapshots.lookup(token_id, newer) is not None
    assert snapshots.lookup(token_id, older) is None
    restored = (count + 2, "restored")  # the same counter, another stamp: a restored database
    snapshots.load(token_id, restored)
    assert snapshots.lookup(token_id, newer) is None
    assert snapshots.lookup(token_id, restored) is not None
    assert snapshots.lookup(token_id, None) is None  # no counter: nothing kept
    assert stamp


def test_snapshots_are_bounded_and_share_an_organisations_grants(estate, estate_engine):
    snapshots = _snapshots(estate_engine, estate["settings"], max_entries=3)
    token_id, _ = recipients.token_id_in(_token(estate))
    revision = _revision_pair(estate_engine)
    first = snapshots.load(token_id, revision)
    for i in range(10):  # unknown tokens are kept too (as refusals), within the bound
        assert snapshots.load(f"dsr_{i:016x}", revision).token is None
    kept = sum(
        snapshots.lookup(t, revision) is not None
        for t in [token_id, *(f"dsr_{i:016x}" for i in range(10))]
    )
    assert kept <= 3
    again = snapshots.load(token_id, revision)
    assert again.grants is not None and first.grants is not None
    with Session(estate_engine) as session:  # a second token of the same organisation
        org = get_organization(session, "sepsis-research")
        row, _ = recipients.issue_recipient_token(session, org, days=1, now=datetime.now(UTC))
        session.commit()
        second_id = row.id
    revision = _revision_pair(estate_engine)
    one = snapshots.load(token_id, revision)
    other = snapshots.load(second_id, revision)
    assert other.grants is one.grants  # read once per organisation and revision


def test_a_policy_change_moves_the_revision_and_the_rules(engine: Engine):
    """Policy lines bump the one revision; the rules at the new revision hold the change."""
    policy = PolicyEngine(engine, SystemClock())
    before = _revision_pair(engine)
    rules = policy.at(before)
    assert policy.at(before) is rules  # the same revision: no read
    assert not rules.allowed("someone", "*", "product", "read")
    with Session(engine) as session:
        add_rule(session, "g", ["user:someone", "role:platform-admin", "*"], now=datetime.now(UTC))
        session.commit()
    after = _revision_pair(engine)
    assert after != before
    assert policy.at(after).allowed("someone", "*", "product", "read")
    with Session(engine) as session:  # a change elsewhere: the lines are equal, the rules kept
        session.add(organization("policy-check", title="t", email="a@b.example"))
        session.commit()
    moved = _revision_pair(engine)
    assert moved != after
    assert policy.at(moved) is policy.at(after)


def test_every_watched_table_bumps_the_revision(engine: Engine):
    """On both backends: insert, update and delete bump it on commit; a rollback does not."""
    before = _revision(engine)
    with Session(engine) as session:
        org = organization("bump-check", title="t", email="a@b.example")
        session.add(org)
        session.commit()
        assert _revision(engine) > before
        before = _revision(engine)
        org.title = "changed"
        session.add(org)
        session.commit()
        assert _revision(engine) > before
        before = _revision(engine)
        org.title = "rolled back"
        session.add(org)
        session.flush()
        session.rollback()
        assert _revision(engine) == before
        session.delete(get_organization(session, "bump-check"))
        session.commit()
        assert _revision(engine) > before
    with engine.connect() as conn:
        if engine.dialect.name == "postgresql":
            rows = conn.execute(
                text(
                    "SELECT c.relname FROM pg_trigger t JOIN pg_class c ON c.oid = t.tgrelid "
                    "WHERE t.tgname LIKE '%governance_revision'"
                )
            ).all()
            assert sorted(r[0] for r in rows) == sorted(WATCHED)
        else:
            rows = conn.execute(
                text(
                    "SELECT tbl_name FROM sqlite_master WHERE type = 'trigger' "
                    "AND name LIKE '%governance%'"
                )
            ).all()
            assert sorted(r[0] for r in rows) == sorted(t for t in WATCHED for _ in range(3))


def test_derived_tables_are_reused_until_the_next_instant_a_rule_could_change():
    """Grant review and expiry, DUA start and end: each is a point where derivation reruns."""
    start = datetime(2026, 1, 1, tzinfo=UTC)
    day = timedelta(days=1)
    grant = SimpleNamespace(expires_at=start + 10 * day, review_due_at=start + 5 * day)
    dua = SimpleNamespace(effective_from=start - day, expires_at=start + 20 * day)
    settings = SimpleNamespace(grant_review_grace_days=2)
    facts = service.GrantFacts([(grant, dua, "research", "p", "d")], {}, settings)
    derivations: list[datetime] = []

    def at(now: datetime, rules: object) -> None:
        facts.tables(now, rules, lambda: derivations.append(now) or [])

    rules = object()
    for offset in (0, 4, 5, 6, 7, 9.9, 10, 19, 20, 30):
        at(start + offset * day, rules)
    # Derived again only at review due (5), end of review grace (7), grant expiry (10) and DUA
    # expiry (20); the moments between reuse the last derivation.
    assert [(d - start) / day for d in derivations] == [0, 5, 7, 10, 20]
    at(start + 30 * day, object())  # the policy was reloaded
    at(start + 29 * day, rules)  # the clock went back
    assert len(derivations) == 7
