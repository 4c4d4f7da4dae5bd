"""Brute-force protection on the sharing endpoints: failures are audited and rate limited."""

from litestar.testing import TestClient
from sqlmodel import Session, select

from catalog.app import create_app
from catalog.audit.models import AuditEvent
from tests.problems import assert_problem, assert_protocol_error


def assert_locked_out(client, path, headers, limit, assert_refused):
    """`limit` calls of `path` with bad `headers` are refused 401, the next one 429 with a
    Retry-After; `assert_refused(answer, status)` judges each answer's body."""
    for _ in range(limit):
        assert_refused(client.get(path, headers=headers), 401)
    locked = client.get(path, headers=headers)
    assert_refused(locked, 429)
    assert int(locked.headers["Retry-After"]) >= 1


def test_failed_tokens_are_audited_then_locked_out(client, engine, clock, settings):
    bad = {"Authorization": "Bearer dsr_0123456789abcdef_not-the-secret-at-all"}
    limit = settings.auth_failure_limit
    assert_locked_out(client, "/delta-sharing/shares", bad, limit, assert_protocol_error)
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
    assert_locked_out(client, "/api/v1/domains", bad, settings.auth_failure_limit, assert_problem)


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
