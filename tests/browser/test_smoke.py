from pathlib import Path

from playwright.sync_api import Page, expect

from accounts.models import User

SCREENSHOTS = Path(__file__).resolve().parents[2] / "var" / "screenshots"


def test_sign_in_and_home_page_connects_its_websocket(live_asgi, page: Page):
    User.objects.create_user(
        "alice", password="alice-long-password", first_name="Alice", last_name="Adams"
    )
    page.goto(live_asgi.url + "/")
    # Not signed in: the home page sends us to sign in, and comes back after.
    expect(page).to_have_url(live_asgi.url + "/accounts/login/?next=/")
    page.get_by_label("Username").fill("alice")
    page.get_by_label("Password").fill("alice-long-password")
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("heading", level=1)).to_contain_text("Good to see you, Alice")
    # The status badge turns "Connected" only after a pong came back through Redis.
    expect(page.locator("#live-status")).to_have_text("Connected", timeout=10_000)
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / "home.png"), full_page=True)


def test_wrong_password_shows_a_clear_error(live_asgi, page: Page):
    User.objects.create_user("bob", password="bob-long-password")
    page.goto(live_asgi.url + "/accounts/login/")
    page.get_by_label("Username").fill("bob")
    page.get_by_label("Password").fill("wrong-password")
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("alert")).to_contain_text("enter a correct username and password")
