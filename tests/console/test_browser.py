"""End to end in real headless Chromium against a real loopback server on the demo estate.

A consumer searches and requests access; the consumer cannot approve it; an admin approves and
issues the one-time activation link; the consumer downloads the profile and reads the table with
the official delta-sharing client; the admin revokes; the next read fails; the auditor finds all
of it in the trail. axe-core (shipped under catalog/console/static/) checks every page for
serious violations. The browser must start: this test fails, never skips, without it.
"""

import re
from datetime import date, timedelta
from pathlib import Path

import delta_sharing
import pytest
import requests
from playwright.sync_api import Browser, Page, expect, sync_playwright
from typer.testing import CliRunner

from catalog.cli import app as mesh
from catalog.kernel.settings import Settings
from tests.live import free_port, serving

pytestmark = pytest.mark.slow  # builds a demo estate, a subprocess or a browser

CHROMIUM = "/usr/bin/chromium"
FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
DOCS = Path(__file__).resolve().parents[2] / "docs"
TOKEN_LINE = re.compile(r"^\s+(platform admin|consumer|publisher|auditor)\s+(\S+)\s+(mesh_\S+)\s*$")
TABLE = "sepsis-research.st-marys.encounters"


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    """`mesh demo --no-serve` (as `make demo` runs it), then the app on a loopback port."""
    home = tmp_path_factory.mktemp("console-demo")
    port = free_port()
    env = {"MESH_DATABASE_URL": "", "MESH_HOME": str(home)}
    result = CliRunner().invoke(
        mesh, ["demo", "--no-serve", "--patients", "120", "--port", str(port)], env=env
    )
    assert result.exit_code == 0, result.output
    assert f"Web console: http://127.0.0.1:{port}/console/" in result.output
    tokens = {
        m.group(1): (m.group(2), m.group(3))
        for m in (TOKEN_LINE.match(line) for line in result.output.splitlines())
        if m
    }
    assert set(tokens) == {"platform admin", "consumer", "publisher", "auditor"}, result.output
    settings = Settings(home=home, port=port, policy_refresh_seconds=0)
    with serving(settings, port):
        yield {"base": f"http://127.0.0.1:{port}", "tokens": tokens, "home": home}


@pytest.fixture(scope="module")
def browser():
    # Playwright gives every launch a fresh, empty user data directory of its own.
    with sync_playwright() as pw:
        b = pw.chromium.launch(executable_path=CHROMIUM, args=FLAGS, headless=True)
        yield b
        b.close()


def axe_serious(page: Page) -> list[str]:
    page.add_script_tag(url="/console/static/axe.min.js")
    violations = page.evaluate("async () => (await axe.run(document)).violations")
    return [
        f"{v['id']}: {v['help']} ({len(v['nodes'])} nodes)"
        for v in violations
        if v["impact"] in ("serious", "critical")
    ]


def signed_in(browser: Browser, base: str, token: str) -> Page:
    context = browser.new_context(base_url=base, accept_downloads=True)
    page = context.new_page()
    page.goto("/console/sign-in")
    assert axe_serious(page) == []
    page.get_by_label("API token").fill(token)
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_text("Signed in as")).to_be_visible()
    return page


