"""Issue 19 in the browser: the chat as ChatGPT users expect it, on a desktop and a phone.

Real server (uvicorn), real websocket, PostgreSQL and Redis; the FAKE model (the named boundary
fake) slowed so that the page can be looked at while an answer streams. axe-core (from npm:
`scripts/fetch-axe`) checks the chat, documents, adapters and compliance pages. The README's
light and dark screenshots are taken here (docs/img/).
"""

from __future__ import annotations

import io
import re
import subprocess
import threading
from pathlib import Path

import pytest
from playwright.sync_api import Browser, Page, expect

from accounts.capabilities import Capability
from assistant.models import Citation, Feedback, Message
from ingestion import services
from tests.browser.test_chat import sign_in
from tests.factories import PASSWORD, CollectionFactory, RoleFactory, UserFactory

pytestmark = [pytest.mark.browser, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[2]
AXE = ROOT / "var" / "node" / "node_modules" / "axe-core" / "axe.min.js"
IMG = ROOT / "docs" / "img"
TRAVEL = (
    "# Travel policy\n\n## Hotels\n\nBook hotels through the travel portal. The maximum hotel "
    "rate per night is EUR 190 in Munich and EUR 150 in other German cities. Breakfast is "
    "included in the rate.\n"
)
LEAVE = "# Leave policy\n\n## Annual leave\n\nFull-time employees receive 30 days of leave.\n"
VIEWPORTS = {
    "desktop": {"viewport": {"width": 1280, "height": 720}},
    "phone": {"viewport": {"width": 390, "height": 844}, "is_mobile": True, "has_touch": True},
}


def _index(collection, name: str, text: str):
    def run() -> None:  # a thread of its own: Playwright runs an event loop in this one
        result = services.document_upload(
            actor=None, collection=collection, stream=io.BytesIO(text.encode()), filename=name,
            size=len(text),
        )  # fmt: skip
        assert services.document_index(document_id=result.document.pk, task_id="b") == "indexed"
        holder.append(result.document)

    holder: list = []
    thread = threading.Thread(target=run)
    thread.start()
    thread.join()
    return holder[0]


@pytest.fixture
def company(transactional_db):
    company = CollectionFactory(name="Company", slug="company")
    secret = CollectionFactory(name="Board", slug="board")
    travel = _index(company, "travel.md", TRAVEL)
    _index(company, "leave.md", LEAVE)
    _index(secret, "board.md", "# Board minutes\n\n## Merger\n\nProject HERON is confidential.\n")
    staff = RoleFactory(name="Staff", reads=[company])
    UserFactory(username="erin", roles=[staff])
    return {"travel": travel, "staff": staff}


def _page(browser: Browser, kind: str, **extra) -> Page:
    context = browser.new_context(
        **VIEWPORTS[kind], permissions=["clipboard-read", "clipboard-write"], **extra
    )
    return context.new_page()


def _ask(page: Page, text: str) -> None:
    page.get_by_label("Your question").fill(text)
    page.keyboard.press("Enter")


def _settled(page: Page):
    last = page.locator(".msg.assistant").last
    expect(last).not_to_have_class(re.compile(r"\bstreaming\b"), timeout=60_000)
    expect(last).to_have_attribute("data-message", re.compile(r"\d+"), timeout=20_000)
    return last


def axe_violations(page: Page) -> list[dict]:
    """Serious and critical axe-core findings on the page as it is now. The library is
    evaluated through the DevTools protocol, which the page's CSP does not govern."""
    page.evaluate(AXE.read_text())
    found = page.evaluate(
        "async () => (await axe.run(document, {runOnly: ['wcag2a', 'wcag2aa', 'best-practice']}))"
        ".violations.map(v => ({id: v.id, impact: v.impact, nodes: v.nodes.map(n => n.target)}))"
    )
    return [v for v in found if v["impact"] in ("serious", "critical")]


@pytest.fixture(scope="session", autouse=True)
def _axe():
    subprocess.run([str(ROOT / "scripts" / "fetch-axe")], check=True)


@pytest.mark.parametrize("kind", ["desktop", "phone"])
def test_the_chat_as_people_expect_it(live_asgi, browser: Browser, company, settings, kind):
    settings.LLM_FAKE_TOKENS_PER_SECOND = 12.0
    page = _page(browser, kind)
    sign_in(page, live_asgi.url, "erin", password=PASSWORD)
    expect(page.locator('#chat[data-connected="true"]')).to_be_visible()

    # An empty chat suggests questions from readable documents only; shortcuts are listed.
    suggestions = page.locator(".suggestion")
    expect(suggestions.first).to_be_visible()
    assert "Board" not in page.locator("#intro").inner_text()
    assert "HERON" not in page.content()
    expect(page.locator(".shortcuts")).to_contain_text("Esc")
    assert page.locator("#thread").get_attribute("aria-live") is None
    assert axe_violations(page) == []

    # Markdown renders while it streams, with the final sanitiser's rules: bold is bold, an
    # image tag written into the answer never becomes an element.
    _ask(page, "What may a **hotel in Munich** cost? <img src=x onerror=document.title='x'>")
    expect(page.locator("#announcer")).to_have_text("Counsel is answering.")
    streaming = page.locator(".msg.assistant.streaming .stream")
    expect(streaming.locator("strong")).to_have_text("hotel in Munich", timeout=20_000)
    assert streaming.locator("img").count() == 0
    # The box is not locked: the next question is queued and sent when this answer ends.
    expect(page.get_by_label("Your question")).to_be_focused()
    _ask(page, "How many days of annual leave do I get? [[fake:quote]]")
    expect(page.locator("#queued")).to_contain_text("annual leave")
    expect(page.locator(".msg.user")).to_have_count(2, timeout=60_000)
    answer = _settled(page)
    expect(page.locator("#announcer")).to_have_text("The answer is ready.")
    assert page.title() != "x" and page.locator(".answer img").count() == 0
    expect(page.locator(".msg.assistant")).to_have_count(2)

    # The citation preview: the stored passage with the quoted sentence marked (hover or tap).
    citation = answer.locator("li.citation").first
    if kind == "phone":
        citation.locator(".preview-toggle").tap()
    else:
        citation.hover()
    preview = citation.locator(".preview")
    expect(preview).to_be_visible()
    expect(preview.locator("mark.used")).to_contain_text("30 days")

    # "Why this answer": route, passage with the quote, the figure and where it was found.
    answer.locator(".why summary").click()
    why = answer.locator(".why")
    expect(why.locator(".why-route")).to_contain_text("rag")
    expect(why.locator(".why-sources mark.used")).to_contain_text("30 days")
    expect(why.locator(".why-checks")).to_contain_text("30: found in source [1]")

    # Copy puts the answer's text on the clipboard.
    answer.get_by_role("button", name="Copy").click()
    expect(answer.get_by_role("button", name="Copied")).to_be_visible()
    assert "30 days" in page.evaluate("navigator.clipboard.readText()")

    # Feedback: Enter in the comment keeps the thumbs-down (it used to become "Helpful").
    answer.get_by_role("button", name="Not helpful").click()
    expect(answer.get_by_role("button", name="Not helpful")).to_have_attribute(
        "aria-pressed", "true"
    )
    answer.get_by_label("Comment").fill("the number is wrong")
    answer.get_by_label("Comment").press("Enter")
    expect(answer.locator("form.feedback[data-saved=comment]")).to_have_count(1)
    message_id = int(answer.get_attribute("data-message"))
    feedback = Feedback.objects.get(message_id=message_id)
    assert (feedback.rating, feedback.comment) == (-1, "the number is wrong")

    # Regenerate asks the same question again; Edit puts it back in the box to change.
    answer.get_by_role("button", name="Regenerate").click()
    expect(page.locator(".msg.user")).to_have_count(3)
    _settled(page)
    page.locator(".msg.user").last.get_by_role("button", name="Edit this question").click()
    box = page.get_by_label("Your question")
    expect(box).to_have_value("How many days of annual leave do I get? [[fake:quote]]")
    expect(box).to_be_focused()

    # Ask the document: from a preview, a question searched only in that document.
    last = page.locator(".msg.assistant").last
    last.locator(".preview-toggle").first.click()
    last.get_by_role("button", name="Ask this document").first.click()
    expect(page.locator("#scope")).to_contain_text("Leave policy")
    _ask(page, "What may a hotel in Munich cost?")
    scoped = _settled(page)
    asked = Message.objects.get(pk=int(scoped.get_attribute("data-message")))
    titles = set(Citation.objects.filter(message=asked).values_list("document_title", flat=True))
    assert titles <= {"Leave policy"}
    page.locator("#scope-clear").click()
    expect(page.locator("#scope")).to_be_hidden()

    # Esc stops an answer, and focus goes back to the question box.
    settings.LLM_FAKE_TOKENS_PER_SECOND = 3.0
    _ask(page, "What may a hotel in Munich cost? [[fake:long]]")
    expect(page.locator(".msg.assistant.streaming .stream")).not_to_be_empty(timeout=20_000)
    page.keyboard.press("Escape")
    expect(page.locator(".msg.assistant").last.locator(".status-line")).to_have_text("Stopped.")
    expect(page.locator("#announcer")).to_have_text("The answer was stopped.")
    expect(page.get_by_label("Your question")).to_be_focused()

    # No scroll jump: a reader who scrolled up stays where they are while the answer streams.
    _ask(page, "What may a hotel in Munich cost? [[fake:long]]")
    expect(page.locator(".msg.assistant.streaming .stream")).not_to_be_empty(timeout=20_000)
    page.mouse.move(5 if kind == "phone" else 700, 300)
    page.mouse.wheel(0, -20_000)
    expect(page.locator("#jump")).to_be_visible(timeout=20_000)
    top = page.evaluate("[document.getElementById('thread').scrollTop, window.scrollY]")
    page.keyboard.press("Escape")
    expect(page.locator(".msg.assistant").last.locator(".status-line")).to_have_text("Stopped.")
    assert page.evaluate("[document.getElementById('thread').scrollTop, window.scrollY]") == top
    settings.LLM_FAKE_TOKENS_PER_SECOND = 12.0

    # Search finds the conversation by what was asked in it.
    conversation_url = page.url
    search = page.get_by_label("Search your conversations")
    search.fill("Munich")
    search.press("Enter")
    expect(page.locator("#conversation-list a")).to_have_count(1)
    expect(page.locator("#search-summary")).to_contain_text("1 conversation matches")

    # Dark mode: the system's choice, and a toggle that overrides it.
    page.goto(conversation_url)
    expect(page.locator('#chat[data-connected="true"]')).to_be_visible()
    background = "getComputedStyle(document.body).backgroundColor"
    light = page.evaluate(background)
    page.get_by_role("button", name="Dark mode").click()
    expect(page.locator("html")).to_have_attribute("data-theme", "dark")
    assert page.evaluate(background) != light
    assert axe_violations(page) == []
    if kind == "desktop":
        IMG.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(IMG / "chat-dark.png"))
    page.get_by_role("button", name="Dark mode").click()
    expect(page.locator("html")).to_have_attribute("data-theme", "light")
    assert axe_violations(page) == []
    if kind == "desktop":
        page.screenshot(path=str(IMG / "chat-light.png"))
    dark = _page(browser, kind, color_scheme="dark")
    sign_in(dark, live_asgi.url, "erin", password=PASSWORD)
    # The sign-in redirects: read the colour once the page it lands on has a body.
    dark.wait_for_load_state("load")
    expect(dark.locator("body")).to_be_visible()
    assert dark.evaluate(background) != light

    # Deleting asks first: dismissed, nothing happens; accepted, the conversation goes.
    page.locator(".conversation-tools summary").click()
    page.once("dialog", lambda dialog: dialog.dismiss())
    page.get_by_role("button", name="Delete conversation").click()
    expect(page).to_have_url(conversation_url)
    page.once("dialog", lambda dialog: dialog.accept())
    page.get_by_role("button", name="Delete conversation").click()
    expect(page.locator(".messages")).to_contain_text("Conversation deleted.")


