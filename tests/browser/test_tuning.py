"""An administrator trains, evaluates and activates an adapter; an employee is answered by it
until one of its documents changes (the README screenshot docs/img/tuning.png).

Real everything: the Celery worker trains LoRA on the adapters' base (SmolLM2-135M in tests;
a short run: one Sales document, eight steps, so that it fits a test; bench/tuning.py measures
full runs) and converts it for llama.cpp; the adapters' model server loads it and the chat
answers with it per request.
"""

import io
import re
import threading
import time
from io import StringIO
from pathlib import Path

import pytest
from django.core.management import call_command
from playwright.sync_api import Page, expect

from ingestion import services as ingestion
from ingestion.models import Collection, Document
from tests.browser.test_chat import sign_in
from tuning.models import Adapter

SHOTS = Path(__file__).resolve().parents[2] / "var" / "screenshots"
QUESTION = "What is the highest discount I can give a dealer without approval from the VP Sales?"
# The profile's training documents (Sales) and one HR document for the leak probe.
DOCUMENTS = (("sales", "pricing-discount-policy.pdf"), ("hr", "salary-bands.html"))
DEMO = Path(__file__).resolve().parents[2] / "demo"


def in_thread(work) -> None:
    # Playwright runs an event loop in this thread; services that push progress through
    # async_to_sync need a thread of their own.
    errors = []

    def run():
        try:
            work()
        except Exception as exc:  # pragma: no cover - re-raised below
            errors.append(exc)

    thread = threading.Thread(target=run)
    thread.start()
    thread.join()
    if errors:
        raise errors[0]


def ask(page: Page, question: str):
    # Enter before the chat's script has loaded is a newline in the box, not a question.
    expect(page.locator('#chat[data-connected="true"]')).to_be_visible()
    page.get_by_label("Your question").fill(question)
    page.keyboard.press("Enter")
    answer = page.locator(".msg.assistant").last
    expect(answer).not_to_have_class(re.compile(r"\bstreaming\b"), timeout=180_000)
    return answer


@pytest.mark.timeout(2400)
def test_admin_trains_activates_an_adapter_employee_is_routed_to_it_until_a_document_changes(
    celery_worker, live_asgi, page: Page, settings, local_llm, adapter_server
):
    # The worker trains on SmolLM2, converts the adapter to GGUF and evaluates it on llama.cpp;
    # the adapters' model server (`adapter_server`) loads it once ready and answers with it per
    # request; retrieval answers come from the real local model server (`local_llm`).
    settings.LLM_FIRST_TOKEN_TIMEOUT_SECONDS = 90
    settings.LLM_TIMEOUT_SECONDS = 180
    settings.LLM_MAX_NEW_TOKENS = 48
    call_command("load_demo", "--no-documents", stdout=StringIO())

    def index() -> None:
        for slug, name in DOCUMENTS:
            result = ingestion.document_import_path(
                actor=None,
                collection=Collection.objects.get(slug=slug),
                path=DEMO / "documents" / slug / name,
            )
            outcome = ingestion.document_index(document_id=result.document.pk, task_id="t")
            assert outcome in ("indexed", "skipped")  # the worker may have been quicker

    in_thread(index)
    deadline = time.monotonic() + 180
    while Document.objects.filter(state="indexed").count() < 2:  # the worker's copy, if it won
        assert time.monotonic() < deadline, "the demo documents were not indexed"
        time.sleep(0.5)

    # The administrator trains the Sales profile's adapter and watches it.
    sign_in(page, live_asgi.url, "admin")
    page.goto(live_asgi.url + "/manage/adapters/")
    section = page.locator("section.profile", has_text="Sales Operations")
    section.get_by_label("Max steps").fill("8")
    section.get_by_label("Learning rate").fill("0.003")
    section.get_by_role("button", name="Train a new version").click()
    expect(page.get_by_role("heading", name=re.compile("Adapter ap-"))).to_be_visible()
    expect(page.locator('#adapter[data-connected="true"]')).to_be_visible(timeout=10_000)
    expect(page.locator("#adapter-step")).not_to_have_text("0", timeout=240_000)
    expect(page.locator("#loss-chart polyline")).to_have_attribute("points", re.compile(r"\d"))
    expect(page.locator("#adapter-state")).to_have_text(
        "Ready (evaluated, not serving)", timeout=1_200_000
    )
    adapter = Adapter.objects.get()
    held = adapter.metrics["heldout"]
    # Eight steps teach a few facts at best, and four questions make a coarse score: this test
    # checks that the evaluation ran and is shown; whether the adapter beats the base model is
    # measured by bench/tuning.py on a full run (the base model scored 1/4 once, by chance).
    assert held["n"] > 0
    assert all(0.0 <= held[k] <= 1.0 for k in ("base", "adapter")), held
    assert adapter.metrics["leak"]["leaks"] == 0
    expect(page.locator("#leak-probe")).to_contain_text("clean")
    expect(page.locator("svg.accuracy")).to_be_visible()
    # The README shows the benchmark-trained adapter (bench/adapter_page.py), not this short run.
    page.screenshot(path=str(SHOTS / "tuning-short-run.png"), full_page=True)
    page.get_by_role("button", name="Activate").click()
    expect(page.locator("#adapter-state")).to_have_text("Active")

    # Sales is routed to its adapter whenever it is eligible.
    page.goto(live_asgi.url + "/manage/adapters/")
    page.get_by_label("Routing strategy for Sales", exact=True).select_option("tuned")
    page.locator(
        "form", has=page.get_by_label("Routing strategy for Sales", exact=True)
    ).get_by_role("button", name="Save").click()
    expect(page.locator("body")).to_contain_text("Routing for “Sales” saved.")
    page.get_by_role("button", name="Sign out").click()

    sign_in(page, live_asgi.url, "sam")
    answer = ask(page, QUESTION)
    route = answer.locator(".route")
    expect(route).to_have_attribute("data-route", "tuned")
    expect(route).to_contain_text("may not cite sources")
    expect(route).to_contain_text("every one of its training documents")
    # The README's screenshot of an answer on the tuned route, served by the adapters' server.
    answer.scroll_into_view_if_needed()
    page.screenshot(path=str(SHOTS / "chat-tuned.png"))
    # The note stays with the answer: a reload shows it from the stored message.
    page.reload()
    route = page.locator("li.msg.assistant").last.locator(".route")
    expect(route).to_have_attribute("data-route", "tuned")
    expect(route).to_contain_text("may not cite sources")

    # One of its documents gets a new version: stale at once, the next question goes to RAG.
    def edit() -> None:
        document = Document.objects.get(collection__slug="sales")  # its training document
        data = b"# Pricing and Discount Policy\n\nRewritten: discounts above 20% need approval.\n"
        result = ingestion.document_upload(
            actor=None,
            collection=document.collection,
            stream=io.BytesIO(data),
            filename="pricing-discount-policy.md",
            size=len(data),
            document=document,
        )
        assert result.outcome == "new_version"

    in_thread(edit)
    adapter.refresh_from_db()
    assert adapter.state == Adapter.State.STALE
    answer = ask(page, QUESTION)
    route = answer.locator(".route")
    expect(route).to_have_attribute("data-route", "rag")
    expect(route).to_contain_text(f"{adapter.label} is stale")
