"""The smaller doors of issue 15 (item 9), each reproduced before it was closed.

- Two administrators demoting each other at once could leave none.
- The Django admin edited roles' permissions, users' roles and collection readers without the
  audit trail or the separation-of-duties check.
- Administrators saw the compliance officer's export filters (what is being investigated) in
  their audit trail.
- `/healthz` showed worker host names and error text to anyone.

Real PostgreSQL, real threads with their own connections; nothing of ours mocked.
"""

from __future__ import annotations

import threading

import pytest
from django.contrib.auth.models import Group, Permission
from django.core.exceptions import ValidationError
from django.db import connection, transaction
from django.test import Client
from django.urls import reverse

from accounts import services
from accounts.capabilities import ADMINISTRATOR, COMPLIANCE_OFFICER
from accounts.models import User
from compliance.services import querylog_export_request
from ingestion.models import Collection
from tests.factories import CollectionFactory, RoleFactory, UserFactory


def as_user(user: User) -> Client:
    client = Client()
    client.force_login(user)
    return client


# --- two administrators demoting each other ------------------------------------------------------


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize(
    "second_actor",
    ["ada", "bo"],
    ids=["ada-in-two-tabs-demotes-herself-and-bo", "ada-and-bo-demote-each-other"],
)
def test_two_demotions_at_once_leave_an_administrator(second_actor):
    """The first demotion is held open while the second runs. Before the fix, ada demoting
    herself and bo at once left no administrator (each change saw the other's target as a
    remaining administrator); ada and bo demoting each other deadlocked, one of them with a
    server error."""
    admin_role = Group.objects.get(name=ADMINISTRATOR)
    users = {
        "ada": UserFactory(username="ada", roles=[admin_role]),
        "bo": UserFactory(username="bo", roles=[admin_role]),
    }
    first_done, release = threading.Event(), threading.Event()
    outcome: dict[str, object] = {}

    def first_demotion() -> None:  # ada demotes herself
        try:
            with transaction.atomic():  # held open: the second demotion runs meanwhile
                services.user_set_roles(actor=users["ada"], user=users["ada"], roles=[])
                first_done.set()
                release.wait(10)
            outcome["first"] = "ok"
        except Exception as exc:
            outcome["first"] = repr(exc)
        finally:
            first_done.set()
            connection.close()

    def second_demotion() -> None:  # bo loses the role, by ada (another tab) or by bo
        try:
            services.user_set_roles(actor=users[second_actor], user=users["bo"], roles=[])
            outcome["second"] = "ok"
        except ValidationError as exc:
            outcome["second"] = " ".join(exc.messages)
        except Exception as exc:
            outcome["second"] = repr(exc)
        finally:
            connection.close()

    first = threading.Thread(target=first_demotion)
    first.start()
    assert first_done.wait(10)
    second = threading.Thread(target=second_demotion)
    second.start()
    second.join(2)  # with the lock it waits for the first; without, it gets as far as it can
    release.set()
    first.join(10)
    second.join(10)
    admins = User.objects.filter(is_active=True, groups__name=ADMINISTRATOR)
    assert list(admins.values_list("username", flat=True)) == ["bo"], outcome
    assert outcome["first"] == "ok", outcome
    assert "At least one active administrator must remain" in str(outcome["second"]), outcome


# --- the Django admin ---------------------------------------------------------------------------


@pytest.fixture
def superuser(db):
    """A break-glass superuser: opens the Django admin, holds no Counsel role."""
    return User.objects.create_superuser("root", "root@example.com", "a-long-pass-phrase-1")


def _perm(codename: str) -> Permission:
    return Permission.objects.get(codename=codename, content_type__app_label="accounts")


def test_the_django_admin_cannot_change_roles_permissions(superuser):
    role = RoleFactory(name="Sales")
    admin = as_user(superuser)
    url = reverse("admin:auth_group_change", args=[role.pk])
    page = admin.get(url)
    assert page.status_code == 200  # it may look
    response = admin.post(
        url,
        {"name": "Sales", "permissions": [_perm("review_querylog").pk, _perm("manage_users").pk]},
    )
    assert response.status_code == 403
    assert not role.permissions.filter(codename__in=["review_querylog", "manage_users"]).exists()
    assert admin.post(reverse("admin:auth_group_add"), {"name": "Shadow"}).status_code == 403
    assert not Group.objects.filter(name="Shadow").exists()


def test_the_django_admin_cannot_change_a_users_roles_or_permissions(superuser):
    officer = UserFactory(username="cora", roles=[Group.objects.get(name=COMPLIANCE_OFFICER)])
    admin = as_user(superuser)
    url = reverse("admin:accounts_user_change", args=[officer.pk])
    form = admin.get(url).content.decode()
    # The role and permission pickers are not form fields any more.
    assert 'name="groups"' not in form and 'name="user_permissions"' not in form
    admin.post(
        url,
        {
            "username": "cora",
            "groups": [Group.objects.get(name=ADMINISTRATOR).pk],
            "user_permissions": [_perm("manage_users").pk],
            "date_joined_0": "2026-01-01",
            "date_joined_1": "00:00:00",
        },
    )
    officer.refresh_from_db()
    assert list(officer.groups.values_list("name", flat=True)) == [COMPLIANCE_OFFICER]
    assert not officer.user_permissions.exists()


def test_the_django_admin_cannot_change_collection_readers(superuser):
    hr = CollectionFactory(name="HR", slug="hr")
    outsider = RoleFactory(name="Outsiders")
    admin = as_user(superuser)
    url = reverse("admin:ingestion_collection_change", args=[hr.pk])
    assert 'name="readers"' not in admin.get(url).content.decode()
    admin.post(url, {"name": "HR", "slug": "hr", "readers": [outsider.pk]})
    assert not Collection.objects.get(pk=hr.pk).readers.exists()


# --- the audit trails ------------------------------------------------------------------------


def test_administrators_do_not_see_what_the_compliance_officer_investigates(db):
    admin = UserFactory(username="ada", roles=[Group.objects.get(name=ADMINISTRATOR)])
    officer = UserFactory(username="cora", roles=[Group.objects.get(name=COMPLIANCE_OFFICER)])
    querylog_export_request(
        officer=officer, filters={"user": "sam", "q": "embezzlement"}, export_format="csv"
    )
    trail = as_user(admin).get(reverse("accounts:audit_list")).content.decode()
    assert "embezzlement" not in trail and "querylog.export" not in trail
    own = as_user(officer).get(reverse("compliance:audit")).content.decode()
    assert "embezzlement" in own and "querylog.export" in own
    assert as_user(admin).get(reverse("compliance:audit")).status_code == 403


# --- health ---------------------------------------------------------------------------------------


def test_healthz_tells_anyone_the_state_and_administrators_the_details(db, settings):
    settings.WORKER_HEARTBEAT_MAX_AGE = 0  # no live worker: the worker check fails with detail
    anonymous = Client().get("/healthz").json()
    assert anonymous["status"] in ("ok", "degraded")
    for name, check in anonymous["checks"].items():
        assert set(check) == {"ok"}, name
    admin = UserFactory(username="ada", roles=[Group.objects.get(name=ADMINISTRATOR)])
    detailed = as_user(admin).get("/healthz").json()
    assert "error" in detailed["checks"]["worker"] and "ms" in detailed["checks"]["database"]
    employee = UserFactory(username="sam", roles=[RoleFactory(name="Sales")])
    assert set(as_user(employee).get("/healthz").json()["checks"]["worker"]) == {"ok"}
