"""API tokens: listed, created and revoked in the UI, and they expire (issue 15, item 9).

Before: tokens were made by `manage.py create_api_token` only, could not be listed or revoked in
the UI, and never expired. Real views, real database; the token is used on `/api/search/`.
"""

from __future__ import annotations

import re
from datetime import timedelta

import pytest
from django.contrib.auth.models import Group
from django.core.management import call_command
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from accounts.capabilities import ADMINISTRATOR
from accounts.models import ApiToken, AuditEvent
from tests.factories import RoleFactory, UserFactory

pytestmark = pytest.mark.django_db

TOKEN = re.compile(r"cns_[A-Za-z0-9_-]{20,}")


def signed_in(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


def search_with(token: str) -> int:
    return (
        Client()
        .get("/api/search/", {"q": "anything"}, HTTP_AUTHORIZATION=f"Bearer {token}")
        .status_code
    )


@pytest.fixture
def sam():
    return UserFactory(username="sam", roles=[RoleFactory(name="Sales")])


def test_a_user_creates_sees_once_lists_and_revokes_their_own_token(sam):
    client = signed_in(sam)
    assert client.get(reverse("accounts:token_list")).status_code == 200
    created = client.post(reverse("accounts:token_list"), {"name": "Import script", "days": "30"})
    assert created.status_code == 200
    raw = TOKEN.search(created.content.decode()).group(0)
    assert search_with(raw) == 200
    token = ApiToken.objects.get(user=sam)
    assert token.name == "Import script"
    assert timedelta(days=29) < token.expires_at - timezone.now() <= timedelta(days=30)
    listing = client.get(reverse("accounts:token_list")).content.decode()
    assert "Import script" in listing and token.prefix in listing
    assert raw not in listing  # shown once, at creation; only a digest is stored
    assert AuditEvent.objects.filter(action="token.create", actor=sam).exists()

    client.post(reverse("accounts:token_revoke", args=[token.pk]))
    assert search_with(raw) == 401
    assert "revoked" in client.get(reverse("accounts:token_list")).content.decode().lower()


def test_tokens_expire(sam):
    client = signed_in(sam)
    page = client.post(reverse("accounts:token_list"), {"name": "Short", "days": "7"})
    raw = TOKEN.search(page.content.decode()).group(0)
    assert search_with(raw) == 200
    ApiToken.objects.filter(user=sam).update(expires_at=timezone.now() - timedelta(seconds=1))
    response = Client().get("/api/search/", {"q": "anything"}, HTTP_AUTHORIZATION=f"Bearer {raw}")
    assert response.status_code == 401
    assert "expired" in response.json()["error"]


@pytest.mark.parametrize("days", ["0", "-1", "366", "100000", "²", "\x00", "", "7.5"])
def test_a_token_lifetime_out_of_bounds_is_a_form_error(sam, days):
    response = signed_in(sam).post(reverse("accounts:token_list"), {"name": "x", "days": days})
    assert response.status_code == 200
    assert not TOKEN.search(response.content.decode())
    assert not ApiToken.objects.exists()


def test_nobody_revokes_someone_elses_token_except_an_administrator(sam):
    signed_in(sam).post(reverse("accounts:token_list"), {"name": "Mine", "days": "30"})
    token = ApiToken.objects.get(user=sam)
    hana = UserFactory(username="hana", roles=[RoleFactory(name="HR")])
    assert (
        signed_in(hana).post(reverse("accounts:token_revoke", args=[token.pk])).status_code == 404
    )
    token.refresh_from_db()
    assert token.revoked_at is None
    admin = UserFactory(username="ada", roles=[Group.objects.get(name=ADMINISTRATOR)])
    detail = signed_in(admin).get(reverse("accounts:user_detail", args=[sam.pk])).content.decode()
    assert "Mine" in detail and token.prefix in detail
    signed_in(admin).post(reverse("accounts:user_token_revoke", args=[sam.pk, token.pk]))
    token.refresh_from_db()
    assert token.revoked_at is not None
    assert AuditEvent.objects.filter(action="token.revoke", actor=admin).exists()


def test_the_command_makes_tokens_that_expire(sam, capsys):
    call_command("create_api_token", "sam", "--name", "cron", "--days", "14")
    raw = capsys.readouterr().out.strip()
    assert search_with(raw) == 200
    token = ApiToken.objects.get(user=sam)
    assert timedelta(days=13) < token.expires_at - timezone.now() <= timedelta(days=14)
