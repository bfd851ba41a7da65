"""Hostile markup in documents, file names, answers and the query log renders inert in Chromium.

Every page is opened with a trap installed before any of its own scripts: `alert`, `confirm`
and `prompt` set `window.__pwned`, which the payloads also set directly, and every Content
Security Policy violation is recorded. A payload that ran sets the flag; a payload that reached
the page as markup and was stopped only by the policy leaves a violation. Both must stay empty,
and the payloads must be on the page as text (so the test looked where they are).
"""

from __future__ import annotations

import re

import pytest
from django.contrib.auth.models import Group
from playwright.sync_api import Page, expect

from accounts.capabilities import ADMINISTRATOR, COMPLIANCE_OFFICER
from tests.factories import PASSWORD, CollectionFactory, RoleFactory, UserFactory
from tests.test_ingestion import upload_and_index

TRAP = """
window.__pwned = null;
window.__csp = [];
document.addEventListener('securitypolicyviolation', (e) => {
  window.__csp.push(e.violatedDirective + ' ' + e.blockedURI + ' ' + (e.sample || ''));
});
for (const name of ['alert', 'confirm', 'prompt']) {
  window[name] = (message) => { window.__pwned = name + ':' + message; };
}
"""

PAYLOADS = [
    '<script>window.__pwned="script"</script>',
    "<img src=x onerror=\"window.__pwned='img'\">",
    "<a href=\"javascript:window.__pwned='link'\">open me</a>",
    "<svg onload=\"window.__pwned='svg'\"><script>window.__pwned='svg-script'</script></svg>",
    "<iframe src=\"javascript:parent.__pwned='iframe'\"></iframe>",
    "<iframe srcdoc=\"<script>parent.__pwned='srcdoc'</script>\"></iframe>",
    "<body onload=alert('body')><style>*{display:none}</style>",
]
# The file name becomes the document's title (no underscores: they turn into spaces).
HOSTILE_NAME = "<img src=x onerror=alert('filename')>.txt"
DOCUMENT_TEXT = (
    "Travel rules. "
    + " ".join(PAYLOADS)
    + "\n\nThe nightly hotel limit is 190 euros in Munich. "
    + " ".join(PAYLOADS)
    + "\n"
)
# Markdown links and images the model might be talked into: only the app's own document links
# may survive the answer's sanitiser.
MARKDOWN = (
    "[evil](https://evil.example/steal) ![beacon](https://evil.example/p.png)"
    " [js](javascript:alert('md')) [own](/documents/1/)"
)
QUESTION = "What is the nightly hotel limit? " + " ".join(PAYLOADS[:3]) + " " + MARKDOWN


def assert_inert(page: Page, where: str) -> None:
    page.wait_for_load_state("load")
    pwned, violations = page.evaluate("[window.__pwned, window.__csp]")
    assert pwned is None, f"{where}: a payload ran ({pwned})"
    assert violations == [], f"{where}: markup reached the page, stopped only by CSP"


def sign_in(page: Page, base: str, username: str) -> None:
    page.goto(base + "/accounts/login/")
    page.get_by_label("Username").fill(username)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("button", name="Sign out")).to_be_visible()


@pytest.fixture
def hostile_world(transactional_db):
    import threading

    sales = CollectionFactory(name="Sales", slug="sales")
    reader = UserFactory(username="rita", roles=[RoleFactory(name="Sales", reads=[sales])])
    admin = UserFactory(username="ada", roles=[Group.objects.get(name=ADMINISTRATOR)])
    officer = UserFactory(username="otto", roles=[Group.objects.get(name=COMPLIANCE_OFFICER)])
    indexed = []
    # In a thread of its own: indexing publishes progress through async_to_sync, which refuses
    # to run beside Playwright's event loop.
    worker = threading.Thread(
        target=lambda: indexed.append(upload_and_index(sales, HOSTILE_NAME, DOCUMENT_TEXT.encode()))
    )
    worker.start()
    worker.join()
    document = indexed[0]
    return {"reader": reader, "admin": admin, "officer": officer, "document": document}


