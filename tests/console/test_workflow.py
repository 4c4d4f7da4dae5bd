"""The consumer, admin and auditor flows through the console, on the real services."""

import re

from sqlmodel import Session, select

from catalog.audit.models import AuditEvent


def _dua(estate, **kw):
    return estate.dua(**kw)["id"]


def test_catalog_search_facets_and_product_page(people, estate):
    p = people("researcher")
    page = p.get("/console/catalog")
    assert page.status_code == 200
    for ref in ("st-marys/patients", "riverside/vitals", "labs/lab-results"):
        assert ref in page.text
    only = p.get("/console/catalog?domain=riverside")
    assert "riverside/vitals" in only.text and "st-marys/patients" not in only.text
    none = p.get("/console/catalog?q=nothing-like-this")
    assert "No product matches these filters" in none.text
    fragment = p.get("/console/catalog?q=vitals", headers={"HX-Request": "true"})
    assert fragment.status_code == 200 and 'id="results"' in fragment.text
    product = p.get("/console/catalog/st-marys/patients")
    assert product.status_code == 200
    assert "registration@example.org" in product.text and "Versions" in product.text


def test_product_page_shows_schema_classifications_and_tier_effects(people, estate):
    from tests.factories import version_body

    r = estate.call(
        "root", "POST", "/api/v1/products/st-marys/patients/versions", json=version_body()
    )
    assert r.status_code == 201, r.text
    page = people("researcher").get("/console/catalog/st-marys/patients").text
    assert "direct_identifier" in page and "patient_id" in page
    assert "year only; empty when it shows an age of 90+" in page  # date, deidentified
    assert "draft" in page
    assert "removed" in page  # patient_id declares no surrogate here
    assert "No checks yet" in page


def test_wizard_greys_tiers_the_dua_does_not_permit_and_caps_the_end_date(people, estate):
    dua = _dua(estate)
    p = people("researcher")
    first = p.get("/console/requests/new")
    assert "Sepsis outcomes study" in first.text
    step = p.get(f"/console/requests/new?dua={dua}")
    assert re.search(r'id="tier-deidentified" name="tier" value="deidentified"\s*>', step.text)
    assert 'id="tier-full" name="tier" value="full" disabled' in step.text
    assert "the DUA does not permit the full tier" in step.text
    assert "st-marys/patients" in step.text and "riverside/vitals" not in step.text  # coverage
    late = p.get(
        f"/console/requests/new?dua={dua}&tier=deidentified&product=st-marys/patients"
        "&justification=Cohort+study+of+sepsis&end=2099-01-01&step=review"
    )
    assert "capped at the DUA&#39;s expiry" in late.text


