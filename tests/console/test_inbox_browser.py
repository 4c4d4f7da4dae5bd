"""The inbox in real headless Chromium on the demo estate: the navigation's unread count, mark
read in place with htmx (the count follows), the link to the page that serves it, and the same
with JavaScript off. axe-core finds no serious violation on the inbox."""

import pytest
from playwright.sync_api import expect

from tests.console.test_browser import axe_serious, browser, demo, signed_in  # noqa: F401

pytestmark = pytest.mark.slow  # builds a demo estate and drives a browser


def test_inbox_with_htmx(demo, browser):  # noqa: F811
    consumer = signed_in(browser, demo["base"], demo["tokens"]["consumer"][1])
    # `mesh demo` filed dr-okafor's request and the reviewer approved it: one unread notice.
    expect(consumer.locator("#inbox-count")).to_have_text("1 unread")
    consumer.get_by_role("link", name="Inbox").click()
    expect(consumer.get_by_role("heading", level=1)).to_contain_text("1 unread")
    item = consumer.locator("ul.inbox li").first
    expect(item).to_contain_text("approved")
    expect(item).to_have_class("unread")
    assert axe_serious(consumer) == []
    url = consumer.url
    item.get_by_role("button", name="Mark read").click()
    expect(consumer.locator("ul.inbox li").first).to_have_class("read")
    expect(consumer.locator("#inbox-count")).to_have_text("")  # refreshed by HX-Trigger
    assert consumer.url == url  # swapped in place, no navigation
    consumer.locator("ul.inbox li").first.get_by_role("link").click()
    expect(consumer.get_by_role("heading", level=1)).to_have_text("My organisation's requests")


def test_inbox_without_javascript(demo, browser):  # noqa: F811
    context = browser.new_context(base_url=demo["base"], java_script_enabled=False)
    page = context.new_page()
    page.goto("/console/inbox")  # redirected to sign in, then back
    page.get_by_label("API token").fill(demo["tokens"]["platform admin"][1])
    page.keyboard.press("Enter")
    expect(page.get_by_role("heading", level=1)).to_contain_text("unread")
    filed = page.locator("ul.inbox li.unread").first
    expect(filed).to_contain_text("filed")
    filed.get_by_role("button", name="Mark read").click()  # a plain form: 303 back to the list
    expect(page.locator("ul.inbox li").first).to_have_class("read")
    context.close()
