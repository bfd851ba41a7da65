from io import StringIO
from pathlib import Path

import pytest
from django.core.management import call_command
from playwright.sync_api import Page, expect

from ingestion.models import Document

ROOT = Path(__file__).resolve().parents[2]
GOOD = ROOT / "tests" / "data" / "good"
HOSTILE = ROOT / "tests" / "data" / "hostile"
SCREENSHOTS = ROOT / "var" / "screenshots"


@pytest.mark.timeout(900)
def test_admin_uploads_five_formats_and_watches_them_index(
    live_asgi, celery_worker, page: Page, settings
):
    settings.DEMO_PASSWORD = "counsel-demo"
    call_command("load_demo", "--no-documents", stdout=StringIO())
    base = live_asgi.url
    page.goto(base + "/accounts/login/")
    page.get_by_label("Username").fill("admin")
    page.get_by_label("Password").fill("counsel-demo")
    page.get_by_role("button", name="Sign in").click()
    page.get_by_role("link", name="Documents").first.click()
    expect(page.locator("#live")).to_have_text("Live", timeout=10_000)

    page.get_by_label("Upload into").select_option(label="Engineering")
    files = [
        GOOD / "guide.md",
        GOOD / "notes.txt",
        GOOD / "intranet.html",
        GOOD / "policy.pdf",
        GOOD / "handbook.docx",
        HOSTILE / "corrupt.pdf",
    ]
    page.locator("#upload-files").set_input_files([str(f) for f in files])

    rows = page.locator("#document-rows tr[data-doc-id]")
    expect(rows).to_have_count(6, timeout=20_000)
    # Every good file reaches `indexed`, pushed live (no reload), and the broken one fails
    # with its reason on the page.
    indexed = page.locator('#document-rows tr[data-state="indexed"]')
    expect(indexed).to_have_count(5, timeout=300_000)
    broken = page.locator('#document-rows tr[data-state="failed"]')
    expect(broken).to_have_count(1, timeout=30_000)
    expect(broken.locator(".reason")).to_contain_text("damaged")
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / "documents.png"), full_page=True)
    assert Document.objects.filter(state="indexed", collection__slug="engineering").count() == 5


def test_hostile_file_name_is_displayed_as_text(live_asgi, page: Page, settings):
    settings.DEMO_PASSWORD = "counsel-demo"
    call_command("load_demo", "--no-documents", stdout=StringIO())
    page.goto(live_asgi.url + "/accounts/login/")
    page.get_by_label("Username").fill("admin")
    page.get_by_label("Password").fill("counsel-demo")
    page.get_by_role("button", name="Sign in").click()
    # Every page load starts with the flag down; an injected handler would raise it.
    page.add_init_script("window.__pwned = false")
    page.goto(live_asgi.url + "/manage/documents/")
    hostile = '<img src=x onerror="window.__pwned=true">.md'
    page.locator("#upload-files").set_input_files(
        files=[{"name": hostile, "mimeType": "text/markdown", "buffer": b"# Note\n\nHello."}]
    )
    expect(page.locator("#document-rows tr[data-doc-id]")).to_have_count(1, timeout=20_000)
    expect(page.locator(".doc-file").first).to_contain_text("<img src=x")
    assert page.evaluate("window.__pwned") is False
    page.reload()
    expect(page.locator(".doc-file").first).to_contain_text("<img src=x")
    page.wait_for_timeout(300)  # let a broken image's onerror fire, if it were an element
    assert page.evaluate("window.__pwned") is False
