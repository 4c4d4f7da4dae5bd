"""Facility publisher pages: products of one's own facility only, version health and use,
pending deprecations, and the products-file plan preview with its errors."""

import re
from datetime import timedelta

import yaml
from sqlmodel import Session, select

from catalog.audit.models import AuditEvent
from catalog.products import service as products
from catalog.products.models import VersionStatus
from tests.console.conftest import deprecate, record_read
from tests.factories import domain_body, product_body, version_body


def test_a_publisher_sees_only_their_facilitys_products(people, engine):
    pub = people("pub-sm")
    index = pub.get("/console/publish")
    assert index.status_code == 200
    assert "/console/publish/st-marys/patients" in index.text
    assert "riverside/vitals" not in index.text and "labs/lab-results" not in index.text
    nav = re.findall(r'<li><a href="([^"]+)"', index.text)
    assert "/console/publish" in nav and "/console/review" not in nav
    assert pub.get("/console/publish/st-marys/patients").status_code == 200
    other = pub.get("/console/publish/riverside/vitals")
    assert other.status_code == 403 and "missing permission version:publish" in other.text
    with Session(engine) as s:
        denied = s.exec(
            select(AuditEvent).where(
                AuditEvent.action == "access.denied", AuditEvent.actor == "pub-sm"
            )
        ).all()
    assert [e.subject for e in denied] == ["GET /console/publish/riverside/vitals"]


def test_consumers_and_auditors_cannot_open_publisher_pages(people):
    for who in ("researcher", "auditor1"):
        p = people(who)
        for path in (
            "/console/publish",
            "/console/publish/st-marys/patients",
            "/console/publish/plan",
        ):
            r = p.get(path)
            assert r.status_code == 403, (who, path)
            assert "<h1>Forbidden</h1>" in r.text
        r = p.client.post(
            "/console/publish/plan",
            data={"_csrf": p.csrf("/console/"), "manifest": "domains: []"},
            follow_redirects=False,
        )
        assert r.status_code == 403


def test_product_page_shows_version_health_use_and_pending_deprecations(
    people, estate, engine, clock
):
    for v in ("1.0.0", "1.1.0"):
        r = estate.call(
            "root", "POST", "/api/v1/products/st-marys/patients/versions", json=version_body(v)
        )
        assert r.status_code == 201, r.text
    with Session(engine) as s:
        for v, quarantined, findings in (("1.0.0", 7, 3), ("1.1.0", 1, 0)):
            version = products.get_version(s, "st-marys", "patients", v)
            version.status = VersionStatus.PUBLISHED
            version.extracted_at = clock.now() - timedelta(hours=1)
            version.counts = {
                "input_records": 100,
                "quarantined": quarantined,
                "findings": findings,
            }
            version.checks = [
                {"name": "quarantine rate", "passed": True, "detail": f"{quarantined}% of 5%"},
                {"name": "completeness birth_date", "passed": v == "1.1.0", "detail": "97.1%"},
            ]
        s.commit()
    dua, _ = estate.approved_grant()
    record_read(engine, clock.now(), version="1.0.0", dua=dua["id"], files=1, size=10)
    deprecate(estate, "1.0.0", "replaced by 1.1.0")

    page = people("pub-sm").get("/console/publish/st-marys/patients").text
    v1 = page.split('id="version-1.0.0"')[1].split("</tr>")[0]
    assert "deprecated" in v1 and "<td>100</td><td>7</td><td>3</td><td>1</td>" in v1
    assert "research-lab (deidentified)" in v1
    v11 = page.split('id="version-1.1.0"')[1].split("</tr>")[0]
    assert "<td>1</td><td>0</td><td>0</td>" in v11 and "nobody yet" in v11
    assert "Checks of 1.0.0" in page and "97.1%" in page
    assert "1.0.0: affects research-lab (notified on their grants)" in page
    grants = page.split("Consumers and grants")[1]
    assert "research-lab" in grants and "deidentified" in grants and f"#{dua['id']}" in grants
    assert "fresh</span>" in page


def _products_file(*products_of_domain):
    domains = []
    for domain, names in products_of_domain:
        domains.append(domain_body(domain) | {"products": [product_body(n) for n in names]})
    return yaml.safe_dump({"domains": domains}, sort_keys=False)


def test_plan_preview_renders_the_dry_run_plan_and_applies_nothing(people, estate):
    pub = people("pub-sm")
    form = pub.get("/console/publish/plan")
    assert form.status_code == 200 and 'enctype="multipart/form-data"' in form.text
    text = _products_file(("st-marys", ["patients", "encounters"]), ("riverside", ["notes"]))
    r = pub.client.post(
        "/console/publish/plan",
        files={"manifest": (None, text), "_csrf": (None, pub.csrf("/console/publish/plan"))},
        follow_redirects=False,
    )
    assert r.status_code == 200, r.text
    rows = re.findall(
        r'<tr class="plan-(\w+)">.*?<td>(\w+)</td><td><code>([^<]+)</code></td><td>(.*?)</td></tr>',
        r.text,
    )
    plan = {(kind, key): (action, detail) for action, kind, key, detail in rows}
    assert plan[("product", "st-marys/encounters")] == ("create", "")
    assert plan[("product", "st-marys/patients")] == ("unchanged", "")
    action, detail = plan[("product", "riverside/notes")]
    assert action == "create" and "not your facility" in detail
    assert "Plan: 2 to create, 0 to update, 3 unchanged, 0 refused." in r.text
    assert estate.call("root", "GET", "/api/v1/products/st-marys/encounters").status_code == 404


def test_plan_preview_shows_errors_as_file_line_path_detail(people):
    pub = people("pub-sm")
    bad = _products_file(("st-marys", ["patients"])).replace(
        "contact_email: team@st-marys.example.org", "contact_email: not-an-email"
    )
    r = pub.client.post(
        "/console/publish/plan",
        files={
            "upload": ("estate.yaml", bad.encode(), "application/yaml"),
            "_csrf": (None, pub.csrf("/console/publish/plan")),
        },
        follow_redirects=False,
    )
    assert r.status_code == 422
    line = bad.splitlines().index("  contact_email: not-an-email") + 1
    assert re.search(
        rf"<code>estate\.yaml:{line}: domains\[0\]\.contact_email: [^<]+</code>", r.text
    )
    broken = pub.client.post(
        "/console/publish/plan",
        files={
            "manifest": (None, "domains:\n  - name: [x\n"),
            "_csrf": (None, pub.csrf("/console/publish/plan")),
        },
        follow_redirects=False,
    )
    assert broken.status_code == 422 and "products.yaml:" in broken.text
    assert "invalid YAML" in broken.text
    empty = pub.client.post(
        "/console/publish/plan",
        files={"manifest": (None, ""), "_csrf": (None, pub.csrf("/console/publish/plan"))},
        follow_redirects=False,
    )
    assert empty.status_code == 400 and "paste a products file" in empty.text
    no_csrf = pub.client.post(
        "/console/publish/plan", files={"manifest": (None, "domains: []")}, follow_redirects=False
    )
    assert no_csrf.status_code == 403 and "security token" in no_csrf.text
