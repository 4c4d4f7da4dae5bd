"""Remote callers cannot choose request ids in the CLI's `cli-` namespace.

`mesh audit query --request-id cli-...` finds what one `mesh` command wrote; a remote caller
sending `X-Request-ID: cli-...` must not be able to add entries to that group.
"""

import re
from typing import Any

import pytest
from litestar.testing import TestClient

from catalog.audit.context import (
    CLI_REQUEST_PREFIX,
    REQUEST_ID_HEADER,
    accepted_request_id,
    new_cli_request_id,
)
from tests.factories import domain_body

GENERATED = re.compile(r"^[0-9a-f]{32}$")


@pytest.mark.parametrize("incoming", ["cli-0123", "CLI-0123", "Cli-" + "a" * 32, "cli-"])
def test_a_remote_id_in_the_cli_namespace_is_replaced(
    client: TestClient[Any], incoming: str
) -> None:
    response = client.post(
        "/api/v1/domains", json=domain_body("riverside"), headers={REQUEST_ID_HEADER: incoming}
    )
    assert response.status_code == 201, response.text
    returned = response.headers[REQUEST_ID_HEADER]
    assert GENERATED.match(returned)
    page = client.get("/api/v1/audit", params={"action": "domain.create"}).json()
    [entry] = page["items"]
    assert entry["request_id"] == returned
    assert not entry["request_id"].lower().startswith(CLI_REQUEST_PREFIX)
    assert client.get("/api/v1/audit", params={"request_id": incoming}).json()["items"] == []


@pytest.mark.parametrize("incoming", ["client-1", "xcli-1", "my-cli-run", "cli_1"])
def test_other_remote_ids_are_kept(incoming: str) -> None:
    assert accepted_request_id(incoming) == incoming


def test_only_the_cli_makes_cli_ids() -> None:
    made = new_cli_request_id()
    assert made.startswith(CLI_REQUEST_PREFIX) and GENERATED.match(made.removeprefix("cli-"))
    assert accepted_request_id(made) != made
