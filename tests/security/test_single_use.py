"""Every single-use transition has one winner under concurrency, against a real server.

Revoking a grant, a DUA or a token checked the loaded row and then wrote it: concurrent requests
all passed the check, each answered 200 and audited its own revocation. Now each is a conditional
UPDATE (`catalog.kernel.db.claim`): one 200, the rest 409, one audit entry.
(Activation links: tests/security/test_recipient_credentials.py.)
"""

from sqlmodel import Session, select

from catalog.audit.models import AuditEvent
from tests.live import served
from tests.security.test_contention import assert_one_winner, burst_posts


def _audited(engine, action: str) -> int:
    with Session(engine) as check:
        return len(check.exec(select(AuditEvent).where(AuditEvent.action == action)).all())


def test_concurrent_revocations_of_one_grant_revoke_it_once(
    backend, engine, estate, settings, clock
):
    grant_id = int(estate.approved_grant()[1]["id"])
    root = estate.as_("root")
    with served(settings, engine=engine, clock=clock) as base:
        answers = burst_posts(
            f"{base}/api/v1/grants/{grant_id}/revoke",
            [root],
            lambda i: {"reason": f"revocation {i}"},
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
        duas = burst_posts(
            f"{base}/api/v1/duas/{dua['id']}/revoke", [root], lambda i: {"reason": f"ended {i}"}
        )
        tokens = burst_posts(f"{base}/api/v1/principals/tokens/{token_id}/revoke", [root])
    assert_one_winner(duas)
    assert_one_winner(tokens)
    assert _audited(engine, "dua.revoke") == 1
    assert _audited(engine, "token.revoke") == 1
