"""A governed estate through the real API: principals with real tokens, DUAs, products."""

from dataclasses import dataclass, field
from datetime import timedelta

import pytest
from litestar.testing import TestClient

from catalog.app import create_app
from tests.conftest import ADMIN_TOKEN
from tests.factories import domain_body, product_body

PRINCIPALS = {
    "admin1": {"roles": ["platform-admin"]},
    "admin2": {"roles": ["platform-admin"]},
    "pub-sm": {"roles": ["publisher"], "domains": ["st-marys"]},
    "pub-rv": {"roles": ["publisher"], "domains": ["riverside"]},
    "researcher": {"roles": ["consumer"], "organization": "research-lab"},
    "quality": {"roles": ["consumer"], "organization": "quality-team"},
    "auditor1": {"roles": ["auditor"]},
    "dual": {"roles": ["platform-admin", "consumer"], "organization": "quality-team"},
}
DOC = "a" * 64


@dataclass
class Estate:
    client: TestClient
    clock: object
    tokens: dict[str, str] = field(default_factory=dict)

    def as_(self, who: str) -> dict[str, str]:
        token = ADMIN_TOKEN if who == "root" else self.tokens[who]
        return {"Authorization": f"Bearer {token}"}

    def call(self, who, method, path, **kw):
        return self.client.request(method, path, headers=self.as_(who), **kw)

    def dua(self, organization="research-lab", **overrides):
        now = self.clock.now()
        body = {
            "organization": organization,
            "title": "Sepsis outcomes study",
            "purpose": "research",
            "tiers": ["deidentified"],
            "coverage": ["st-marys/*", "labs/*"],
            "approval_reference": "IRB-2026-041",
            "document_sha256": DOC,
            "effective_from": (now - timedelta(days=1)).isoformat(),
            "expires_at": (now + timedelta(days=365)).isoformat(),
        } | overrides
        r = self.call("root", "POST", "/api/v1/duas", json=body)
        assert r.status_code == 201, r.text
        return r.json()

    def request(
        self,
        who="researcher",
        *,
        dua_id,
        tier="deidentified",
        products=("st-marys/patients",),
        purpose="research",
        days=365,
    ):
        return self.call(
            who,
            "POST",
            "/api/v1/access-requests",
            json={
                "products": list(products),
                "tier": tier,
                "dua_id": dua_id,
                "purpose": purpose,
                "justification": "Cohort study of sepsis outcomes across the network",
                "requested_days": days,
            },
        )

    def approve(self, rid, who="admin1", **body):
        """`who` approves access request `rid` (the body: its `reason`, if any)."""
        return self.call(who, "POST", f"/api/v1/access-requests/{rid}/approve", json=body)

    def deprecate(self, version, reason, who="admin1"):
        """`who` deprecates st-marys/patients `version`: the answer (200 asserted)."""
        path = f"/api/v1/products/st-marys/patients/versions/{version}/deprecate"
        r = self.call(who, "POST", path, json={"reason": reason})
        assert r.status_code == 200, r.text
        return r.json()

    def approved_grant(self, *, reason=None, **dua_overrides):
        """A DUA, a researcher's request under it and admin1's approval: (DUA, first grant)."""
        dua = self.dua(**dua_overrides)
        rid = self.request(dua_id=dua["id"]).json()["id"]
        r = self.approve(rid, **({"reason": reason} if reason is not None else {}))
        assert r.status_code == 200, r.text
        return dua, r.json()["items"][0]


@pytest.fixture
def estate(settings, engine, clock):
    with TestClient(create_app(settings, engine=engine, clock=clock)) as client:
        e = Estate(client, clock)
        for domain in ("st-marys", "riverside", "labs"):
            assert (
                e.call("root", "POST", "/api/v1/domains", json=domain_body(domain)).status_code
                == 201
            )
        for domain, name in (
            ("st-marys", "patients"),
            ("riverside", "vitals"),
            ("labs", "lab-results"),
        ):
            r = e.call(
                "root", "POST", f"/api/v1/domains/{domain}/products", json=product_body(name)
            )
            assert r.status_code == 201, r.text
        for org in ("research-lab", "quality-team"):
            r = e.call(
                "root",
                "POST",
                "/api/v1/organizations",
                json={
                    "name": org,
                    "title": org.title(),
                    "contact_email": f"lead@{org}.example.org",
                },
            )
            assert r.status_code == 201, r.text
        for name, spec in PRINCIPALS.items():
            r = e.call(
                "root",
                "POST",
                "/api/v1/principals",
                json={"name": name, "display_name": name.title(), **spec},
            )
            assert r.status_code == 201, r.text
            t = e.call("root", "POST", f"/api/v1/principals/{name}/tokens", json={"days": 30})
            assert t.status_code == 201, t.text
            e.tokens[name] = t.json()["token"]
        yield e
