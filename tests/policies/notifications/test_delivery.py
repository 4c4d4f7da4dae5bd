"""Webhook and e-mail delivery through real receivers on loopback: signed, retried, bounded."""

import logging
from datetime import timedelta

import pytest
from pydantic import SecretStr, ValidationError
from sqlmodel import Session, col, select

from catalog.kernel.settings import Settings
from policies.notifications.delivery import deliver_due
from policies.notifications.models import DeliveryStatus, NotificationDelivery
from tests.policies.notifications.conftest import (
    SMTP_PASSWORD,
    SMTP_USER,
    WEBHOOK_SECRET,
    SmtpSink,
    free_port,
)


def channels(settings: Settings, *, webhook=None, smtp=None, **more) -> Settings:
    update = {
        "notify_admin_emails": ["platform-admins@example.org"],
        "notify_poll_seconds": 0,
        "public_url": "https://mesh.example.org",
        "notify_retry_seconds": 60,
        "notify_smtp_timeout_seconds": 5,
        "notify_webhook_timeout_seconds": 5,
    }
    if webhook is not None:
        update |= {"notify_webhook_url": webhook.url, "notify_webhook_secret": WEBHOOK_SECRET}
    if smtp is not None:
        update |= {
            "notify_smtp_host": "127.0.0.1",
            "notify_smtp_port": smtp.port,
            "notify_smtp_starttls": False,
            "notify_smtp_username": SMTP_USER,
            "notify_smtp_password": SMTP_PASSWORD,
            "notify_smtp_from": "mesh@example.org",
        }
    return Settings(**(settings.model_dump() | update | more))  # validated like MESH_* values


def deliveries(engine) -> list[NotificationDelivery]:
    with Session(engine) as session:
        return list(
            session.exec(select(NotificationDelivery).order_by(col(NotificationDelivery.id))).all()
        )


def file_request(estate) -> int:
    dua = estate.dua()
    r = estate.request(dua_id=dua["id"])
    assert r.status_code == 201, r.text
    return r.json()["id"]


def test_a_filed_request_is_posted_signed_and_mailed(
    estate, engine, settings, clock, webhook, smtp
):
    wired = channels(settings, webhook=webhook, smtp=smtp)
    rid = file_request(estate)
    report = deliver_due(engine, settings=wired, clock=clock)
    assert report.dispatched == 1 and report.failed == [] and report.retrying == []
    assert len(report.sent) == 3  # the webhook, the admins' address, the product owner's

    (post,) = webhook.posts
    assert post.path == "/hooks/mesh"
    assert post.headers["Content-Type"] == "application/json"
    assert post.signed_with(WEBHOOK_SECRET)
    assert not post.signed_with("another-secret")
    body = post.json
    assert body["kind"] == "request-filed" and body["request_id"] == rid
    assert post.headers["X-Mesh-Event"] == "request-filed"
    assert post.headers["X-Mesh-Delivery"] == str(body["delivery"])
    assert body["links"]["admin"] == f"https://mesh.example.org/console/review/{rid}"
    assert body["links"]["owner"] == "https://mesh.example.org/console/catalog/st-marys/patients"
    assert {r["principal"] for r in body["recipients"]} == {"admin1", "admin2", "dual", "pub-sm"}
    assert "Cohort study" not in post.body.decode()  # the justification never leaves

    mails = {tuple(to): message for to, message in smtp.messages}
    assert set(mails) == {("platform-admins@example.org",), ("registration@example.org",)}
    admins = mails[("platform-admins@example.org",)]
    assert admins["Subject"] == f"[FHIR Mesh] Access request #{rid} filed"
    assert admins["From"] == "mesh@example.org"
    text = admins.get_payload(decode=True).decode()
    assert f"https://mesh.example.org/console/review/{rid}" in text
    assert "because you are a platform admin" in text
    assert "https://mesh.example.org/console/catalog/st-marys/patients" in (
        mails[("registration@example.org",)].get_payload(decode=True).decode()
    )
    assert smtp.sink.logins == [SMTP_USER, SMTP_USER]  # credentials from the settings

    # Delivered is delivered: the next round sends nothing again.
    again = deliver_due(engine, settings=wired, clock=clock)
    assert (again.dispatched, again.sent) == (0, [])
    assert len(webhook.posts) == 1 and len(smtp.messages) == 2
    assert {d.status for d in deliveries(engine)} == {DeliveryStatus.SENT}


