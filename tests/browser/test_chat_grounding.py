"""The supporting quote and the claim check, as a person sees them in the browser.

The FAKE model is slowed (2 tokens a second) so that the page can be looked at between the
quote and the first token, and told to misquote its source ([[fake:misquote]]: every number of
the source's sentence changed), so that the claim check has figures to mark. The README's
screenshot of a real answer is taken by tests/browser/test_chat.py with the real model server.
"""

import io
import re
import threading
from pathlib import Path

from playwright.sync_api import Page, expect

from ingestion import services
from tests.browser.test_chat import sign_in
from tests.factories import PASSWORD, CollectionFactory, RoleFactory, UserFactory

SCREENSHOTS = Path(__file__).resolve().parents[2] / "var" / "screenshots"
TRAVEL = (
    "# Travel policy\n\n## Hotels\n\nBook hotels through the travel portal. The maximum hotel "
    "rate per night is EUR 190 in Munich and EUR 150 in other German cities. Breakfast is "
    "included in the rate.\n"
)


def test_the_quote_shows_before_the_answer_and_invented_figures_are_marked(
    live_asgi, page: Page, settings
):
    settings.LLM_FAKE_TOKENS_PER_SECOND = 2.0
    company = CollectionFactory(name="Company", slug="company")

    def index() -> None:  # a thread of its own: Playwright runs an event loop in this one
        result = services.document_upload(
            actor=None,
            collection=company,
            stream=io.BytesIO(TRAVEL.encode()),
            filename="travel.md",
            size=len(TRAVEL),
        )
        assert services.document_index(document_id=result.document.pk, task_id="b") == "indexed"

    indexer = threading.Thread(target=index)
    indexer.start()
    indexer.join()
    UserFactory(username="erin", roles=[RoleFactory(name="Staff", reads=[company])])

    sign_in(page, live_asgi.url, "erin", password=PASSWORD)
    expect(page.locator('#chat[data-connected="true"]')).to_be_visible()
    page.get_by_label("Your question").fill("What may a hotel in Munich cost? [[fake:misquote]]")
    page.keyboard.press("Enter")
    answer = page.locator(".msg.assistant").last
    quote = answer.locator("figure.quote")
    # The quote is on screen while nothing of the answer is yet.
    expect(quote).to_be_visible(timeout=10_000)
    expect(quote.locator("blockquote")).to_contain_text("EUR 190 in Munich")
    expect(quote).to_contain_text("Travel policy")
    assert answer.locator(".stream").inner_text() == ""
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / "chat-quote-first.png"), full_page=True)

    expect(answer).not_to_have_class(re.compile(r"\bstreaming\b"), timeout=60_000)
    marked = answer.locator("mark.unsupported")
    expect(marked).to_have_count(2)
    expect(marked.first).to_have_text("EUR 191")
    expect(answer.locator(".unsupported-note").first).to_have_text("(not in the sources)")
    expect(quote.locator("blockquote")).to_contain_text("EUR 190 in Munich")
    page.screenshot(path=str(SCREENSHOTS / "chat-unsupported.png"), full_page=True)

    # The same after a reload: the stored answer keeps its quote and its marks.
    page.reload()
    stored = page.locator(".msg.assistant").last
    expect(stored.locator("figure.quote blockquote")).to_contain_text("EUR 190 in Munich")
    expect(stored.locator("mark.unsupported")).to_have_count(2)
