"""A full conversation in the browser with the real local model server (the README screenshots).

The suite's model server serves SmolLM2-135M (fast, often wrong); `TEST_LLM_MODEL=
qwen2.5-coder-1.5b` serves the default model instead, as for the README's screenshots.
"""

import re
import threading
from io import StringIO
from pathlib import Path

from django.core.management import call_command
from playwright.sync_api import Page, expect

from assistant.models import Feedback
from compliance.models import QueryLogEntry
from ingestion import services
from ingestion.models import Document

SCREENSHOTS = Path(__file__).resolve().parents[2] / "var" / "screenshots"
QUESTION = "What is the highest discount I can give a dealer without approval from the VP Sales?"


DEMO_PASSWORD = "counsel-demo"  # the demo logins' documented password


def sign_in(page: Page, base: str, username: str, password: str = DEMO_PASSWORD) -> None:
    page.goto(base + "/accounts/login/")
    page.get_by_label("Username").fill(username)
    page.get_by_label("Password").fill(password)
    page.get_by_role("button", name="Sign in").click()


def test_employee_gets_a_streamed_cited_answer_a_colleague_gets_no_trace(
    live_asgi, page: Page, settings, local_llm
):
    settings.DEMO_PASSWORD = "counsel-demo"
    settings.LLM_FIRST_TOKEN_TIMEOUT_SECONDS = 60
    settings.LLM_TIMEOUT_SECONDS = 120
    settings.LLM_MAX_NEW_TOKENS = 120
    call_command("load_demo", stdout=StringIO())

    def index_demo() -> None:
        # In a thread of its own: Playwright runs an event loop in this one, and indexing
        # pushes progress through async_to_sync.
        for document in Document.objects.filter(collection__slug__in=["company", "sales"]):
            outcome = services.document_index(document_id=document.pk, task_id="browser")
            assert outcome == "indexed"

    indexer = threading.Thread(target=index_demo)
    indexer.start()
    indexer.join()
    assert Document.objects.filter(state="indexed").count() >= 10

    sign_in(page, live_asgi.url, "sam")
    expect(page.get_by_role("heading", name="Ask Counsel")).to_be_visible()
    expect(page.locator('#chat[data-connected="true"]')).to_be_visible()
    page.get_by_label("Your question").fill(QUESTION)
    page.keyboard.press("Enter")
    answer = page.locator(".msg.assistant").last
    # The supporting quote first: the policy's own sentence, before the model's answer.
    expect(answer.locator("figure.quote blockquote")).to_contain_text("23.5%", timeout=20_000)
    expect(answer).not_to_have_class(re.compile(r"\bstreaming\b"), timeout=120_000)
    page.screenshot(path=str(SCREENSHOTS / "chat-debug.png"), full_page=True)
    citation = answer.locator(".citations a").first
    expect(citation).to_be_visible()
    expect(answer.locator(".citations")).to_contain_text("Pricing")
    expect(page).to_have_url(live_asgi.url + "/" + "chat/" + page.url.rsplit("/chat/", 1)[1])
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / "chat.png"), full_page=True)
    page.screenshot(path=str(SCREENSHOTS / f"chat-{local_llm.model}.png"), full_page=True)

    # Feedback on the answer that just streamed in, without a reload, stored for that message.
    answer.get_by_label("Comment").fill("exactly what I needed")
    answer.get_by_role("button", name="Helpful", exact=True).click()
    expect(answer.get_by_role("button", name="Helpful", exact=True)).to_have_attribute(
        "aria-pressed", "true"
    )
    message_id = int(answer.get_attribute("data-message"))
    feedback = Feedback.objects.get(message_id=message_id)
    assert (feedback.rating, feedback.comment) == (1, "exactly what I needed")

    # The citation opens the cited document at the cited passage.
    citation.click()
    expect(page.locator(".chunk:target")).to_contain_text("23.5%")

    # A colleague in HR asks the same: no trace of the Sales document anywhere.
    page.get_by_role("button", name="Sign out").click()
    sign_in(page, live_asgi.url, "hana")
    page.get_by_label("Your question").fill(QUESTION)
    page.keyboard.press("Enter")
    other = page.locator(".msg.assistant").last
    expect(other).not_to_have_class("msg assistant streaming", timeout=120_000)
    text = page.locator("#thread").inner_text()
    assert "23.5%" not in text and "Pricing" not in text

    # A question stopped at once, before the model wrote a word, is still recorded: the page
    # lists its new conversation and the query log has it as stopped.
    page.get_by_role("link", name="New conversation").click()
    expect(page.locator('#chat[data-connected="true"]')).to_be_visible()
    page.get_by_label("Your question").fill("How many days of annual leave do I get?")
    page.keyboard.press("Enter")
    page.get_by_role("button", name="Stop").click()
    stopped = page.locator(".msg.assistant").last
    expect(stopped.locator(".status-line")).to_have_text("Stopped.", timeout=30_000)
    expect(page.locator("#conversation-list")).to_contain_text(
        "How many days of annual leave do I get?"
    )
    expect(page).to_have_url(re.compile(r"/chat/\d+/$"))
    entry = QueryLogEntry.objects.get(question="How many days of annual leave do I get?")
    assert entry.outcome == "cancelled" and entry.username == "hana"
