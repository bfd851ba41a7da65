from io import StringIO
from pathlib import Path

from django.core.management import call_command
from playwright.sync_api import Page, expect

SCREENSHOTS = Path(__file__).resolve().parents[2] / "var" / "screenshots"
DEMO_PASSWORD = "counsel-demo"


def sign_in(page: Page, base: str, username: str) -> None:
    page.goto(base + "/accounts/login/")
    page.get_by_label("Username").fill(username)
    page.get_by_label("Password").fill(DEMO_PASSWORD)
    page.get_by_role("button", name="Sign in").click()


def test_administrator_creates_a_role_grants_a_collection_and_assigns_it(
    live_asgi, page: Page, settings
):
    settings.DEMO_PASSWORD = DEMO_PASSWORD
    call_command("load_demo", stdout=StringIO())
    base = live_asgi.url
    sign_in(page, base, "admin")
    page.get_by_role("link", name="Manage").click()
    expect(page.get_by_role("heading", name="Users")).to_be_visible()

    # A new role that reads the Finance collection.
    page.get_by_role("link", name="Roles").click()
    page.get_by_role("link", name="New role").click()
    page.get_by_label("Name").fill("Auditors")
    page.get_by_label("Finance").check()
    page.get_by_role("button", name="Create role").click()
    expect(page.get_by_text("Created the role Auditors.")).to_be_visible()

    # Nora has no role and reads nothing; give her the new role.
    page.get_by_role("link", name="Users").click()
    page.get_by_role("link", name="nora").click()
    expect(page.get_by_text("Nothing: no role of this user reads a collection.")).to_be_visible()
    page.get_by_label("Auditors").check()
    page.get_by_role("button", name="Save").click()
    expect(page.get_by_text("Saved nora.")).to_be_visible()
    reads = page.locator("section", has=page.get_by_role("heading", name="Reads"))
    expect(reads.get_by_role("link", name="Finance")).to_be_visible()

    # The access profiles page now lists Auditors in a profile with the Finance collection.
    page.get_by_role("link", name="Access profiles").click()
    row = page.get_by_role("row").filter(has=page.get_by_role("link", name="Auditors"))
    expect(row).to_contain_text("Finance")
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / "access-profiles.png"), full_page=True)

    # And the audit trail says who did it.
    page.get_by_role("link", name="Audit trail").click()
    created = page.get_by_role("row").filter(has_text="role.create").filter(has_text="Auditors")
    expect(created).to_contain_text("admin")
    expect(page.get_by_role("row").filter(has_text="user.roles").first).to_contain_text("nora")


def test_non_administrator_gets_403_on_administration_pages(live_asgi, page: Page, settings):
    settings.DEMO_PASSWORD = DEMO_PASSWORD
    call_command("load_demo", stdout=StringIO())
    sign_in(page, live_asgi.url, "sam")
    expect(page.get_by_role("link", name="Manage")).to_have_count(0)
    response = page.goto(live_asgi.url + "/manage/roles/")
    assert response.status == 403
    expect(page.get_by_role("heading", name="Not allowed")).to_be_visible()
