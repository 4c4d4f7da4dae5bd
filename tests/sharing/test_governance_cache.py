"""The sharing server reuses grant and token rows only while the governance revision holds.

Triggers bump the revision on every change, whoever makes it (raw SQL from another connection
here), so the next request sees it; the rules themselves still run against the current time.
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
from policies.auth import split_secret
from policies.enforcer import PolicyEngine
from policies.principals.service import get_organization
from sharing import reads as service
from sharing.cache import GovernanceCache, read_revision
from sharing.recipients import service as recipients
from tests.factories import organization

WATCHED = (
    "access_grant",
    "access_request",
    "data_product",
    "domain",
    "dua",
    "organization",
    "product_version",
    "recipient_network",
    "recipient_token",
)


@pytest.fixture
def estate_engine(estate):
    engine = make_engine(estate["settings"].resolved_database_url)
    yield engine
    engine.dispose()


def _token(estate) -> str:
    return json.loads(Path(estate["profile"]).read_text())["bearerToken"]


def _query(estate) -> int:
    url = (
        f"http://127.0.0.1:{estate['port']}/delta-sharing/shares/sepsis-research"
        "/schemas/st-marys/tables/patients/query"
    )
    headers = {"Authorization": f"Bearer {_token(estate)}"}
    return requests.post(url, json={}, headers=headers, timeout=10).status_code


def _revision(engine: Engine) -> int:
    with engine.connect() as conn:
        return int(conn.execute(text("SELECT revision FROM governance_revision")).scalar_one())


def test_changes_made_outside_the_server_reach_the_next_request(estate, estate_engine):
    """Raw SQL from another connection (a script, an operator's fix) is seen at once."""
    assert _query(estate) == 200  # the rows are cached now
    parts = split_secret(_token(estate), recipients.TOKEN_PREFIX)
    assert parts is not None
    changes = [
        (  # the token is revoked
            "UPDATE recipient_token SET revoked_at = :now WHERE id = :token",
            "UPDATE recipient_token SET revoked_at = NULL WHERE id = :token",
            401,
        ),
        (  # the DUA behind every grant is revoked
            "UPDATE dua SET revoked_at = :now WHERE organization_id = "
            "(SELECT id FROM organization WHERE name = 'sepsis-research')",
            "UPDATE dua SET revoked_at = NULL WHERE organization_id = "
            "(SELECT id FROM organization WHERE name = 'sepsis-research')",
            404,
        ),
        (  # the grant ends
            "UPDATE access_grant SET expires_at = :past WHERE organization_id = "
            "(SELECT id FROM organization WHERE name = 'sepsis-research')",
            None,
            404,
        ),
    ]
    params = {"now": datetime.now(UTC), "past": datetime(2020, 1, 1, tzinfo=UTC), "token": parts[0]}
    with estate_engine.connect() as conn:
        saved = conn.execute(
            text(
                "SELECT id, expires_at FROM access_grant WHERE organization_id = "
                "(SELECT id FROM organization WHERE name = 'sepsis-research')"
            )
        ).all()
    for change, undo, status in changes:
        before = _revision(estate_engine)
        with estate_engine.begin() as conn:
            conn.execute(text(change), params)
        assert _revision(estate_engine) > before
        assert _query(estate) == status, change
        if undo:
            with estate_engine.begin() as conn:
                conn.execute(text(undo), params)
            assert _query(estate) == 200
    with estate_engine.begin() as conn:
        for grant_id, expires_at in saved:
            conn.execute(
                text("UPDATE access_grant SET expires_at = :at WHERE id = :id"),
                {"at": expires_at, "id": grant_id},
            )
    assert _query(estate) == 200


def test_cached_rows_are_still_judged_at_the_current_time(estate, estate_engine):
    """A token or grant that expires while its row is cached is refused all the same."""
    cache = GovernanceCache()
    credential = _token(estate)
    settings = estate["settings"]
    policy = PolicyEngine(estate_engine, SystemClock(), refresh_seconds=0)
    with Session(estate_engine) as session:
        view = cache.at(read_revision(session.connection()))
        now = datetime.now(UTC)
        who = recipients.authenticate(session, credential, now=now, cache=view)
        tables = service.shared_tables(
            session, who.organization, settings=settings, policy=policy, now=now, cache=view
        )
        assert tables
        token_row = view.get(("token", who.token_id), lambda: None)
        assert token_row is not None  # served from the cache, not loaded again
        later = token_row[0].expires_at + timedelta(seconds=1)
        with pytest.raises(Unauthenticated):
            recipients.authenticate(session, credential, now=later, cache=view)
        far = datetime(2999, 1, 1, tzinfo=UTC)  # every grant has ended by then
        assert (
            service.shared_tables(
                session, who.organization, settings=settings, policy=policy, now=far, cache=view
            )
            == []
        )


def test_a_stale_revision_never_overwrites_a_newer_one():
    cache = GovernanceCache()
    cache._put((5, "b"), "k", "new")
    cache._put((4, "a"), "k", "old")
    assert cache._get((5, "b"), "k") == (True, "new")
    assert cache._get((4, "a"), "k") == (False, None)


def test_the_cache_is_bounded():
    cache = GovernanceCache(max_entries=3)
    for i in range(10):
        cache._put((1, "a"), i, i)
    assert sum(cache._get((1, "a"), i)[0] for i in range(10)) <= 3


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
