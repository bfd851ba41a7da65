"""The compliance officer's review flow in the browser (and the README's dashboard picture)."""

from __future__ import annotations

import hashlib
import json
from io import StringIO
from pathlib import Path

import pytest
from django.core.management import call_command
from playwright.sync_api import Page, expect

from compliance.models import QueryLogReview

ROOT = Path(__file__).resolve().parents[2]
SCREENSHOTS = ROOT / "var" / "screenshots"


@pytest.mark.timeout(600)
def test_officer_filters_reviews_flags_exports_and_sees_the_dashboard(
    live_asgi, celery_worker, page: Page, settings
):
    settings.DEMO_PASSWORD = "counsel-demo"
    call_command("load_demo", stdout=StringIO())  # with three weeks of query-log history
    base = live_asgi.url
    page.set_viewport_size({"width": 1280, "height": 900})
    page.goto(base + "/accounts/login/")
    page.get_by_label("Username").fill("compliance")
    page.get_by_label("Password").fill("counsel-demo")
    page.get_by_role("button", name="Sign in").click()
    page.get_by_role("link", name="Query log").first.click()
    expect(page.get_by_role("heading", name="Query log")).to_be_visible()

    # One department's answered questions of last week.
    page.get_by_role("link", name="Last week").click()
    page.get_by_label("Role").select_option("Sales")
    page.get_by_label("Outcome").select_option("answered")
    page.get_by_label("Route").select_option("rag")
    page.get_by_role("button", name="Filter").click()
    rows = page.locator("table.log tbody tr")
    expect(rows.first).to_contain_text("Sales")
    assert rows.count() >= 1
    assert "No entries match" not in rows.first.inner_text()
    list_url = page.url
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / "compliance-log.png"), full_page=True)
    assert "role=Sales" in list_url and "date_from=" in list_url

    # Open one: the question, the answer, and the chunk texts that were used.
    rows.first.get_by_role("link").click()
    expect(page.get_by_role("heading", name="Chunks used (1)")).to_be_visible()
    expect(page.locator("article.chunk blockquote")).to_be_visible()
    expect(page.get_by_text("Opened by")).to_be_visible()
    expect(page.locator(".events").last).to_contain_text("compliance")

    # Flag it with a note.
    page.get_by_label("Note or reason").fill("Quotes a confidential discount; check with Sales.")
    page.get_by_role("button", name="Flag").click()
    expect(page.get_by_text("Flagged.", exact=True)).to_be_visible()
    expect(page.get_by_text("Quotes a confidential discount; check with Sales.")).to_be_visible()
    assert QueryLogReview.objects.get().kind == "flagged"
    page.screenshot(path=str(SCREENSHOTS / "compliance-entry.png"), full_page=True)

    # Export the selection and check the file against its manifest.
    page.goto(list_url)
    count_text = page.locator("#match-count").inner_text()
    page.get_by_label("Export this selection as").select_option("csv")
    page.get_by_role("button", name="Export").click()
    expect(page.locator("#export-state")).to_have_text("Done", timeout=60_000)
    shown_hash = page.locator("#export-sha256").inner_text().strip()
    download = page.request.get(base + page.locator("#export-download").get_attribute("href"))
    manifest = json.loads(
        page.request.get(base + page.locator("#export-manifest").get_attribute("href")).body()
    )
    body = download.body()
    assert hashlib.sha256(body).hexdigest() == manifest["sha256"] == shown_hash
    assert manifest["count"] == int(count_text.split()[0])
    assert manifest["filters"]["role"] == "Sales"

    # The chain verifies on the worker; the page refreshes itself until the verdict is in.
    page.get_by_role("link", name="Integrity").click()
    page.get_by_role("button", name="Verify now").click()
    expect(page.locator("#verdict")).to_contain_text("Intact.", timeout=60_000)

    # The dashboard: charts drawn on the server.
    page.get_by_role("link", name="Dashboard").click()
    expect(page.get_by_role("heading", name="Dashboard")).to_be_visible()
    expect(page.locator("svg.chart")).to_have_count(8)
    expect(page.get_by_role("img", name="Questions per day, by role")).to_be_visible()
    # Like the other README pictures: saved under var/screenshots/, copied to docs/img/ by hand
    # when the page changes (a test run must not rewrite tracked files).
    page.screenshot(path=str(SCREENSHOTS / "compliance.png"), full_page=True)
