"""Console sessions end on the server: a signed-out cookie replayed is refused."""

from sqlmodel import Session, select

from catalog.audit.models import AuditEvent
from catalog.console.models import ConsoleSignOut
from catalog.console.session import COOKIE, LIFETIME


def test_a_signed_out_cookie_replayed_is_refused_and_audited(people, engine, clock):
    p = people("researcher")
    copied = p.client.cookies.get(COOKIE)
    assert p.get("/console/").status_code == 200
    assert p.post("/console/sign-out", {}).status_code == 303

    thief = people()
    thief.client.cookies.set(COOKIE, copied, path="/console")
    r = thief.get("/console/my/grants", follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"].startswith("/console/sign-in")
    with Session(engine) as s:
        row = s.exec(select(ConsoleSignOut)).one()
        assert row.principal == "researcher"
        failures = s.exec(
            select(AuditEvent).where(
                AuditEvent.action == "auth.failed", AuditEvent.reason == "console session ended"
            )
        ).all()
    assert len(failures) == 1

    # Another session of the same person is not affected, and signs in afresh.
    again = people("researcher")
    assert again.get("/console/").status_code == 200


def test_signed_out_ids_are_pruned_once_their_lifetime_is_over(people, engine, clock):
    first = people("researcher")
    assert first.post("/console/sign-out", {}).status_code == 303
    clock.advance(seconds=LIFETIME.total_seconds() + 1)
    second = people("researcher")
    assert second.post("/console/sign-out", {}).status_code == 303
    with Session(engine) as s:
        rows = s.exec(select(ConsoleSignOut)).all()
    assert len(rows) == 1  # the first id had expired anyway: pruned at the next sign-out
