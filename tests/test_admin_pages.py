"""Administration pages through the real views: who may use them, and what each change does."""

from __future__ import annotations

import re

import pytest
from django.contrib.auth.models import Group
from django.test import Client
from django.urls import reverse

from accounts.capabilities import ADMINISTRATOR, COMPLIANCE_OFFICER
from accounts.models import AuditEvent, User
from accounts.selectors import user_readable_collection_ids
from ingestion.models import Collection
from tests.factories import PASSWORD, CollectionFactory, RoleFactory, UserFactory


@pytest.fixture
def cast(db):
    company = CollectionFactory(name="Company", slug="company")
    sales = CollectionFactory(name="Sales", slug="sales")
    sales_role = RoleFactory(name="Sales", reads=[company, sales])
    return {
        "company": company,
        "sales": sales,
        "sales_role": sales_role,
        "admin": UserFactory(username="ada", roles=[Group.objects.get(name=ADMINISTRATOR)]),
        "officer": UserFactory(username="cora", roles=[Group.objects.get(name=COMPLIANCE_OFFICER)]),
        "alice": UserFactory(username="alice", roles=[sales_role]),
        "charlie": UserFactory(username="charlie"),
    }


def as_user(user: User) -> Client:
    client = Client()
    client.force_login(user)
    return client


def manage_urls(cast) -> list[str]:
    return [
        reverse("accounts:user_list"),
        reverse("accounts:user_create"),
        reverse("accounts:user_detail", args=[cast["alice"].pk]),
        reverse("accounts:role_list"),
        reverse("accounts:role_create"),
        reverse("accounts:role_detail", args=[cast["sales_role"].pk]),
        reverse("accounts:role_delete", args=[cast["sales_role"].pk]),
        reverse("accounts:profile_list"),
        reverse("accounts:audit_list"),
        reverse("ingestion:collection_list"),
        reverse("ingestion:collection_create"),
        reverse("ingestion:collection_detail", args=[cast["sales"].pk]),
    ]


@pytest.mark.parametrize("who", ["alice", "charlie", "officer"])
def test_administration_pages_are_forbidden_to_non_administrators(cast, who):
    client = as_user(cast[who])
    for url in manage_urls(cast):
        assert client.get(url).status_code == 403, url
    # Writes too, not only the pages.
    response = client.post(reverse("accounts:role_create"), {"name": "Sneaky"})
    assert response.status_code == 403
    assert not Group.objects.filter(name="Sneaky").exists()


def test_administration_pages_send_anonymous_visitors_to_sign_in(cast):
    for url in manage_urls(cast):
        response = Client().get(url)
        assert response.status_code == 302
        assert response["Location"].startswith(reverse("accounts:login"))


def test_administrator_sees_every_page(cast):
    client = as_user(cast["admin"])
    for url in manage_urls(cast):
        assert client.get(url).status_code == 200, url


def test_admin_creates_a_role_that_reads_a_collection_and_assigns_it(cast):
    client = as_user(cast["admin"])
    response = client.post(
        reverse("accounts:role_create"),
        {"name": "Legal", "capabilities": ["chat"], "collections": [cast["sales"].pk]},
    )
    legal = Group.objects.get(name="Legal")
    assert response.status_code == 302
    charlie = cast["charlie"]
    assert user_readable_collection_ids(user=charlie) == frozenset()
    response = client.post(
        reverse("accounts:user_detail", args=[charlie.pk]),
        {"first_name": "Charlie", "last_name": "C", "email": "", "roles": [legal.pk]},
    )
    assert response.status_code == 302
    assert user_readable_collection_ids(user=charlie) == frozenset({cast["sales"].pk})
    actions = list(AuditEvent.objects.values_list("action", "actor_username"))
    assert ("role.create", "ada") in actions
    assert ("user.roles", "ada") in actions
    profile_page = client.get(reverse("accounts:profile_list")).content.decode()
    assert "Legal" in profile_page


def test_nobody_may_be_administrator_and_compliance_officer_at_once(cast):
    client = as_user(cast["admin"])
    admin_role = Group.objects.get(name=ADMINISTRATOR)
    officer_role = Group.objects.get(name=COMPLIANCE_OFFICER)
    alice = cast["alice"]
    response = client.post(
        reverse("accounts:user_detail", args=[alice.pk]),
        {"first_name": "", "last_name": "", "email": "", "roles": [admin_role.pk, officer_role.pk]},
    )
    assert response.status_code == 200
    assert "separation of duties" in response.content.decode()
    assert list(alice.groups.values_list("name", flat=True)) == ["Sales"]


def test_business_roles_cannot_be_given_user_management_or_log_review(cast):
    client = as_user(cast["admin"])
    response = client.post(
        reverse("accounts:role_create"),
        {"name": "Shadow admin", "capabilities": ["manage_users", "review_querylog"]},
    )
    assert response.status_code == 200
    assert not Group.objects.filter(name="Shadow admin").exists()