def test_decisions_are_mailed_to_the_requesting_organisation(estate, engine, settings, clock, smtp):
    wired = channels(settings, smtp=smtp)
    rid = file_request(estate)
    assert estate.approve(rid).status_code == 200
    deliver_due(engine, settings=wired, clock=clock)
    approved = [m for to, m in smtp.messages if "approved" in m["Subject"]]
    assert [m["To"] for m in approved] == ["lead@research-lab.example.org"]
    assert f"/console/my/requests#request-{rid}" in approved[0].get_payload(decode=True).decode()


def test_an_outage_loses_nothing_and_retries_later(estate, engine, settings, clock, webhook):
    """SMTP server down and webhook answering 503: the change succeeds, the rows wait with
    their error, nothing is sent early, and the next round after the backoff delivers all."""
    sink = SmtpSink(port=free_port())  # not started: connection refused
    wired = channels(settings, webhook=webhook, smtp=sink)
    webhook.status = 503
    rids = [file_request(estate) for _ in range(2)]  # the API answered 201 both times

    first = deliver_due(engine, settings=wired, clock=clock)
    assert first.sent == [] and first.failed == [] and len(first.retrying) == 6
    rows = deliveries(engine)
    assert {(r.status, r.attempts) for r in rows} == {(DeliveryStatus.PENDING, 1)}
    assert all(r.last_error for r in rows)
    assert {r.last_error for r in rows if r.channel == "webhook"} == {"webhook answered 503"}
    assert all("SMTP server unreachable" in r.last_error for r in rows if r.channel == "email")
    assert all(r.next_attempt_at == clock.now() + timedelta(seconds=60) for r in rows)

    clock.advance(seconds=30)  # before the backoff: nothing is tried
    early = deliver_due(engine, settings=wired, clock=clock)
    assert (early.sent, early.retrying, early.failed) == ([], [], [])
    assert len(webhook.posts) == 2  # only the first round's two attempts reached it

    webhook.status = 204
    sink.start()
    try:
        clock.advance(seconds=31)
        later = deliver_due(engine, settings=wired, clock=clock)
        assert len(later.sent) == 6 and later.retrying == [] and later.failed == []
        assert {(r.status, r.attempts) for r in deliveries(engine)} == {(DeliveryStatus.SENT, 2)}
        delivered = sorted(p.json["request_id"] for p in webhook.posts if p.json["request_id"])
        assert delivered == sorted(rids * 2)  # two 503s, then each once
        assert len(sink.messages) == 4  # two notifications, two addresses each
    finally:
        sink.stop()


def test_attempts_are_bounded_and_the_failure_is_visible(
    estate, engine, settings, clock, webhook, caplog
):
    wired = channels(settings, webhook=webhook, notify_max_attempts=3)
    webhook.status = 500
    file_request(estate)
    waits = []
    for _ in range(3):
        report = deliver_due(engine, settings=wired, clock=clock)
        (row,) = deliveries(engine)
        waits.append(row.next_attempt_at - clock.now())
        clock.current = row.next_attempt_at
    assert report.failed == [row.id]
    assert row.status == DeliveryStatus.FAILED and row.attempts == 3
    assert waits[:2] == [timedelta(seconds=60), timedelta(seconds=120)]  # doubling backoff
    assert len(webhook.posts) == 3
    assert deliver_due(engine, settings=wired, clock=clock).sent == []  # given up: no 4th
    assert len(webhook.posts) == 3
    assert any(
        r.levelno == logging.ERROR and "failed after 3 attempt(s)" in r.getMessage()
        for r in caplog.records
    )
    r = estate.call(
        "root", "GET", "/api/v1/audit", params={"action": "notification.delivery_failed"}
    )
    (entry,) = r.json()["items"]
    assert entry["outcome"] == "failed" and entry["reason"] == "webhook answered 500"
    assert entry["actor"] == "system:notifications"


def test_a_refusal_by_the_receiver_is_not_retried(estate, engine, settings, clock, webhook):
    wired = channels(settings, webhook=webhook)
    webhook.status = 410
    file_request(estate)
    report = deliver_due(engine, settings=wired, clock=clock)
    assert len(report.failed) == 1 and report.retrying == []


def test_starttls_with_the_configured_ca(estate, engine, settings, clock, tls_files):
    import ssl

    cert, key = tls_files
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    sink = SmtpSink(port=free_port(), tls=context)
    sink.start()
    try:
        wired = channels(settings, smtp=sink, notify_smtp_starttls=True, notify_smtp_ca_file=cert)
        file_request(estate)
        report = deliver_due(engine, settings=wired, clock=clock)
        assert len(report.sent) == 2 and len(sink.messages) == 2
        assert sink.sink.logins == [SMTP_USER, SMTP_USER]  # AUTH only after STARTTLS
    finally:
        sink.stop()


