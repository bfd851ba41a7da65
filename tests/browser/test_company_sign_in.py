"""A person signs in through the company's OpenID Connect provider (a real oidc-provider, its
own sign-in and consent pages, in headless Chromium), lands in the chat and reads only what the
roles their groups map to may read."""

from __future__ import annotations

import threading
from io import StringIO

import pytest
from django.contrib.auth.models import Group
from django.core.management import call_command
from playwright.sync_api import Page, expect

from accounts.capabilities import ADMINISTRATOR
from accounts.identity import mapping
from accounts.models import User
from ingestion import services
from ingestion.models import Document
from tests.browser.test_chat import SCREENSHOTS
from tests.identity_support import OidcProvider

SALES_QUESTION = "What is the highest discount I can give a dealer without approval?"
HR_QUESTION = "What is the top of the salary range for band P6?"


@pytest.fixture
def provider(tmp_path, live_asgi):
    running = OidcProvider(tmp_path, callback=live_asgi.url + "/accounts/oidc/callback/").start()
    yield running
    running.stop()


def _index(*collections: str) -> None:
    def run() -> None:  # a thread of its own: Playwright runs an event loop in this one
        for document in Document.objects.filter(collection__slug__in=collections):
            assert services.document_index(document_id=document.pk, task_id="browser") == "indexed"

    indexer = threading.Thread(target=run)
    indexer.start()
    indexer.join()


def ask(page: Page, question: str) -> str:
    page.get_by_label("Your question").fill(question)
    page.keyboard.press("Enter")
    answer = page.locator(".msg.assistant").last
    expect(answer).not_to_have_class("msg assistant streaming", timeout=60_000)
    return answer.inner_text()


def test_a_person_signs_in_at_the_provider_and_reads_only_what_their_groups_map_to(
    live_asgi, page: Page, settings, provider
):
    call_command("load_demo", stdout=StringIO())
    _index("sales", "hr")
    for name, value in provider.settings().items():
        setattr(settings, name, value)
    settings.AUTHENTICATION_BACKENDS = [
        "axes.backends.AxesStandaloneBackend",
        "accounts.identity.local.LocalPasswordBackend",
        "accounts.identity.oidc.CompanyOIDCBackend",
    ]
    admin = Group.objects.get(name=ADMINISTRATOR).user_set.first()
    mapping.mapping_add(
        actor=admin, directory_group="sales-team", role=Group.objects.get(name="Sales")
    )
    provider.accounts({"pia-sub": {"preferred_username": "pia", "email": "pia@lumen.example",
                                   "groups": ["sales-team", "chess-club"]}})  # fmt: skip

    page.goto(live_asgi.url + "/accounts/login/")
    page.get_by_role("link", name="Sign in with your company account").click()
    page.get_by_placeholder("Enter any login").fill("pia-sub")  # the provider's own page
    page.get_by_placeholder("and password").fill("anything")
    page.get_by_role("button", name="Sign-in").click()
    page.get_by_role("button", name="Continue").click()  # the provider's consent page
    expect(page.get_by_role("heading", name="Ask Counsel")).to_be_visible()
    expect(page.locator('#chat[data-connected="true"]')).to_be_visible()
    pia = User.objects.get(username="pia")
    assert set(pia.groups.values_list("name", flat=True)) == {"Sales"}

    sales = ask(page, SALES_QUESTION)
    assert "Pricing" in sales  # a Sales document is found and cited
    hr = ask(page, HR_QUESTION)
    assert "97,350" not in hr and "Salary" not in hr  # HR's documents are not hers
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / "company-sign-in.png"), full_page=True)