def test_consumer_files_a_request_admin_decides_auditor_sees_it(people, estate, engine):
    dua = _dua(estate)
    consumer = people("researcher")
    review = consumer.get(
        f"/console/requests/new?dua={dua}&tier=deidentified&product=st-marys/patients"
        "&product=labs/lab-results&justification=Cohort+study+of+sepsis+outcomes"
        "&end=2026-06-30&step=review"
    )
    assert review.status_code == 200 and "File the request" in review.text
    assert review.text.count("allowed</span>") == 2
    filed = consumer.post(
        "/console/requests",
        {
            "dua": str(dua),
            "tier": "deidentified",
            "product": ["st-marys/patients", "labs/lab-results"],
            "justification": "Cohort study of sepsis outcomes",
            "end": "2026-06-30",
        },
    )
    assert filed.status_code == 303, filed.text
    mine = consumer.get("/console/my/requests?notice=filed")
    assert "pending" in mine.text and "st-marys/patients, labs/lab-results" in mine.text
    request_id = int(re.search(r'id="request-(\d+)"', mine.text).group(1))
    # the consumer cannot approve, not even by posting to the URL
    denied = consumer.post(f"/console/review/{request_id}/approve", {"reason": "mine"})
    assert denied.status_code == 403

    admin = people("admin1")
    queue = admin.get("/console/review")
    assert f"Request {request_id}" in queue.text
    one = admin.get(f"/console/review/{request_id}")
    assert "IRB-2026-041" in one.text and "Cohort study of sepsis outcomes" in one.text
    assert "the DUA does not permit the full tier" in one.text
    ok = admin.post(
        f"/console/review/{request_id}/approve",
        {"reason": "IRB approved", "end": "2026-03-31"},
        csrf_from=f"/console/review/{request_id}",
    )
    assert ok.status_code == 303, ok.text
    decided = admin.get(f"/console/review/{request_id}?notice=approved")
    assert "Approved by admin1" in decided.text
    assert "Issue an activation link" in decided.text
    issued = admin.post(
        f"/console/review/{request_id}/activation", {}, csrf_from=f"/console/review/{request_id}"
    )
    assert issued.status_code == 200 and "shown once" in issued.text
    link = re.search(r'value="(http://[^"]+/console/activate/[^"]+)"', issued.text).group(1)
    assert "dsa_" in link or "/activate/" in link

    grants = consumer.get("/console/my/grants")
    assert grants.text.count("active</span>") == 2 and "2026-03-31" in grants.text

    admin_grants = admin.get("/console/grants")
    grant_id = int(re.search(r'action="/console/grants/(\d+)/revoke"', admin_grants.text).group(1))
    revoked = admin.post(
        f"/console/grants/{grant_id}/revoke", {"reason": "study ended"}, csrf_from="/console/grants"
    )
    assert revoked.status_code == 303
    assert "revoked</span>" in consumer.get("/console/my/grants").text

    auditor = people("auditor1")
    trail = auditor.get("/console/audit?actor=admin1")
    assert "request.approve" in trail.text and "grant.revoke" in trail.text
    export = auditor.get("/console/audit/export?action=request.approve")
    assert export.status_code == 200
    assert export.headers["content-type"].startswith("application/x-ndjson")
    assert '"action":"request.approve"' in export.text
    with Session(engine) as s:
        actions = {e.action for e in s.exec(select(AuditEvent)).all()}
    assert {"request.create", "request.approve", "grant.revoke", "access.denied"} <= actions


def test_four_eyes_is_shown_and_enforced(people, estate):
    dua = _dua(estate, organization="quality-team", purpose="quality-improvement")
    dual = people("dual")  # a platform admin who is also a consumer of quality-team
    filed = dual.post(
        "/console/requests",
        {
            "dua": str(dua),
            "tier": "deidentified",
            "product": "st-marys/patients",
            "justification": "Quality dashboard for sepsis bundles",
            "end": "2026-06-30",
        },
    )
    assert filed.status_code == 303, filed.text
    queue = dual.get("/console/review")
    assert "Nothing needs your decision" in queue.text  # default: needs my decision
    pending = dual.get("/console/review?show=pending")
    request_id = int(re.search(r"Request (\d+)", pending.text).group(1))
    one = dual.get(f"/console/review/{request_id}")
    assert "You filed this request; a second platform admin must decide it" in one.text
    refused = dual.post(
        f"/console/review/{request_id}/approve",
        {"reason": "self"},
        csrf_from=f"/console/review/{request_id}",
    )
    assert refused.status_code == 403 and "four-eyes" in refused.text
    other = people("admin2")
    assert f"Request {request_id}" in other.get("/console/review").text
    no_reason = other.post(
        f"/console/review/{request_id}/deny",
        {"reason": ""},
        csrf_from=f"/console/review/{request_id}",
    )
    assert no_reason.status_code in (400, 422) and "reason" in no_reason.text
    denied = other.post(
        f"/console/review/{request_id}/deny",
        {"reason": "no bundle definition"},
        csrf_from=f"/console/review/{request_id}",
    )
    assert denied.status_code == 303
    assert "no bundle definition" in dual.get("/console/my/requests").text


def test_empty_states_say_what_to_do_next(people):
    consumer = people("researcher")
    assert "has no data use agreement on file" in consumer.get("/console/requests/new").text
    assert "Request access" in consumer.get("/console/my/requests").text
    assert "No grants yet" in consumer.get("/console/my/grants").text
    admin = people("admin1")
    assert "Nothing needs your decision" in admin.get("/console/review").text
    assert "No grant matches" in admin.get("/console/grants").text


