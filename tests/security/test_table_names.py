"""A table name, once served to a recipient, always means the same tier for it.

With two tiers of one product granted, revoking the first used to move the bare name
`patients` from the de-identified tier to the limited one: a client reading `patients` on a
schedule silently got other columns. Now the bare name is the tier of the recipient's first
grant of the product ever; every other tier is always `product_tier`.
"""

import delta_sharing
import pytest
import requests
from deltalake import DeltaTable
from sqlmodel import Session, col, select

from catalog.audit.record import Operator
from catalog.kernel.clock import SystemClock
from catalog.products.models import DataProduct
from policies.duas.models import Dua
from policies.grants.models import Grant
from policies.grants.service import revoke_grant
from policies.principals.service import get_organization
from policies.requests.models import AccessRequest
from tests.problems import assert_protocol_error

SHARE = "sepsis-research"


def _columns(estate, tier: str) -> list[str]:
    location = estate["home"] / "storage" / "products" / "st-marys" / "patients" / tier
    return list(DeltaTable(str(location)).schema().to_arrow().names)


def _names(estate) -> list[str]:
    client = delta_sharing.SharingClient(estate["profile"])
    return sorted(f"{t.schema}.{t.name}" for t in client.list_all_tables())


def _load(estate, name: str):  # type: ignore[no-untyped-def]
    return delta_sharing.load_as_pandas(f"{estate['profile']}#{SHARE}.st-marys.{name}")


def test_a_name_keeps_its_tier_when_the_grant_it_was_first_served_under_is_revoked(own_estate):
    estate = own_estate
    assert _columns(estate, "limited") != _columns(estate, "deidentified")
    with Session(estate["engine"], expire_on_commit=False) as session:
        org = get_organization(session, SHARE)
        grants = session.exec(select(Grant).where(Grant.organization_id == org.id)).all()
        (first,) = [g for g in grants if session.get(DataProduct, g.product_id).name == "patients"]
        product = session.get(DataProduct, first.product_id)
        dua = session.get(Dua, first.dua_id)
        request = session.get(AccessRequest, first.request_id)
        assert dua is not None and request is not None and first.tier == "deidentified"
        dua.tiers = [*dua.tiers, "limited"]
        session.add(dua)
        second_request = AccessRequest(
            **request.model_dump(exclude={"id"}, warnings=False)  # enum columns load as str
            | {"tier": "limited", "products": [request.products[0]]}
        )
        session.add(second_request)
        session.flush()
        second = Grant(
            **first.model_dump(exclude={"id", "request_id"}, warnings=False)
            | {"tier": "limited", "request_id": second_request.id}
        )
        session.add(second)
        session.commit()

    assert "st-marys.patients" in _names(estate) and "st-marys.patients_limited" in _names(estate)
    assert list(_load(estate, "patients").columns) == _columns(estate, "deidentified")
    assert list(_load(estate, "patients_limited").columns) == _columns(estate, "limited")

    with Session(estate["engine"]) as session:
        revoke_grant(
            session, first.id, reason="tier no longer needed", actor=Operator("cli:test"),
            clock=SystemClock(),
        )  # fmt: skip
        session.commit()

    names = _names(estate)
    assert "st-marys.patients" not in names and "st-marys.patients_limited" in names
    with pytest.raises(requests.HTTPError) as refused:
        _load(estate, "patients")  # gone, never the limited tier under the old name
    assert_protocol_error(refused.value.response, 404)
    assert list(_load(estate, "patients_limited").columns) == _columns(estate, "limited")

    # Granted again later, the bare name comes back with the tier it always meant.
    with Session(estate["engine"]) as session:
        again_request = AccessRequest(**request.model_dump(exclude={"id"}, warnings=False))
        session.add(again_request)
        session.flush()
        session.add(
            Grant(**first.model_dump(exclude={"id", "request_id", "revoked_at", "revoked_by",
                                              "revocation_reason"}, warnings=False)
                  | {"request_id": again_request.id})
        )  # fmt: skip
        session.commit()
        assert session.exec(
            select(Grant).where(col(Grant.revoked_at).is_(None), Grant.product_id == product.id)
        ).all()
    assert list(_load(estate, "patients").columns) == _columns(estate, "deidentified")
