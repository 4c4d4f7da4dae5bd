"""A governed estate through the real API, and people using the console with their own cookies."""

import re

import pytest
from litestar.testing import TestClient

from catalog.app import create_app
from catalog.audit.record import Actor, record
from catalog.kernel.db import transaction
from tests.policies.conftest import PRINCIPALS, Estate, estate  # noqa: F401  (the fixture)

CSRF = re.compile(r'name="_csrf" value="([^"]+)"')


class Person:
    """One browser: its own cookie jar, signed in with one principal's API token."""

    def __init__(self, client: TestClient) -> None:
        self.client = client

    def csrf(self, path: str = "/console/sign-in") -> str:
        page = self.client.get(path)
        found = CSRF.search(page.text)
        assert found, page.text
        return found.group(1)

    def sign_in(self, token: str):
        csrf = self.csrf()
        return self.client.post(
            "/console/sign-in",
            data={"token": token, "_csrf": csrf},
            follow_redirects=False,
        )

    def get(self, path: str, **kw):
        return self.client.get(path, **kw)

    def post(self, path: str, data: dict, *, csrf_from: str = "/console/", **kw):
        data = {"_csrf": self.csrf(csrf_from), **data}
        return self.client.post(path, data=data, follow_redirects=False, **kw)


@pytest.fixture
def people(settings, engine, clock, estate):  # noqa: F811
    """`people(name)`: a signed-in browser for a principal of the estate ('root': env admin)."""
    clients = []

    def person(name: str | None = None) -> Person:
        client = TestClient(create_app(settings, engine=engine, clock=clock))
        client.__enter__()
        clients.append(client)
        p = Person(client)
        if name is not None:
            token = estate.tokens[name] if name != "root" else None
            from tests.conftest import ADMIN_TOKEN

            r = p.sign_in(token or ADMIN_TOKEN)
            assert r.status_code == 303, r.text
        return p

    yield person
    for c in clients:
        c.__exit__(None, None, None)


def record_read(engine, at, *, version, dua, files, size):
    """A research-lab read of st-marys/patients at the deidentified tier, as sharing records it."""
    with transaction(engine) as s:
        record(
            s,
            at=at,
            actor=Actor("recipient:research-lab"),
            action="sharing.query",
            subject=("table", "st-marys.default.patients"),
            organization="research-lab",
            product="st-marys/patients",
            product_version=version,
            tier="deidentified",
            details={"dua": dua, "purpose": "research", "files": files, "bytes": size},
        )


def deprecate(governed: Estate, version: str, reason: str) -> None:
    """pub-sm deprecates a version of st-marys/patients through the API."""
    r = governed.call(
        "pub-sm",
        "POST",
        f"/api/v1/products/st-marys/patients/versions/{version}/deprecate",
        json={"reason": reason},
    )
    assert r.status_code == 200, r.text
