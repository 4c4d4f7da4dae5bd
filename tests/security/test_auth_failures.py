"""The failure limiter under concurrency, and whom it may lock out: only failures.

The probe: 64 simultaneous bad tokens from one address got 17-43 401s before the first 429 (the
check ran before any of them was counted); anyone who knew a token id could lock its recipient
out; one client retrying an expired token locked every valid credential of its address out,
MESH_ADMIN_TOKEN included. Real servers on loopback, real threads, real source addresses
(127.0.0.2 is a second loopback address).
"""

import http.client
import json
from collections import Counter
from contextlib import ExitStack

import pytest

from tests.conftest import ADMIN_TOKEN
from tests.live import free_port, serving, together

pytestmark = pytest.mark.slow

CLIENTS = 64
HARD_TIMEOUT = 180
ELSEWHERE = "127.0.0.2"


def call(
    port: int,
    path: str,
    token: str | None,
    *,
    source: str = "127.0.0.1",
    method: str = "GET",
    body: object = None,
) -> tuple[int, dict[str, str], object]:
    """One request from `source`: (status, headers, JSON body)."""
    connection = http.client.HTTPConnection(
        "127.0.0.1", port, timeout=120, source_address=(source, 0)
    )
    try:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        payload = None
        if body is not None:
            payload = json.dumps(body)
            headers["Content-Type"] = "application/json"
        connection.request(method, path, body=payload, headers=headers)
        response = connection.getresponse()
        data = response.read()
        headers_in = {k.lower(): v for k, v in response.getheaders()}
        return response.status, headers_in, json.loads(data) if data else None
    finally:
        connection.close()


def burst(work) -> Counter[int]:
    return Counter(together(work, CLIENTS, timeout=HARD_TIMEOUT))


def past_the_limit(port: int, token: str, limit: int, source: str = "127.0.0.1") -> list[int]:
    """The statuses of `limit` + 3 calls with a wrong `token` from `source`: enough to lock out."""
    return [call(port, "/api/v1/domains", token, source=source)[0] for _ in range(limit + 3)]


@pytest.mark.parametrize("processes", [1, 2])
def test_concurrent_failures_from_one_address_get_at_most_the_limit_of_401s(
    backend, engine, settings, clock, processes
):
    """Two apps on one database stand for two workers: the limit holds across them too."""
    ports = [free_port() for _ in range(processes)]
    with ExitStack() as stack:
        for port in ports:
            stack.enter_context(serving(settings, port, engine=engine, clock=clock))
        paths = ("/api/v1/domains", "/delta-sharing/shares")

        def guess(i: int) -> int:
            token = f"mesh_{i:016x}_wrong" if i % 2 else f"dsr_{i:016x}_wrong"
            return call(ports[i % processes], paths[i % 2], token)[0]

        answers = burst(guess)
    limit = settings.auth_failure_limit
    assert set(answers) <= {401, 429}, answers
    assert 1 <= answers[401] <= limit, answers
    assert answers[429] == CLIENTS - answers[401]


def test_a_valid_credential_is_never_refused_by_the_failure_limiter(
    backend, engine, estate, settings, clock
):
    """An address locked out by its own failures still gets in with any valid credential."""
    issued = estate.call("root", "POST", "/api/v1/recipients/research-lab/tokens", json={})
    assert issued.status_code == 201, issued.text
    recipient = issued.json()["profile"]["bearerToken"]
    researcher = estate.tokens["researcher"]
    token_id = researcher.split("_")[1]
    port = free_port()
    with serving(settings, port, engine=engine, clock=clock):
        expired_retry = f"mesh_{token_id}_an-expired-or-mistyped-secret"
        seen = past_the_limit(port, expired_retry, settings.auth_failure_limit)
        assert seen[-1] == 429 and seen.count(401) == settings.auth_failure_limit, seen
        # The same address, the same token id even: valid credentials are let in.
        assert call(port, "/api/v1/domains", ADMIN_TOKEN)[0] == 200
        assert call(port, "/api/v1/access-requests", researcher)[0] == 200
        assert call(port, "/delta-sharing/shares", recipient)[0] == 200
        # And the failures are still limited.
        status, headers, body = call(port, "/delta-sharing/shares", "dsr_0123456789abcdef_x")
        assert status == 429 and int(headers["retry-after"]) >= 1, body


def test_failures_for_a_token_id_from_elsewhere_do_not_lock_its_owner_out(
    backend, engine, estate, settings, clock
):
    """Knowing a token id (its visible part) lets an attacker lock out only its own address."""
    researcher = estate.tokens["researcher"]
    token_id = researcher.split("_")[1]
    port = free_port()
    with serving(settings, port, engine=engine, clock=clock):
        forged = f"mesh_{token_id}_guessed-secret"
        attacker = past_the_limit(port, forged, settings.auth_failure_limit, source=ELSEWHERE)
        assert attacker[-1] == 429, attacker
        # The owner, from its own address: its token works, and one mistyped secret is a
        # plain 401, not a lockout another address caused.
        assert call(port, "/api/v1/access-requests", researcher)[0] == 200
        assert call(port, "/api/v1/domains", forged)[0] == 401
        # The attacker's address stays limited.
        assert call(port, "/api/v1/domains", forged, source=ELSEWHERE)[0] == 429