@pytest.mark.parametrize("kind", ["desktop", "phone"])
def test_an_answer_streaming_when_the_socket_drops_is_recovered(
    live_asgi, browser: Browser, company, settings, kind
):
    settings.LLM_FAKE_TOKENS_PER_SECOND = 4.0
    page = _page(browser, kind)
    sockets = []

    def through(ws) -> None:  # the page's socket, passed on to the real server
        ws.connect_to_server()
        sockets.append(ws)

    page.route_web_socket(re.compile(r"/ws/chat/$"), through)
    sign_in(page, live_asgi.url, "erin", password=PASSWORD)
    expect(page.locator('#chat[data-connected="true"]')).to_be_visible()
    _ask(page, "What may a hotel in Munich cost? [[fake:long]]")
    stream = page.locator(".msg.assistant.streaming .stream")
    expect(stream).to_contain_text("Question", timeout=20_000)
    shown = stream.inner_text().strip()
    sockets[-1].close(code=4000, reason="network")
    # Connected again, the page shows the answer as the server recorded it: stopped, kept.
    recovered = page.locator(".msg.assistant").last
    expect(recovered).to_have_class(re.compile(r"status-cancelled"), timeout=30_000)
    expect(recovered.locator(".answer")).to_contain_text(shown)  # at least what was on screen
    expect(page.locator('#chat[data-connected="true"]')).to_be_visible()
    assert len(sockets) >= 2


def test_axe_finds_nothing_serious_on_documents_adapters_and_compliance(
    live_asgi, browser: Browser, company
):
    UserFactory(
        username="ada",
        roles=[
            RoleFactory(
                name="Admins",
                reads=[],
                capabilities=[
                    Capability.CHAT, Capability.MANAGE_DOCUMENTS, Capability.MANAGE_ADAPTERS,
                    Capability.REVIEW_QUERYLOG,
                ],
            )
        ],
    )  # fmt: skip
    for kind in VIEWPORTS:
        page = _page(browser, kind)
        sign_in(page, live_asgi.url, "ada", password=PASSWORD)
        for path in ("/chat/", "/manage/documents/", "/manage/adapters/", "/compliance/",
                     "/compliance/dashboard/"):  # fmt: skip
            page.goto(live_asgi.url + path)
            assert axe_violations(page) == [], (kind, path)
