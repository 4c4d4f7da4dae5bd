"""Single-use credentials stay single-use under concurrency (real server, real threads).

An activation link used to be read (`used_at`), then a token inserted and `used_at` set: 16
simultaneous downloads on PostgreSQL got 16 working tokens. Now one conditional update claims
the link; exactly one download succeeds, the rest get 409 in the protocol's error shape.
Rotation and "revoke all" serialise on the recipient, so neither misses a token the other made.
"""

from datetime import UTC, datetime, timedelta

import pytest
import requests
from sqlalchemy.engine import Engine
from sqlmodel import Session, col, select

from catalog.audit.models import AuditEvent
from catalog.audit.record import Operator
from catalog.kernel.settings import Settings
from policies.auth import split_secret
from policies.principals.models import Organization
from sharing.recipients import service as recipients
from sharing.recipients.models import RecipientToken
from tests.factories import activation_link, organization
from tests.live import free_port, serving, together

THREADS = 16
TIMEOUT = 60  # seconds: a hang fails instead of stalling the suite


def _organization(session: Session, name: str) -> Organization:
    org = organization(name)
    session.add(org)
    session.commit()
    return org


def _together(count: int, call):  # type: ignore[no-untyped-def]
    """`call()` in `count` threads released at once by a barrier; their results."""
    return together(lambda _: call(), count, timeout=TIMEOUT, barrier_timeout=TIMEOUT)


@pytest.fixture
def server(engine: Engine, settings: Settings):  # type: ignore[no-untyped-def]
    port = free_port()
    live = settings.model_copy(update={"port": port})
    with serving(live, port, engine=engine):
        yield f"http://127.0.0.1:{port}"


def test_an_activation_link_is_redeemed_once_under_concurrency(engine, server):
    with Session(engine, expire_on_commit=False) as session:
        org = _organization(session, "race-lab")
        link = activation_link(session, org)
        session.commit()
    url = f"{server}/delta-sharing/activation/{link}"
    answers = _together(THREADS, lambda: requests.post(url, timeout=TIMEOUT))
    statuses = sorted(a.status_code for a in answers)
    assert statuses == [200] + [409] * (THREADS - 1), [a.text for a in answers]
    for refused in (a for a in answers if a.status_code == 409):
        assert refused.json()["errorCode"] and "already used" in refused.json()["message"]
    (won,) = [a for a in answers if a.status_code == 200]
    token = won.json()["bearerToken"]
    shares = requests.get(
        f"{server}/delta-sharing/shares", headers={"Authorization": f"Bearer {token}"}, timeout=10
    )
    assert shares.status_code == 200
    with Session(engine) as session:
        tokens = session.exec(
            select(RecipientToken).where(RecipientToken.organization_id == org.id)
        ).all()
        redeemed = session.exec(
            select(AuditEvent).where(
                AuditEvent.action == "recipient.activation.redeem", AuditEvent.subject == "race-lab"
            )
        ).all()
    assert len(tokens) == 1
    assert len(redeemed) == 1
    parts = split_secret(token, recipients.TOKEN_PREFIX)
    assert parts is not None and parts[0] == tokens[0].id


def test_concurrent_rotations_and_revoke_all_leave_no_live_token(engine):
    """Rotations racing a "revoke all": after the revocation commits, no token minted by a
    rotation that committed before it may outlive it (each sees the others' tokens)."""
    with Session(engine, expire_on_commit=False) as session:
        org = _organization(session, "rotate-lab")
        recipients.issue_recipient_token(session, org, days=30, now=datetime.now(UTC))
        session.commit()
    now = datetime.now(UTC)

    def rotate() -> str:
        with Session(engine, expire_on_commit=False) as session:
            org_here = session.get(Organization, org.id)
            assert org_here is not None
            token, _ = recipients.rotate_token(
                session, org_here, days=30, grace=timedelta(0), actor=Operator("cli:t"), now=now
            )
            session.commit()
            return token.id

    minted = _together(8, rotate)
    with Session(engine) as session:
        live = [
            t.id
            for t in session.exec(
                select(RecipientToken).where(
                    RecipientToken.organization_id == org.id,
                    col(RecipientToken.revoked_at).is_(None),
                )
            ).all()
            if t.expires_at > now
        ]
    # Serialised rotations: each shortened every token before it (grace 0), so one lives.
    assert len(live) == 1 and live[0] in minted
