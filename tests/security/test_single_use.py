"""Every single-use transition has one winner under concurrency, against a real server.

Revoking a grant, a DUA or a token checked the loaded row and then wrote it: concurrent requests
all passed the check, each answered 200 and audited its own revocation. Now each is a conditional
UPDATE (`catalog.kernel.db.claim`): one 200, the rest 409, one audit entry.
(Activation links: tests/security/test_recipient_credentials.py.)
"""

import requests
from sqlmodel import Session, select

from catalog.audit.models import AuditEvent
from tests.live import served
from tests.security.test_contention import CALL_TIMEOUT, assert_one_winner, burst


def _audited(engine, action: str) -> int:
    with Session(engine) as check:
        return len(check.exec(select(AuditEvent).where(AuditEvent.action == action)).all())


def test_concurrent_revocations_of_one_grant_revoke_it_once(
    backend, engine, estate, settings, clock
):
    grant_id = int(estate.approved_grant()[1]["id"])
    root = estate.as_("root")
    with served(settings, engine=engine, clock=clock) as base:
        answers = burst(
            lambda i: requests.post(
                f"{base}/api/v1/grants/{grant_id}/revoke",
                json={"reason": f"revocation {i}"},
                headers=root,
                timeout=CALL_TIMEOUT,
            )
        )
    assert_one_winner(answers)
    assert _audited(engine, "grant.revoke") == 1


def test_concurrent_revocations_of_one_dua_and_one_token_happen_once(
    backend, engine, estate, settings, clock
):
    dua = estate.dua()
    token_id = estate.tokens["quality"].split("_")[1]
    root = estate.as_("root")
    with served(settings, engine=engine, clock=clock) as base:
        duas = burst(
            lambda i: requests.post(
                f"{base}/api/v1/duas/{dua['id']}/revoke",
                json={"reason": f"ended {i}"},
                headers=root,
                timeout=CALL_TIMEOUT,
            )
        )
        tokens = burst(
            lambda _: requests.post(
                f"{base}/api/v1/principals/tokens/{token_id}/revoke",
                headers=root,
                timeout=CALL_TIMEOUT,
            )
        )
    assert_one_winner(duas)
    assert_one_winner(tokens)
    assert _audited(engine, "dua.revoke") == 1
    assert _audited(engine, "token.revoke") == 1
