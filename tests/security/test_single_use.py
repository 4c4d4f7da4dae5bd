"""Every single-use transition has one winner under concurrency, against a real server.

Revoking a grant, a DUA or a token checked the loaded row and then wrote it: concurrent requests
all passed the check, each answered 200 and audited its own revocation. Now each is a conditional
UPDATE (`catalog.db.claim`): one 200, the rest 409, one audit entry.
(Activation links: tests/security/test_recipient_credentials.py.)
"""

import requests
from sqlmodel import Session, select

from catalog.audit.models import AuditEvent
from tests.live import free_port, serving
from tests.security.test_contention import CALL_TIMEOUT, CLIENTS, burst, statuses


def _audited(engine, action: str) -> int:
    with Session(engine) as check:
        return len(check.exec(select(AuditEvent).where(AuditEvent.action == action)).all())


def _approved_grant(estate) -> int:
    dua = estate.dua()
    rid = estate.request(dua_id=dua["id"]).json()["id"]
    approved = estate.call("admin1", "POST", f"/api/v1/access-requests/{rid}/approve", json={})
    assert approved.status_code == 200, approved.text
    return int(approved.json()["items"][0]["id"])


def test_concurrent_revocations_of_one_grant_revoke_it_once(
    backend, engine, estate, settings, clock
):
    grant_id = _approved_grant(estate)
    root = estate.as_("root")
    port = free_port()
    with serving(settings, port, engine=engine, clock=clock):
        answers = burst(
            lambda i: requests.post(
                f"http://127.0.0.1:{port}/api/v1/grants/{grant_id}/revoke",
                json={"reason": f"revocation {i}"},
                headers=root,
                timeout=CALL_TIMEOUT,
            )
        )
    assert statuses(answers) == {200: 1, 409: CLIENTS - 1}, [a.text for a in answers]
    assert _audited(engine, "grant.revoke") == 1


def test_concurrent_revocations_of_one_dua_and_one_token_happen_once(
    backend, engine, estate, settings, clock
):
    dua = estate.dua()
    token_id = estate.tokens["quality"].split("_")[1]
    root = estate.as_("root")
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    with serving(settings, port, engine=engine, clock=clock):
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
    assert statuses(duas) == {200: 1, 409: CLIENTS - 1}, [a.text for a in duas]
    assert statuses(tokens) == {200: 1, 409: CLIENTS - 1}, [a.text for a in tokens]
    assert _audited(engine, "dua.revoke") == 1
    assert _audited(engine, "token.revoke") == 1