def test_request_approve_read_revoke_audit(demo, browser, tmp_path):
    base, tokens = demo["base"], demo["tokens"]
    consumer = signed_in(browser, base, tokens["consumer"][1])

    # search with htmx: typing filters the results in place
    consumer.goto("/console/catalog")
    consumer.get_by_label("Words").fill("encounters")
    expect(consumer.locator("#results")).not_to_contain_text("Lab results")
    consumer.get_by_role("link", name="Encounters (St Mary's)").click()
    expect(consumer.get_by_role("heading", level=1)).to_contain_text("Encounters")
    expect(consumer.get_by_text("published").first).to_be_visible()
    assert axe_serious(consumer) == []
    consumer.screenshot(path=str(DOCS / "console-product.png"), full_page=True)

    # the wizard: DUA, tier (full greyed), products, justification, end date, review, file
    consumer.goto("/console/requests/new")
    consumer.get_by_label(re.compile("Sepsis outcomes across the network")).check()
    consumer.get_by_role("button", name="Continue").click()
    expect(consumer.get_by_label("full", exact=True)).to_be_disabled()
    expect(consumer.get_by_text("the DUA does not permit the full tier")).to_be_visible()
    consumer.get_by_label("deidentified", exact=True).check()
    consumer.get_by_label("st-marys/encounters").check()
    consumer.get_by_label(re.compile("Justification")).fill("Length of stay in adult sepsis")
    end = (date.today() + timedelta(days=60)).isoformat()
    consumer.get_by_label(re.compile("End date")).fill(end)
    assert axe_serious(consumer) == []
    consumer.get_by_role("button", name="Review").click()
    expect(consumer.get_by_text("allowed")).to_be_visible()
    consumer.get_by_role("button", name="File the request").click()
    expect(consumer.get_by_role("status")).to_contain_text("Your request was filed")
    row = consumer.locator("tr", has_text="st-marys/encounters")
    expect(row).to_contain_text("pending")
    request_id = consumer.locator("tr", has_text="st-marys/encounters").get_attribute("id")
    assert request_id is not None
    number = request_id.removeprefix("request-")

    # the requester cannot decide it, not even by URL
    consumer.goto(f"/console/review/{number}")
    expect(consumer.get_by_role("heading", level=1)).to_have_text("Forbidden")
    expect(consumer.get_by_role("alert")).to_contain_text("missing permission request:approve")

    # a second request, filed through the API, to be decided in bulk
    extra = requests.post(
        f"{base}/api/v1/access-requests",
        headers={"Authorization": f"Bearer {tokens['consumer'][1]}"},
        json={
            "products": ["labs/lab-results"],
            "tier": "deidentified",
            "dua_id": 1,
            "purpose": "research",
            "justification": "Lactate trends, a second cohort",
            "requested_days": 30,
        },
        timeout=30,
    )
    assert extra.status_code == 201, extra.text
    extra_id = extra.json()["id"]

    # the admin decides
    admin = signed_in(browser, base, tokens["platform admin"][1])
    admin.goto("/console/review")
    expect(admin.get_by_role("link", name=f"Request {number}")).to_be_visible()
    assert axe_serious(admin) == []
    admin.screenshot(path=str(DOCS / "console-review-queue.png"), full_page=True)
    # in bulk, with htmx: the per-item result replaces a region of the queue
    admin.get_by_label(f"Select request {extra_id}").check()
    admin.get_by_label("Deny", exact=True).check()
    admin.locator("#bulk-reason").fill("a second cohort is out of the DUA's scope")
    admin.get_by_role("button", name="Decide the selected requests").click()
    expect(admin.locator("#bulk-result")).to_contain_text("1 of 1 decided; 0 refused")
    expect(admin.locator(f"#result-{extra_id}")).to_contain_text("denied")
    assert admin.url.endswith("/console/review")  # the page stayed; only the region changed
    assert axe_serious(admin) == []
    admin.get_by_role("link", name=f"Request {number}").click()
    expect(admin.get_by_text("IRB-2026-041")).to_be_visible()
    assert axe_serious(admin) == []
    admin.get_by_label(re.compile("End date of the grants")).fill(end)
    admin.get_by_label("Reason").first.fill("IRB-2026-041 covers encounters")
    admin.get_by_role("button", name="Approve").click()
    expect(admin.get_by_role("status")).to_contain_text("Approved")
    admin.get_by_role("button", name="Issue an activation link").click()
    link = admin.get_by_label("Link").input_value()
    assert "/console/activate/" in link

    # the consumer downloads the profile once and reads with the official client
    consumer.goto(link)
    assert axe_serious(consumer) == []
    with consumer.expect_download() as download:
        consumer.get_by_role("button", name="Download the profile").click()
    profile = tmp_path / "sepsis-research.share"
    download.value.save_as(profile)
    frame = delta_sharing.load_as_pandas(f"{profile}#{TABLE}")
    from deltalake import DeltaTable

    published = demo["home"] / "storage" / "products" / "st-marys" / "encounters" / "deidentified"
    expected = DeltaTable(str(published)).to_pandas()
    assert len(frame) == len(expected) > 0
    assert list(frame.columns) == list(expected.columns)
    consumer.goto(link)
    expect(consumer.get_by_role("alert")).to_contain_text("already used")
    consumer.goto("/console/my/grants")
    expect(consumer.locator("tr", has_text="st-marys/encounters")).to_contain_text("active")
    assert axe_serious(consumer) == []
    consumer.screenshot(path=str(DOCS / "console-my-grants.png"), full_page=True)

    # the admin revokes; the next read fails
    admin.goto("/console/grants?product=st-marys/encounters")
    assert axe_serious(admin) == []
    admin.get_by_label("Reason").fill("study scope changed")
    admin.get_by_role("button", name=re.compile("Revoke grant")).click()
    expect(admin.get_by_role("status")).to_contain_text("revoked")
    with pytest.raises(requests.HTTPError):
        delta_sharing.load_as_pandas(f"{profile}#{TABLE}", use_delta_format=False)

    # the auditor finds all of it
    auditor = signed_in(browser, base, tokens["auditor"][1])
    auditor.goto("/console/audit")
    expect(auditor.get_by_role("status")).to_contain_text("intact")
    assert axe_serious(auditor) == []
    found = set()
    for action in (
        "request.create",
        "request.approve",
        "recipient.activation.redeem",
        "sharing.query",
        "grant.revoke",
        "access.denied",
    ):
        auditor.goto(f"/console/audit?action={action}")
        expect(auditor.locator("tbody tr").first).to_contain_text(action)
        found.add(action)
    assert len(found) == 6
    export = auditor.request.get("/console/audit/export?action=grant.revoke")
    assert export.ok and '"action":"grant.revoke"' in export.text()

    # the accounting of disclosures names the read, under its DUA and tier
    auditor.goto("/console/audit/disclosures")
    auditor.get_by_label("Product (domain/name)").fill("st-marys/encounters")
    auditor.get_by_role("button", name="Show").click()
    expect(auditor.locator("table").first).to_contain_text("sepsis-research")
    expect(auditor.locator("table").first).to_contain_text("deidentified")
    assert axe_serious(auditor) == []

    # the admin's other pages
    admin.goto("/console/recipients/sepsis-research")
    admin.get_by_role("button", name="Issue a one-time link").click()
    expect(admin.get_by_role("note")).to_contain_text("shown once")
    assert "/console/activate/dsa_" in admin.get_by_label("Link").input_value()
    assert axe_serious(admin) == []
    for path, heading in (
        ("/console/duas", "Data use agreements"),
        ("/console/recipients/sepsis-research", "Recipient"),
        ("/console/grants?state=revoked", "Grants"),
    ):
        admin.goto(path)
        expect(admin.get_by_role("heading", level=1)).to_contain_text(heading)
        assert axe_serious(admin) == [], path

    # the facility publisher: its product's use, and a products-file plan preview
    publisher = signed_in(browser, base, tokens["publisher"][1])
    publisher.goto("/console/publish")
    publisher.get_by_role("link", name="st-marys/encounters").click()
    expect(publisher.locator("#grants-h + table")).to_contain_text("sepsis-research")
    expect(publisher.locator("#version-1\\.0\\.0")).to_contain_text("sepsis-research")
    assert axe_serious(publisher) == []
    publisher.screenshot(path=str(DOCS / "console-publisher.png"), full_page=True)
    publisher.goto("/console/publish/plan")
    example = Path(__file__).resolve().parents[2] / "products.example.yaml"
    publisher.get_by_label("…or paste it").fill(example.read_text())
    publisher.get_by_role("button", name="Show the plan").click()
    expect(publisher.get_by_role("status")).to_contain_text("Plan:")
    expect(publisher.get_by_text("not your facility").first).to_be_visible()
    assert axe_serious(publisher) == []


def test_reading_and_signing_in_work_without_javascript(demo, browser):
    context = browser.new_context(base_url=demo["base"], java_script_enabled=False)
    page = context.new_page()
    page.goto("/console/catalog")  # redirected to sign in
    page.get_by_label("API token").fill(demo["tokens"]["publisher"][1])
    page.keyboard.press("Enter")  # keyboard only
    expect(page.get_by_role("heading", level=1)).to_have_text("Catalog")
    page.get_by_label("Domain or facility").select_option("labs")
    page.get_by_role("button", name="Search").click()
    expect(page.locator("#results")).to_contain_text("labs/lab-results")
    expect(page.locator("#results")).not_to_contain_text("st-marys/patients")
    page.locator('a[href="/console/catalog/labs/lab-results"]').click()
    expect(page.get_by_role("heading", name="Versions")).to_be_visible()
    page.get_by_role("button", name="Sign out").click()
    expect(page.get_by_role("status")).to_contain_text("You are signed out")
    context.close()
