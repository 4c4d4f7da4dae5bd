"""Console pages against the real app and database: sign-in, sessions, CSRF, authorisation."""

import re

from sqlmodel import Session, select

from catalog.audit.models import AuditEvent
from catalog.console.session import COOKIE, IDLE, LIFETIME


def test_sign_in_sets_a_strict_http_only_cookie_and_sign_out_clears_it(people, estate):
    p = people()
    r = p.sign_in(estate.tokens["researcher"])
    assert r.status_code == 303 and r.headers["location"] == "/console/"
    cookie = [v for k, v in r.headers.multi_items() if k == "set-cookie"][-1]
    assert cookie.startswith(f"{COOKIE}=")
    assert "HttpOnly" in cookie and "SameSite=Strict" in cookie and "Path=/console" in cookie
    assert "Secure" not in cookie  # plain http in tests; https requests get Secure
    home = p.get("/console/")
    assert home.status_code == 200 and "Signed in as <strong>researcher</strong>" in home.text
    out = p.post("/console/sign-out", {})
    assert out.status_code == 303
    assert any("Max-Age=0" in v for k, v in out.headers.multi_items() if k == "set-cookie")
    assert p.get("/console/", follow_redirects=False).status_code == 303


def test_secure_cookie_behind_tls(people, estate):
    p = people()
    p.client.base_url = "https://testserver.local"
    r = p.sign_in(estate.tokens["researcher"])
    assert r.status_code == 303
    assert any("Secure" in v for k, v in r.headers.multi_items() if k == "set-cookie")


def test_a_wrong_token_is_refused_and_audited(people, engine):
    p = people()
    r = p.sign_in("mesh_0123456789abcdef_wrongwrongwrongwrong")
    assert r.status_code == 401 and "not accepted" in r.text
    with Session(engine) as s:
        failed = s.exec(select(AuditEvent).where(AuditEvent.action == "auth.failed")).all()
    assert failed and failed[-1].token_id == "0123456789abcdef"


def test_failed_sign_ins_are_limited_like_api_failures_but_a_valid_token_signs_in(
    people, estate, settings, engine
):
    """The console judges the token as the API's bearer middleware does: failures only."""
    p = people()
    for i in range(settings.auth_failure_limit):
        assert p.sign_in(f"wrong-token-number-{i}").status_code == 401
    over = p.sign_in("wrong-token-once-more")
    assert over.status_code == 429 and int(over.headers["retry-after"]) >= 1
    api = p.client.get("/api/v1/products", headers={"Authorization": "Bearer still-wrong"})
    assert api.status_code == 429  # one count for the address, whichever door failed
    with Session(engine) as s:
        failed = s.exec(select(AuditEvent).where(AuditEvent.action == "auth.failed")).all()
    assert len(failed) == settings.auth_failure_limit
    assert all(e.subject == "POST /console/sign-in" for e in failed), [e.subject for e in failed]
    r = p.sign_in(estate.tokens["researcher"])  # from the same address: never refused
    assert r.status_code == 303 and r.headers["location"] == "/console/"
    assert "Signed in as <strong>researcher</strong>" in p.get("/console/").text


