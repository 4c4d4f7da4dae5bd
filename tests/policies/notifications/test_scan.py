"""`mesh notifications scan`: each (grant, kind) told once, on the injected clock, even when
sixteen scans race on PostgreSQL."""

from datetime import datetime, timedelta

import pytest
from sqlalchemy import func
from sqlmodel import Session, select

from catalog.audit.record import Actor
from catalog.kernel.db import transaction
from catalog.kernel.settings import Settings
from policies.grants.models import Grant
from policies.notifications.models import Notification, NotificationRecipient
from policies.notifications.scan import scan_grants
from tests.live import together
from tests.policies.notifications.test_recipients import inbox

SCANNER = Actor("cli:cron")


def _parse(value: str) -> datetime:
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


def scan(engine, settings: Settings, now: datetime) -> list[tuple[int, str]]:
    with transaction(engine) as session:
        return [
            (d.grant_id, str(d.kind))
            for d in scan_grants(session, settings=settings, now=now, actor=SCANNER)
        ]


def granted(estate, days: int) -> dict:
    """A researcher's grant of st-marys/patients for `days` days."""
    dua = estate.dua()
    rid = estate.request(dua_id=dua["id"], days=days).json()["id"]
    r = estate.approve(rid)
    assert r.status_code == 200, r.text
    return r.json()["items"][0]


def test_ending_grants_are_told_at_14_days_then_at_1_day_once_each(estate, engine, settings):
    grant = granted(estate, 30)  # reviewed at its end: never suspended before
    gid, ends = grant["id"], _parse(grant["expires_at"])
    assert scan(engine, settings, ends - timedelta(days=15)) == []
    assert scan(engine, settings, ends - timedelta(days=13)) == [(gid, "grant-expiring-14d")]
    assert scan(engine, settings, ends - timedelta(days=13)) == []  # cron again: nothing
    assert scan(engine, settings, ends - timedelta(days=2)) == []
    assert scan(engine, settings, ends - timedelta(hours=20)) == [(gid, "grant-expiring-1d")]
    assert scan(engine, settings, ends - timedelta(hours=2)) == []
    assert scan(engine, settings, ends + timedelta(hours=1)) == []  # ended: nothing more
    got = [n["kind"] for n in inbox(estate, "researcher")["items"]]
    assert got.count("grant-expiring-14d") == 1 and got.count("grant-expiring-1d") == 1
    assert "grant-expiring-1d" in [n["kind"] for n in inbox(estate, "pub-sm")["items"]]
    assert all("grant-expiring" not in n["kind"] for n in inbox(estate, "quality")["items"])
    # The audit trail lists what the scans wrote, one entry per scan that wrote something.
    r = estate.call("root", "GET", "/api/v1/audit", params={"action": "notification.scan"})
    assert [e["actor"] for e in r.json()["items"]] == ["cli:cron", "cli:cron"]


def test_a_grant_first_seen_with_hours_left_gets_only_the_last_notice(estate, engine, settings):
    grant = granted(estate, 30)
    ends = _parse(grant["expires_at"])
    assert scan(engine, settings, ends - timedelta(hours=3)) == [(grant["id"], "grant-expiring-1d")]


def test_review_due_is_told_once_per_review_date_and_to_admins(estate, engine, settings, clock):
    _, grant = estate.approved_grant()
    gid, due = grant["id"], _parse(grant["review_due_at"])
    assert scan(engine, settings, due - timedelta(days=1)) == []
    assert scan(engine, settings, due + timedelta(hours=1)) == [(gid, "grant-review-due")]
    assert scan(engine, settings, due + timedelta(days=2)) == []
    for who in ("researcher", "pub-sm", "admin2"):
        assert "grant-review-due" in [n["kind"] for n in inbox(estate, who)["items"]], who
    # Reviewed, the next review date is told again when it comes.
    clock.current = due + timedelta(days=3)
    r = estate.call("root", "POST", f"/api/v1/grants/{gid}/review", json={"reason": "ok"})
    assert r.status_code == 200, r.text
    next_due = _parse(r.json()["review_due_at"])
    assert scan(engine, settings, next_due + timedelta(hours=1)) == [(gid, "grant-review-due")]
    # Suspended (past the grace period) or revoked: nothing more to say.
    grace = timedelta(days=settings.grant_review_grace_days + 1)
    assert scan(engine, settings, next_due + grace) == []


def test_revoked_grants_are_not_scanned(estate, engine, settings):
    grant = granted(estate, 30)
    r = estate.call(
        "admin2", "POST", f"/api/v1/grants/{grant['id']}/revoke", json={"reason": "ended"}
    )
    assert r.status_code == 200
    assert scan(engine, settings, _parse(grant["expires_at"]) - timedelta(hours=1)) == []


def test_sixteen_concurrent_scans_write_each_notice_once(estate, engine, settings, backend):
    if backend != "postgresql":
        pytest.skip("SQLite has a single writer; PostgreSQL exercises the unique-key race")
    # Reviews every 3 days (the app reads the same settings object): 7 days on, each grant
    # is due for review and ends within 14 days, two notices each.
    settings.grant_review_days = 3
    grants = [granted(estate, 20) for _ in range(3)]
    now = _parse(grants[0]["created_at"]) + timedelta(days=7)
    # 16 scans released at once (tests/live.py: a hang fails instead of stalling the suite).
    results = together(lambda _: scan(engine, settings, now), 16, timeout=120)
    written = sorted(item for result in results for item in result)
    expected = sorted(
        (g["id"], kind) for g in grants for kind in _kinds_due(engine, settings, g, now)
    )
    assert len(expected) == 6, expected  # ending within 14 days and due for review, each
    assert written == expected  # each (grant, kind) written by exactly one of the 16 scans
    with Session(engine) as session:
        per_key = session.exec(
            select(Notification.grant_id, Notification.kind, func.count())
            .where(Notification.grant_id.is_not(None))  # type: ignore[union-attr]
            .group_by(Notification.grant_id, Notification.kind)
        ).all()
        assert sorted((g, str(k)) for g, k, _ in per_key) == expected
        assert {count for _, _, count in per_key} == {1}
        # ...and each recipient has exactly one copy of each.
        copies = session.exec(
            select(
                NotificationRecipient.principal, NotificationRecipient.notification_id, func.count()
            ).group_by(NotificationRecipient.principal, NotificationRecipient.notification_id)
        ).all()
        assert {count for _, _, count in copies} == {1}


def _kinds_due(engine, settings, grant, now):
    from policies.duas.service import get_dua
    from policies.notifications.scan import due_notices

    with Session(engine) as session:
        row = session.get(Grant, grant["id"])
        dua = get_dua(session, row.dua_id)
        return [str(d.kind) for d in due_notices(row, dua, now, settings)]
