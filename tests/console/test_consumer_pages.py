"""Consumer pages: renew a grant before it ends (capped at the DUA), deprecation notices."""

import re

from sqlmodel import Session

from catalog.products import service as products
from catalog.products.models import VersionStatus
from tests.console.conftest import deprecate
from tests.factories import version_body


def _grant(estate, *, days=20, **dua):
    dua = estate.dua(**dua)
    rid = estate.request(dua_id=dua["id"], days=days).json()["id"]
    r = estate.approve(rid)
    assert r.status_code == 200, r.text
    return dua, r.json()["items"][0]


def test_renew_a_grant_before_it_ends_capped_at_the_dua(people, estate, clock):
    dua, grant = _grant(estate)
    dua_end = dua["expires_at"][:10]
    consumer = people("researcher")
    page = consumer.get("/console/my/grants").text
    assert f'action="/console/my/grants/{grant["id"]}/renew"' in page
    assert "Ends soon: renew now to keep reading." in page
    assert f'max="{dua_end}"' in page

    late = consumer.post(
        f"/console/my/grants/{grant['id']}/renew",
        {"end": "2099-01-01"},
        csrf_from="/console/my/grants",
    )
    assert late.status_code == 400 and "capped at the DUA&#39;s expiry" in late.text
    ok = consumer.post(
        f"/console/my/grants/{grant['id']}/renew", {"end": dua_end}, csrf_from="/console/my/grants"
    )
    assert ok.status_code == 303, ok.text
    assert "notice=renewal" in ok.headers["location"]
    mine = consumer.get("/console/my/requests?notice=renewal").text
    assert "renewal request was filed" in mine
    rid = int(re.search(r"#request-(\d+)", ok.headers["location"]).group(1))
    again = consumer.post(
        f"/console/my/grants/{grant['id']}/renew", {"end": dua_end}, csrf_from="/console/my/grants"
    )
    assert again.status_code == 409 and f"already pending (request {rid})" in again.text

    filed = estate.call("root", "GET", f"/api/v1/access-requests/{rid}").json()
    assert filed["justification"].startswith(f"Renewal of grant #{grant['id']}: ")
    assert filed["products"] == ["st-marys/patients"] and filed["tier"] == "deidentified"
    approved = estate.approve(rid, who="admin2")
    assert approved.status_code == 200, approved.text
    assert approved.json()["items"][0]["expires_at"][:10] <= dua_end


def test_renewal_refusals(people, estate, clock):
    _, grant = _grant(estate, days=400)  # the grant ends with its DUA
    consumer = people("researcher")
    page = consumer.get("/console/my/grants").text
    assert "Ends with its DUA; the DUA must be extended first." in page
    r = consumer.post(
        f"/console/my/grants/{grant['id']}/renew",
        {"end": "2026-06-01"},
        csrf_from="/console/my/grants",
    )
    assert r.status_code == 409 and "already ends with its DUA" in r.text
    other = people("quality")  # another organisation's grant looks missing
    r = other.post(
        f"/console/my/grants/{grant['id']}/renew", {"end": "2026-06-01"}, csrf_from="/console/"
    )
    assert r.status_code == 404
    no_csrf = consumer.client.post(
        f"/console/my/grants/{grant['id']}/renew",
        data={"end": "2026-06-01"},
        follow_redirects=False,
    )
    assert no_csrf.status_code == 403 and "security token" in no_csrf.text
    admin = people("admin1")  # not a consumer: may not file
    r = admin.post(f"/console/my/grants/{grant['id']}/renew", {"end": "2026-06-01"})
    assert r.status_code in (403, 404)


def test_expired_grant_cannot_be_renewed(people, estate, clock):
    _, grant = _grant(estate, days=5)
    clock.advance(seconds=6 * 86400)
    consumer = people("researcher")
    assert "—" in consumer.get("/console/my/grants").text
    r = consumer.post(
        f"/console/my/grants/{grant['id']}/renew",
        {"end": "2026-06-01"},
        csrf_from="/console/my/grants",
    )
    assert r.status_code == 409 and "is expired" in r.text


def test_deprecation_notices_on_my_grants(people, estate, engine):
    estate.call("root", "POST", "/api/v1/products/st-marys/patients/versions", json=version_body())
    with Session(engine) as session:
        version = products.get_version(session, "st-marys", "patients", "1.0.0")
        version.status = VersionStatus.PUBLISHED
        session.commit()
    _grant(estate, days=200)
    deprecate(estate, "1.0.0", "replaced by 2.0.0")
    page = people("researcher").get("/console/my/grants").text
    banner = page.split("<h2>Deprecation notices</h2>")[1].split("</div>")[0]
    assert (
        "st-marys/patients (deidentified): version 1.0.0 was deprecated: replaced by 2.0.0"
        in banner
    )