def test_activation_page_downloads_the_profile_once(people, estate):
    r = estate.call("root", "POST", "/api/v1/recipients/research-lab/activation-links", json={})
    assert r.status_code == 201, r.text
    secret = r.json()["url"].rsplit("/", 1)[1]
    visitor = people()
    page = visitor.get(f"/console/activate/{secret}")
    assert page.status_code == 200 and "Download the profile" in page.text
    assert f'action="/delta-sharing/activation/{secret}"' in page.text
    got = visitor.client.post(f"/delta-sharing/activation/{secret}")
    assert got.status_code == 200 and "bearerToken" in got.text
    assert "already used" in visitor.get(f"/console/activate/{secret}").text
    assert visitor.get("/console/activate/dsa_nope_nope").status_code == 404


def test_publisher_sees_the_catalog_and_their_products_only(people):
    pub = people("pub-sm")
    nav = re.findall(r'<li><a href="([^"]+)"', pub.get("/console/").text)
    assert set(nav) == {
        "/console/catalog",
        "/console/inbox",
        "/console/publish",
    }  # an inbox for everyone
    assert pub.get("/console/catalog/st-marys/patients").status_code == 200
    for path in ("/console/review", "/console/requests/new", "/console/audit", "/console/grants"):
        assert pub.get(path).status_code == 403, path


def test_an_end_date_in_the_past_is_refused_at_approval(people, estate, clock):
    dua = _dua(estate)
    r = estate.request(dua_id=dua)
    assert r.status_code == 201, r.text
    request_id = r.json()["id"]
    admin = people("admin1")
    past = (clock.now().date()).replace(year=clock.now().year - 1).isoformat()
    refused = admin.post(
        f"/console/review/{request_id}/approve",
        {"reason": "ok", "end": past},
        csrf_from=f"/console/review/{request_id}",
    )
    assert refused.status_code == 400 and "must be in the future" in refused.text
    assert "pending" in admin.get(f"/console/review/{request_id}").text


def test_catalog_pages_with_a_cursor(people, settings):
    settings.default_page_size = 2
    p = people("researcher")
    first = p.get("/console/catalog")
    assert first.text.count("<h3>") == 2
    nxt = re.search(r'href="(/console/catalog\?[^"]*cursor=[^"]+)"', first.text)
    assert nxt, first.text
    second = p.get(nxt.group(1).replace("&amp;", "&"))
    assert second.text.count("<h3>") == 1
    assert "st-marys/patients" in second.text


def test_forms_submitted_with_empty_fields_filter_nothing(people, estate):
    p = people("researcher")
    r = p.get("/console/catalog?q=&domain=&tag=&tier=&status=&fresh=")
    assert r.status_code == 200 and "st-marys/patients" in r.text
    admin = people("admin1")
    assert admin.get("/console/review?show=&product=&tier=&dua=").status_code == 200
    assert admin.get("/console/grants?consumer=&product=&state=").status_code == 200
    assert admin.get("/console/audit?actor=&since=&until=&outcome=").status_code == 200
    bad = admin.get("/console/grants?state=forever")
    assert bad.status_code == 400 and "state must be one of" in bad.text


def test_four_eyes_notice_gives_the_services_reason_to_a_token_issuer(people, estate):
    """An admin who issued a token of the requester is refused like the requester (the service's
    rule, policies.access.four_eyes_refusal): told why, and not offered the request to decide."""
    t = estate.call("admin2", "POST", "/api/v1/principals/researcher/tokens", json={"days": 1})
    assert t.status_code == 201, t.text
    rid = estate.request(dua_id=estate.dua()["id"]).json()["id"]
    issuer = people("admin2")
    assert f"Request {rid}" not in issuer.get("/console/review").text
    assert f"Request {rid}" in issuer.get("/console/review?show=pending").text
    one = issuer.get(f"/console/review/{rid}")
    assert "A second platform admin must decide this request" in one.text
    assert "issued a token of its requester" in one.text
    assert 'action="/console/review/' + str(rid) + '/approve"' not in one.text
    refused = issuer.post(
        f"/console/review/{rid}/approve", {"reason": "mine"}, csrf_from=f"/console/review/{rid}"
    )
    assert refused.status_code == 403 and "issued a token of its requester" in refused.text
    other = people("admin1")
    assert f"Request {rid}" in other.get("/console/review").text
    assert f'action="/console/review/{rid}/approve"' in other.get(f"/console/review/{rid}").text
