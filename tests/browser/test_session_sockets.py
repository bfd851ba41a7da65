"""Pages whose websocket is refused or whose session ends: they say so, offer a sign-in link
and stop reconnecting (headless Chromium against the real ASGI server, Redis and PostgreSQL).

Before, a refusal reached the page as a bare 1006 (the server refused the handshake) and the
page reconnected for ever; a signed-out session's chat socket stayed open and answered.
"""

from __future__ import annotations

from urllib.parse import quote, urlsplit

import pytest
from django.contrib.auth.models import Group
from django.contrib.sessions.models import Session
from playwright.sync_api import Page, expect

from accounts.capabilities import ADMINISTRATOR
from config.asgi import application
from tests.browser.test_chat import sign_in
from tests.conftest import LiveASGIServer
from tests.factories import PASSWORD, RoleFactory, UserFactory

QUIET_MS = 4000  # the page's first reconnect comes after 1 s; none may come in this long


def sockets_opened(page: Page) -> list[str]:
    """The URLs of the websockets the page opens from now on."""
    opened: list[str] = []
    page.on("websocket", lambda ws: opened.append(ws.url))
    return opened


def sign_out_elsewhere(page: Page, base: str) -> None:
    """Sign out in another tab of the same browser (the same session cookie)."""
    other = page.context.new_page()
    other.goto(base + "/accounts/password/")  # any page with the sign-out button
    other.get_by_role("button", name="Sign out").click()
    expect(other.get_by_role("button", name="Sign in")).to_be_visible()
    other.close()


def expect_sign_in_offered(page: Page, where: str, text: str) -> None:
    notice = page.locator(where)
    expect(notice).to_contain_text(text)
    link = notice.get_by_role("link", name="Sign in")
    expect(link).to_be_visible()
    back = quote(urlsplit(page.url).path, safe="")  # as encodeURIComponent writes it
    expect(link).to_have_attribute("href", f"/accounts/login/?next={back}")


def test_the_chat_page_stops_and_offers_sign_in_when_its_session_ends(live_asgi, page: Page):
    UserFactory(username="sam", roles=[RoleFactory(name="Readers")])
    sign_in(page, live_asgi.url, "sam", PASSWORD)
    expect(page.locator('#chat[data-connected="true"]')).to_be_visible()
    opened = sockets_opened(page)
    sign_out_elsewhere(page, live_asgi.url)
    expect(page.locator('#chat[data-refused="4410"]')).to_be_attached()
    expect_sign_in_offered(page, "#banner", "Your session has ended")
    page.wait_for_timeout(QUIET_MS)
    assert opened == []  # no reconnecting
    # A question typed now is not sent anywhere, and the message stays.
    page.get_by_label("Your question").fill("Anyone there?")
    page.keyboard.press("Enter")
    expect(page.locator("#banner")).to_contain_text("Your session has ended")
    assert opened == []


def test_a_chat_page_refused_on_reconnecting_stops_and_offers_sign_in(live_asgi, page: Page):
    """The server restarts while the session expires: the page's reconnect is refused (4401)."""
    UserFactory(username="sam", roles=[RoleFactory(name="Readers")])
    sign_in(page, live_asgi.url, "sam", PASSWORD)
    expect(page.locator('#chat[data-connected="true"]')).to_be_visible()
    live_asgi.stop()
    expect(page.locator("#banner")).to_contain_text("reconnecting")
    Session.objects.all().delete()
    restarted = LiveASGIServer(application)
    restarted.port, restarted.url = live_asgi.port, live_asgi.url
    restarted.server.config.port = live_asgi.port
    restarted.start()
    try:
        expect(page.locator('#chat[data-refused="4401"]')).to_be_attached(timeout=20_000)
        expect_sign_in_offered(page, "#banner", "You are signed out")
        opened = sockets_opened(page)
        page.wait_for_timeout(QUIET_MS)
        assert opened == []
    finally:
        restarted.stop()


@pytest.mark.parametrize(
    ("path", "root"), [("/manage/documents/", "#upload"), ("/manage/adapters/", "#adapters")]
)
def test_progress_pages_stop_and_offer_sign_in_when_their_session_ends(
    live_asgi, page: Page, path, root
):
    UserFactory(username="ada", roles=[Group.objects.get(name=ADMINISTRATOR)])
    sign_in(page, live_asgi.url, "ada", PASSWORD)
    page.goto(live_asgi.url + path)
    expect(page.locator("#live")).to_have_text("Live")
    opened = sockets_opened(page)
    sign_out_elsewhere(page, live_asgi.url)
    expect(page.locator(f'{root}[data-refused="4410"]')).to_be_attached()
    expect_sign_in_offered(page, "#live", "Your session has ended")
    page.wait_for_timeout(QUIET_MS)
    assert opened == []