def test_channels_off_means_nothing_leaves(estate, engine, settings, clock):
    file_request(estate)
    report = deliver_due(engine, settings=settings, clock=clock)
    assert report.dispatched == 1 and deliveries(engine) == []


@pytest.mark.parametrize(
    ("url", "accepted"),
    [
        ("https://hooks.example.org/mesh", True),
        ("http://127.0.0.1:9000/hook", True),
        ("http://localhost/hook", True),
        ("http://[::1]:8080/hook", True),
        ("http://hooks.example.org/mesh", False),
        ("http://10.0.0.5/hook", False),
        ("ftp://hooks.example.org/x", False),
    ],
)
def test_webhooks_need_https_except_on_loopback(url, accepted):
    def build():
        return Settings(notify_webhook_url=url, notify_webhook_secret=WEBHOOK_SECRET)

    if accepted:
        assert build().notify_webhook_url == url
    else:
        with pytest.raises(ValidationError, match="https|http"):
            build()


def test_a_webhook_needs_a_secret():
    with pytest.raises(ValidationError, match="MESH_NOTIFY_WEBHOOK_SECRET"):
        Settings(notify_webhook_url="https://hooks.example.org/mesh")


def test_a_serving_app_delivers_from_the_outbox_on_its_own(estate, engine, settings, webhook):
    """The app's delivery thread picks the notification up after the request's commit."""
    from litestar.testing import TestClient

    from catalog.app import create_app
    from tests.conftest import ADMIN_TOKEN

    wired = channels(settings, webhook=webhook, notify_poll_seconds=0.05)
    dua = estate.dua()
    with TestClient(create_app(wired, engine=engine, clock=estate.clock)) as client:
        r = client.post(
            "/api/v1/access-requests",
            headers=estate.as_("researcher"),
            json={
                "products": ["st-marys/patients"],
                "tier": "deidentified",
                "dua_id": dua["id"],
                "purpose": "research",
                "justification": "Cohort study of sepsis outcomes across the network",
            },
        )
        assert r.status_code == 201, r.text
        assert webhook.arrived.wait(timeout=20), "the delivery thread never posted"
        assert client.get("/healthz", headers={"Authorization": f"Bearer {ADMIN_TOKEN}"})
    (post,) = webhook.posts
    assert post.json["kind"] == "request-filed" and post.signed_with(WEBHOOK_SECRET)


def test_turning_a_channel_on_does_not_replay_old_notifications(
    estate, engine, settings, clock, webhook
):
    file_request(estate)  # written while nothing was configured, and nothing delivered
    clock.advance(days=8)
    rid = file_request(estate)
    report = deliver_due(engine, settings=channels(settings, webhook=webhook), clock=clock)
    assert report.dispatched == 2 and len(report.sent) == 1
    assert [p.json["request_id"] for p in webhook.posts] == [rid]


def test_a_webhook_that_never_answers_times_out_and_is_retried(estate, engine, settings, clock):
    """A listening socket that accepts nothing: the POST gives up after the configured timeout
    instead of holding the outbox."""
    import socket

    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen(8)
    try:
        url = f"http://127.0.0.1:{silent.getsockname()[1]}/hook"
        wired = channels(
            settings,
            notify_webhook_timeout_seconds=0.5,
            notify_webhook_url=url,
            notify_webhook_secret=WEBHOOK_SECRET,
        )
        file_request(estate)
        report = deliver_due(engine, settings=wired, clock=clock)
        assert len(report.retrying) == 1
        (row,) = deliveries(engine)
        assert row.status == DeliveryStatus.PENDING and "timed out" in row.last_error
    finally:
        silent.close()


def test_mesh_serve_refuses_a_guessable_webhook_secret():
    key = "Zq3" + "x9Lp2Wm7Rt5Yk8Nv4Bc6Hd1Jf0Gs" + "Ua"  # 33 random-looking characters
    weak = Settings(
        signing_key=key,
        notify_webhook_url="https://hooks.example.org/mesh",
        notify_webhook_secret="password1234password1234password1234",
    )
    assert any("MESH_NOTIFY_WEBHOOK_SECRET" in p for p in weak.production_problems())
    strong = weak.model_copy(update={"notify_webhook_secret": SecretStr(WEBHOOK_SECRET)})
    assert not any("MESH_NOTIFY_WEBHOOK_SECRET" in p for p in strong.production_problems())