def test_anonymous_pages_redirect_to_sign_in(people):
    p = people()
    r = p.get("/console/review", follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"].startswith("/console/sign-in?next=")
    assert (
        p.get("/console/catalog", headers={"HX-Request": "true"}, follow_redirects=False)
        .headers["hx-redirect"]
        .startswith("/console/sign-in")
    )


def test_forms_without_the_csrf_token_are_refused(people):
    p = people("admin1")
    for data in ({}, {"_csrf": "0" * 64}):
        r = p.client.post("/console/sign-out", data=data, follow_redirects=False)
        assert r.status_code == 403 and "security token" in r.text
    # htmx sends it in a header
    token = p.csrf("/console/")
    r = p.client.post("/console/sign-out", headers={"X-CSRF-Token": token}, follow_redirects=False)
    assert r.status_code == 303


def test_csrf_token_of_another_session_is_refused(people):
    alice, bob = people("admin1"), people("admin2")
    stolen = alice.csrf("/console/")
    r = bob.client.post("/console/sign-out", data={"_csrf": stolen}, follow_redirects=False)
    assert r.status_code == 403


def test_session_expires_when_idle_and_after_its_lifetime(people, clock):
    p = people("researcher")
    assert p.get("/console/").status_code == 200
    clock.advance(seconds=IDLE.total_seconds() - 60)
    assert p.get("/console/").status_code == 200  # each request rolls the idle timer
    clock.advance(seconds=IDLE.total_seconds() + 1)
    r = p.get("/console/", follow_redirects=False)
    assert r.status_code == 303 and "expired=1" in r.headers["location"]
    q = people("researcher")
    for _ in range(int(LIFETIME / (IDLE / 2)) + 1):
        clock.advance(seconds=(IDLE / 2).total_seconds())
        last = q.get("/console/", follow_redirects=False)
    assert last.status_code == 303  # the lifetime ends it however active


def test_revoked_token_ends_the_session(people, estate):
    p = people("researcher")
    token_id = estate.tokens["researcher"].split("_")[1]
    r = estate.call("root", "POST", f"/api/v1/principals/tokens/{token_id}/revoke")
    assert r.status_code == 200, r.text
    assert p.get("/console/", follow_redirects=False).status_code == 303


def test_tampered_cookie_is_a_visitor(people):
    p = people("researcher")
    value = p.client.cookies.get(COOKIE)
    p.client.cookies.set(COOKIE, value[:-4] + "AAAA", path="/console")
    assert p.get("/console/", follow_redirects=False).status_code == 303


def test_consumer_cannot_open_the_review_queue_by_url_and_it_is_audited(people, engine):
    p = people("researcher")
    r = p.get("/console/review")
    assert r.status_code == 403
    assert "missing permission request:approve" in r.text
    assert "<h1>Forbidden</h1>" in r.text and "recorded in the audit trail" in r.text
    with Session(engine) as s:
        denied = s.exec(
            select(AuditEvent).where(
                AuditEvent.action == "access.denied", AuditEvent.actor == "researcher"
            )
        ).all()
    assert [e.subject for e in denied] == ["GET /console/review"]  # recorded once, not twice
    assert p.get("/console/audit").status_code == 403
    assert p.get("/console/grants").status_code == 403


def test_auditor_sees_the_trail_but_not_the_queue(people):
    a = people("auditor1")
    r = a.get("/console/audit")
    assert r.status_code == 200 and "Hash chain: intact" in r.text
    assert a.get("/console/review").status_code == 403
    nav = re.findall(r'<li><a href="([^"]+)"', a.get("/console/").text)
    assert "/console/review" not in nav and "/console/audit" in nav


def test_product_description_is_escaped(people, estate):
    r = estate.call(
        "root",
        "POST",
        "/api/v1/domains/st-marys/products",
        json={
            "name": "xss",
            "title": "<img src=x onerror=alert(1)>",
            "description": "<script>alert('x')</script>",
            "tags": ["demographics"],
            "owner_team": "Registration",
            "owner_email": "registration@example.org",
            "source_resources": ["Patient"],
        },
    )
    assert r.status_code == 201, r.text
    p = people("researcher")
    for path in ("/console/catalog?q=xss", "/console/catalog/st-marys/xss"):
        page = p.get(path)
        assert page.status_code == 200
        assert "<script>alert" not in page.text and "<img src=x" not in page.text
        assert "&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt;" in page.text


def test_problem_details_render_for_people(people):
    p = people("researcher")
    r = p.get("/console/catalog/st-marys/no-such-product")
    assert r.status_code == 404 and "text/html" in r.headers["content-type"]
    assert "not found" in r.text
    bad = p.get("/console/catalog?tier=platinum")
    assert bad.status_code in (400, 422) and "text/html" in bad.headers["content-type"]
    assert "platinum" in bad.text or "tier" in bad.text


def test_static_files_are_served_to_visitors(people):
    p = people()
    assert p.get("/console/static/htmx.min.js").status_code == 200
    assert p.get("/console/static/console.css").status_code == 200
    assert p.get("/console/static/../templates/base.html").status_code in (400, 404)


def test_litestar_is_past_the_csrf_template_advisory():
    # CVE-2026-48060 / PYSEC-2026-2604: HTML injection through the CSRF input, fixed in 2.20.0.
    from importlib.metadata import version

    major, minor, *_ = (int(x) for x in version("litestar").split(".")[:2])
    assert (major, minor) >= (2, 20)


def test_pages_carry_the_csrf_token_for_htmx_and_forms(people):
    page = people("researcher").get("/console/catalog").text
    assert re.search(r"hx-headers='\{&#34;X-CSRF-Token&#34;: &#34;[0-9a-f]{64}&#34;\}'", page) or (
        "X-CSRF-Token" in page
    )
    assert '<script src="/console/static/htmx.min.js" defer></script>' in page


def test_visitors_cannot_post_anything(people):
    p = people()
    csrf = p.csrf()  # a visitor's own token does not make it a principal
    r = p.client.post("/console/requests", data={"_csrf": csrf, "dua": "1"}, follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"].startswith("/console/sign-in")


def test_htmx_posts_need_the_header_token(people):
    p = people("admin1")
    r = p.client.post(
        "/console/grants/1/revoke",
        data={"reason": "x"},
        headers={"HX-Request": "true"},
        follow_redirects=False,
    )
    assert r.status_code == 403 and "security token" in r.text