@pytest.mark.timeout(300)
def test_hostile_payloads_render_inert_everywhere(
    live_asgi, hostile_world, server_as_app_role, page: Page, settings
):
    # The server runs as the web role, under row-level security (docs/security.md): every page
    # here also proves that its path opens the right access scope.
    settings.LLM_BACKEND = "fake"  # echoes the question and its sources' first lines
    settings.LLM_FAKE_TOKENS_PER_SECOND = 500.0
    page.add_init_script(TRAP)
    base, document = live_asgi.url, hostile_world["document"]

    # The trap works, and the policy blocks a script added to one of our pages.
    page.goto(base + "/accounts/login/")
    page.evaluate(
        "() => { const s = document.createElement('script');"
        " s.textContent = 'window.__pwned = \"inline\"'; document.body.append(s); }"
    )
    page.wait_for_function("window.__csp.length > 0")
    assert page.evaluate("window.__pwned") is None
    assert "script-src" in page.evaluate("window.__csp[0]")
    page.evaluate("alert('trap')")
    assert page.evaluate("window.__pwned") == "alert:trap"

    # A reader: the document viewer, then a chat answer that echoes payloads and links.
    sign_in(page, base, "rita")
    page.goto(f"{base}/documents/{document.pk}/")
    assert_inert(page, "document viewer")
    expect(page.locator("body")).to_contain_text('<script>window.__pwned="script"</script>')
    expect(page.locator("body")).to_contain_text("onerror=alert('filename')")

    page.goto(base + "/chat/")
    expect(page.locator('#chat[data-connected="true"]')).to_be_visible()
    page.get_by_label("Your question").fill(QUESTION)
    page.keyboard.press("Enter")
    answer = page.locator(".msg.assistant").last
    expect(answer).not_to_have_class(re.compile(r"\bstreaming\b"), timeout=60_000)
    expect(answer.locator(".answer")).to_contain_text("FAKE ANSWER")
    expect(answer.locator(".answer")).to_contain_text("<img src=x onerror=")
    assert_inert(page, "streamed answer")
    hrefs = answer.locator(".answer a").evaluate_all("els => els.map(e => e.getAttribute('href'))")
    # Links elsewhere lose their href (their text stays, inert); the app's own link survives.
    assert len(hrefs) == 3 and [h for h in hrefs if h is not None] == ["/documents/1/"]
    assert answer.locator(".answer img, .answer iframe, .answer svg, .answer script").count() == 0
    expect(answer.locator(".citations")).to_contain_text("onerror=alert('filename')")

    page.reload()  # the same conversation rendered by the server
    expect(page.locator(".msg.assistant").last.locator(".answer")).to_contain_text("FAKE ANSWER")
    assert_inert(page, "conversation history")

    # The administrator's documents pages show the hostile file name as text.
    page.get_by_role("button", name="Sign out").click()
    sign_in(page, base, "ada")
    page.goto(base + "/manage/documents/")
    expect(page.locator("body")).to_contain_text("onerror=alert('filename')")
    assert_inert(page, "documents page")
    page.goto(f"{base}/manage/documents/{document.pk}/")
    expect(page.locator("body")).to_contain_text("onerror=alert('filename')")
    assert_inert(page, "document page")

    # The compliance officer's log: the list and the entry with its question, answer, chunks.
    page.get_by_role("button", name="Sign out").click()
    sign_in(page, base, "otto")
    page.goto(base + "/compliance/")
    expect(page.locator("body")).to_contain_text("What is the nightly hotel limit?")
    assert_inert(page, "query log")
    page.locator("a[href^='/compliance/entries/']").first.click()
    expect(page.locator("body")).to_contain_text('<script>window.__pwned="script"</script>')
    expect(page.locator("body")).to_contain_text("javascript:window.__pwned")
    assert_inert(page, "query-log entry")
    assert server_as_app_role, "the server opened no connection as the web role"


def test_django_admin_works_under_the_policy(live_asgi, page: Page):
    # Break-glass for superusers: its pages must not need inline script or style either.
    UserFactory(username="root", is_superuser=True, is_staff=True)
    CollectionFactory(name="Sales <script>alert('c')</script>", slug="sales")
    page.add_init_script(TRAP)
    page.goto(live_asgi.url + "/django-admin/login/")
    page.get_by_label("Username").fill("root")
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Log in").click()
    for path in ("/django-admin/", "/django-admin/ingestion/collection/"):
        page.goto(live_asgi.url + path)
        assert_inert(page, path)
    page.get_by_role("link", name=re.compile("Sales")).first.click()
    expect(page.locator("body")).to_contain_text("<script>alert('c')</script>")
    assert_inert(page, "collection change form")
