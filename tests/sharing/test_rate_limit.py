"""Brute-force protection on the sharing endpoints: failures are audited and rate limited."""

from litestar.testing import TestClient
from sqlmodel import Session, select

from catalog.app import create_app
from catalog.audit.models import AuditEvent
from tests.problems import assert_problem, assert_protocol_error


def test_failed_tokens_are_audited_then_locked_out(client, engine, clock, settings):
    bad = {"Authorization": "Bearer dsr_0123456789abcdef_not-the-secret-at-all"}
    for _ in range(settings.auth_failure_limit):
        assert_protocol_error(client.get("/delta-sharing/shares", headers=bad), 401)
    locked = client.get("/delta-sharing/shares", headers=bad)
    assert_protocol_error(locked, 429)
    assert int(locked.headers["Retry-After"]) >= 1
    # Another token from the same address is locked out too (per-address count).
    other = {"Authorization": "Bearer dsr_fedcba9876543210_another-guess-entirely"}
    assert_protocol_error(client.get("/delta-sharing/shares", headers=other), 429)
    clock.advance(seconds=settings.auth_failure_window_seconds + 1)
    assert_protocol_error(client.get("/delta-sharing/shares", headers=bad), 401)

    with Session(engine) as session:
        failures = session.exec(select(AuditEvent).where(AuditEvent.action == "auth.failed")).all()
    assert len(failures) == settings.auth_failure_limit + 1
    assert {f.token_id for f in failures} == {"0123456789abcdef"}
    assert all("not-the-secret" not in str(f.details) + (f.reason or "") for f in failures)
    assert all(f.outcome == "failed" for f in failures)


def test_api_authentication_failures_are_rate_limited(client, settings):
    bad = {"Authorization": "Bearer mesh_0123456789abcdef_wrong-secret-guess"}
    for _ in range(settings.auth_failure_limit):
        assert_problem(client.get("/api/v1/domains", headers=bad), 401)
    locked = client.get("/api/v1/domains", headers=bad)
    assert_problem(locked, 429)
    assert int(locked.headers["Retry-After"]) >= 1


def test_the_limit_is_shared_by_every_process_on_the_database(client, engine, clock, settings):
    """Two apps on one database stand for two workers (or hosts): failures add up across them."""
    bad = {"Authorization": "Bearer dsr_0123456789abcdef_not-the-secret-at-all"}
    with TestClient(create_app(settings, engine=engine, clock=clock)) as other:
        workers = [
            client if attempt % 2 else other for attempt in range(settings.auth_failure_limit)
        ]
        for worker in workers:
            assert_protocol_error(worker.get("/delta-sharing/shares", headers=bad), 401)
        last, first = workers[-1], workers[-2]
        assert_protocol_error(last.get("/delta-sharing/shares", headers=bad), 429)
        # The other process reads the recorded failures back with its next one: no extra 401.
        assert_protocol_error(first.get("/delta-sharing/shares", headers=bad), 429)
        assert_protocol_error(first.get("/delta-sharing/shares", headers=bad), 429)
        clock.advance(seconds=settings.auth_failure_window_seconds + 1)
        assert_protocol_error(other.get("/delta-sharing/shares", headers=bad), 401)