def test_the_last_administrator_cannot_be_removed_or_deactivated(cast):
    admin = cast["admin"]
    other = UserFactory(username="otto")
    client = as_user(other)
    # otto is no administrator: 403 first.
    assert client.post(reverse("accounts:user_set_active", args=[admin.pk])).status_code == 403
    client = as_user(admin)
    response = client.post(
        reverse("accounts:user_detail", args=[admin.pk]),
        {"first_name": "", "last_name": "", "email": "", "roles": []},
        follow=True,
    )
    assert "At least one active administrator must remain" in response.content.decode()
    assert admin.groups.filter(name=ADMINISTRATOR).exists()
    response = client.post(
        reverse("accounts:user_set_active", args=[admin.pk]), {"active": "0"}, follow=True
    )
    assert "cannot deactivate your own account" in response.content.decode()
    admin.refresh_from_db()
    assert admin.is_active


def test_deactivated_user_loses_access_at_once(cast):
    alice = cast["alice"]
    as_user(cast["admin"]).post(
        reverse("accounts:user_set_active", args=[alice.pk]), {"active": "0"}
    )
    alice.refresh_from_db()
    assert not alice.is_active
    assert user_readable_collection_ids(user=alice) == frozenset()
    assert AuditEvent.objects.filter(action="user.deactivate", target_id=str(alice.pk)).exists()


def test_builtin_roles_cannot_be_renamed_or_deleted(cast):
    client = as_user(cast["admin"])
    officer_role = Group.objects.get(name=COMPLIANCE_OFFICER)
    client.post(reverse("accounts:role_delete", args=[officer_role.pk]))
    assert Group.objects.filter(pk=officer_role.pk).exists()
    client.post(
        reverse("accounts:role_detail", args=[officer_role.pk]),
        {"name": "Auditors", "collections": []},
    )
    officer_role.refresh_from_db()
    assert officer_role.name == COMPLIANCE_OFFICER


def test_deleting_a_role_asks_for_confirmation_then_revokes_access(cast):
    client = as_user(cast["admin"])
    role = cast["sales_role"]
    page = client.get(reverse("accounts:role_delete", args=[role.pk]))
    assert "1 user holds this role" in page.content.decode()
    assert Group.objects.filter(pk=role.pk).exists()  # a GET deletes nothing
    client.post(reverse("accounts:role_delete", args=[role.pk]))
    assert not Group.objects.filter(pk=role.pk).exists()
    assert user_readable_collection_ids(user=cast["alice"]) == frozenset()
    event = AuditEvent.objects.get(action="role.delete")
    assert event.details["members"] == ["alice"]


def test_new_user_gets_a_temporary_password_and_must_change_it(cast):
    client = as_user(cast["admin"])
    response = client.post(
        reverse("accounts:user_create"),
        {"username": "newbie", "first_name": "New", "last_name": "Bie", "email": ""},
    )
    assert response.status_code == 200
    password = re.search(r'id="temporary-password">([^<]+)<', response.content.decode()).group(1)
    newbie = User.objects.get(username="newbie")
    assert newbie.must_change_password and newbie.check_password(password)

    own = Client()
    own.post(reverse("accounts:login"), {"username": "newbie", "password": password})
    assert own.get("/").url == reverse("accounts:password_change")
    own.post(
        reverse("accounts:password_change"),
        {
            "old_password": password,
            "new_password1": "a-brand-new-passphrase",
            "new_password2": "a-brand-new-passphrase",
        },
    )
    newbie.refresh_from_db()
    assert not newbie.must_change_password
    assert own.get("/").status_code == 200  # no role yet: the home page, not the chat


def test_password_reset_is_audited_and_ends_old_sessions(cast):
    alice = cast["alice"]
    alice_session = as_user(alice)
    assert alice_session.get("/chat/").status_code == 200
    as_user(cast["admin"]).post(reverse("accounts:user_reset_password", args=[alice.pk]))
    response = alice_session.get("/chat/")  # signed out: the password hash changed
    assert response.status_code == 302 and response["Location"].startswith("/accounts/login/")
    assert AuditEvent.objects.filter(action="user.password_reset").count() == 1


def test_collection_readers_can_be_set_by_an_administrator(cast):
    client = as_user(cast["admin"])
    client.post(
        reverse("ingestion:collection_create"),
        {"name": "Board minutes", "description": "For the board only", "readers": []},
    )
    board = Collection.objects.get(name="Board minutes")
    assert board.slug == "board-minutes"
    assert board.pk not in user_readable_collection_ids(user=cast["alice"])
    client.post(
        reverse("ingestion:collection_detail", args=[board.pk]),
        {"name": "Board minutes", "description": "", "readers": [cast["sales_role"].pk]},
    )
    assert board.pk in user_readable_collection_ids(user=cast["alice"])
    event = AuditEvent.objects.get(action="collection.update")
    assert event.details["readers"] == {"before": [], "after": ["Sales"]}


def test_repeated_failed_sign_ins_are_throttled_with_a_clear_message(cast, settings):
    client = Client()
    url = reverse("accounts:login")
    for _ in range(settings.AXES_FAILURE_LIMIT - 1):
        response = client.post(url, {"username": "alice", "password": "wrong"})
        assert response.status_code == 200
    response = client.post(url, {"username": "alice", "password": "wrong"})
    assert response.status_code == 429
    assert "Too many failed sign-ins" in response.content.decode()
    # Even the right password is refused while locked out.
    response = client.post(url, {"username": "alice", "password": PASSWORD})
    assert response.status_code == 429
    # Another account from the same address is not affected.
    response = client.post(url, {"username": "charlie", "password": PASSWORD})
    assert response.status_code == 302
