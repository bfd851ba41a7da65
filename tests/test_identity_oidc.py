"""Signing in through a real OpenID Connect provider (oidc-provider, started here) with the
authorization code flow, PKCE, state and nonce; and what an ID token must be to be accepted."""

from __future__ import annotations

import time
from io import StringIO
from urllib.parse import parse_qs, urlsplit

import pytest
from django.contrib.auth.models import Group
from django.core.exceptions import SuspiciousOperation
from django.core.management import CommandError, call_command
from django.test import Client
from mozilla_django_oidc.auth import OIDCAuthenticationBackend

from accounts.capabilities import ADMINISTRATOR
from accounts.identity import mapping
from accounts.identity.oidc import CompanyOIDCBackend
from accounts.models import AuditEvent, DirectoryGrant, ExternalIdentity, User
from accounts.selectors import user_readable_collection_ids
from tests.factories import PASSWORD, CollectionFactory, RoleFactory, UserFactory
from tests.identity_support import OidcProvider, path_of, rsa_jwk, through_provider

pytestmark = [pytest.mark.slow, pytest.mark.django_db]


@pytest.fixture(scope="module")
def provider(tmp_path_factory):
    running = OidcProvider(tmp_path_factory.mktemp("oidc")).start()
    yield running
    running.stop()


@pytest.fixture
def company(settings, provider):
    for name, value in provider.settings().items():
        setattr(settings, name, value)
    settings.AUTHENTICATION_BACKENDS = [
        "axes.backends.AxesStandaloneBackend",
        "accounts.identity.local.LocalPasswordBackend",
        "accounts.identity.oidc.CompanyOIDCBackend",
    ]
    admin = UserFactory(username="ada", roles=[Group.objects.get(name=ADMINISTRATOR)])
    sales_docs = CollectionFactory(name="Sales", slug="sales")
    hr_docs = CollectionFactory(name="HR", slug="hr")
    sales = RoleFactory(name="Sales", reads=[sales_docs])
    hr = RoleFactory(name="HR", reads=[hr_docs])
    mapping.mapping_add(actor=admin, directory_group="sales-team", role=sales)
    mapping.mapping_add(actor=admin, directory_group="hr-team", role=hr)
    provider.accounts({
        "pat-sub": {"preferred_username": "pat", "email": "pat@lumen.example",
                    "given_name": "Pat", "family_name": "Lumen", "groups": ["sales-team"]},
    })  # fmt: skip
    return {"admin": admin, "sales_docs": sales_docs, "hr_docs": hr_docs}


def sign_in(provider: OidcProvider, login: str, client: Client | None = None):
    client = client or Client()
    start = client.get("/accounts/oidc/login/")
    assert start.status_code == 302
    authorize = start["Location"]
    assert "code_challenge=" in authorize and "code_challenge_method=S256" in authorize
    assert "nonce=" in authorize and "state=" in authorize
    callback = through_provider(authorize, login)
    return client, client.get(path_of(callback)), callback


def signed_in_as(client: Client) -> str | None:
    response = client.get("/accounts/tokens/")
    return response.context["user"].username if response.status_code == 200 else None


def test_a_person_signs_in_through_the_provider_with_the_roles_their_groups_map_to(
    company, provider
):
    client, response, _ = sign_in(provider, "pat-sub")
    assert response.status_code == 302 and response["Location"] == "/"
    pat = User.objects.get(username="pat")
    assert signed_in_as(client) == "pat"
    assert set(pat.groups.values_list("name", flat=True)) == {"Sales"}
    assert DirectoryGrant.objects.filter(user=pat).count() == 1
    assert user_readable_collection_ids(user=pat) == {company["sales_docs"].pk}
    assert not pat.has_usable_password()
    identity = ExternalIdentity.objects.get(user=pat)
    assert identity.subject == f"{provider.issuer}|pat-sub"
    created = AuditEvent.objects.get(action="user.create", target_id=str(pat.pk))
    assert created.details["just_in_time"] is True
    assert client.get("/chat/").status_code == 200  # lands in the chat


def test_a_groups_claim_that_changes_between_sign_ins_changes_the_roles(company, provider):
    sign_in(provider, "pat-sub")
    provider.accounts({"pat-sub": {"preferred_username": "pat", "groups": ["hr-team", "chess"]}})
    _client, _response, _ = sign_in(provider, "pat-sub")
    pat = User.objects.get(username="pat")
    assert set(pat.groups.values_list("name", flat=True)) == {"HR"}  # "chess" maps to nothing
    assert user_readable_collection_ids(user=pat) == {company["hr_docs"].pk}
    provider.accounts({"pat-sub": {"preferred_username": "pat", "groups": ["chess"]}})
    sign_in(provider, "pat-sub")
    assert user_readable_collection_ids(user=pat) == set()
    assert not Group.objects.filter(name="chess").exists()


def test_a_replayed_state_is_refused(company, provider):
    client, _response, callback = sign_in(provider, "pat-sub")
    assert signed_in_as(client) == "pat"
    client.post("/accounts/logout/")
    replay = client.get(path_of(callback))  # the same code and state again
    assert replay.status_code in (302, 400) and signed_in_as(client) is None
    # Another browser cannot use them either.
    stranger = Client()
    stranger.get(path_of(callback))
    assert signed_in_as(stranger) is None


def test_a_directory_person_never_takes_over_a_local_account(company, provider):
    provider.accounts({"evil": {"preferred_username": "ada", "groups": ["sales-team"]}})
    client, response, _ = sign_in(provider, "evil")
    assert response["Location"].startswith("/accounts/login/?sso=failed")
    assert signed_in_as(client) is None
    assert not ExternalIdentity.objects.exists()


def test_a_deactivated_persons_session_signs_nobody_in(company, provider):
    client, _, _ = sign_in(provider, "pat-sub")
    User.objects.filter(username="pat").update(is_active=False)
    assert signed_in_as(client) is None
    client, _response, _ = sign_in(provider, "pat-sub")
    assert signed_in_as(client) is None


def password_sign_in(username: str) -> bool:
    client = Client()
    client.post("/accounts/login/", {"username": username, "password": PASSWORD})
    return signed_in_as(client) == username


def _claims(provider: OidcProvider, **changes) -> dict:
    now = int(time.time())
    claims = {"iss": provider.issuer, "aud": provider.client_id, "sub": "pat-sub",
              "iat": now, "exp": now + 300, "nonce": "n-1"}  # fmt: skip
    claims.update(changes)
    return {k: v for k, v in claims.items() if v is not None}


def test_id_tokens_forged_expired_or_for_someone_else_are_refused(company, provider):
    backend = CompanyOIDCBackend()
    good = provider.sign(_claims(provider))
    assert backend.verify_token(good, nonce="n-1")["sub"] == "pat-sub"
    other_key, _ = rsa_jwk("test-key-1")
    refused = {
        "forged": provider.sign(_claims(provider), key=other_key),
        "expired": provider.sign(
            _claims(provider, iat=int(time.time()) - 900, exp=int(time.time()) - 600)
        ),
        "wrong audience": provider.sign(_claims(provider, aud="another-app")),
        "wrong issuer": provider.sign(_claims(provider, iss="https://evil.example")),
        "no expiry": provider.sign(_claims(provider, exp=None)),
        "wrong nonce": provider.sign(_claims(provider, nonce="n-2")),
    }
    for why, token in refused.items():
        with pytest.raises(SuspiciousOperation):
            backend.verify_token(token, nonce="n-1")
            pytest.fail(f"accepted a token: {why}")
    # The library alone checks neither audience nor issuer: that is why Counsel does.
    library = OIDCAuthenticationBackend()
    assert library.verify_token(refused["wrong audience"], nonce="n-1")["aud"] == "another-app"


def test_the_button_shows_only_when_configured_and_passwords_can_be_limited(
    settings, company, provider
):
    page = Client().get("/accounts/login/").content.decode()
    assert "Sign in with your company account" in page
    UserFactory(username="sam")
    assert password_sign_in("sam")
    settings.LOCAL_SIGN_IN_USERS = ["ada"]
    assert not password_sign_in("sam")
    assert password_sign_in("ada")
    settings.OIDC_ENABLED = False
    assert "company account" not in Client().get("/accounts/login/").content.decode()
    assert Client().get("/accounts/oidc/login/").status_code == 404


def test_claims_counsel_cannot_store_are_refused_not_a_server_error(company, provider):
    provider.accounts({"odd": {"preferred_username": "o\u0000dd", "groups": ["sales-team"]}})
    client, response, _ = sign_in(provider, "odd")
    assert response["Location"].startswith("/accounts/login/?sso=failed")
    groups = ["sales-\u0000team", "sales-team", 7, None]
    provider.accounts({"pat-sub": {"preferred_username": "pat", "groups": groups}})
    client, response, _ = sign_in(provider, "pat-sub")
    assert signed_in_as(client) == "pat"
    assert set(User.objects.get(username="pat").groups.values_list("name", flat=True)) == {"Sales"}


def test_a_forged_code_or_an_unreachable_provider_is_a_failed_sign_in_not_an_error(
    settings, company, provider
):
    client = Client(raise_request_exception=False)
    start = client.get("/accounts/oidc/login/")
    state = parse_qs(urlsplit(start["Location"]).query)["state"][0]
    forged = client.get(f"/accounts/oidc/callback/?code=forged&state={state}")
    assert forged.status_code == 302 and forged["Location"].startswith("/accounts/login/?sso=")
    settings.OIDC_OP_TOKEN_ENDPOINT = "http://127.0.0.1:9/token"  # nothing listens there
    start = client.get("/accounts/oidc/login/")
    state = parse_qs(urlsplit(start["Location"]).query)["state"][0]
    away = client.get(f"/accounts/oidc/callback/?code=any&state={state}")
    assert away.status_code == 302 and signed_in_as(client) is None


def test_oidc_discover_prints_the_settings_of_a_real_issuer(provider):
    out = StringIO()
    call_command("oidc_discover", provider.issuer, stdout=out)
    lines = dict(line.split("=", 1) for line in out.getvalue().splitlines())
    expected = provider.settings()
    assert lines["OIDC_ISSUER"] == provider.issuer
    assert lines["OIDC_TOKEN_ENDPOINT"] == expected["OIDC_OP_TOKEN_ENDPOINT"]
    assert lines["OIDC_JWKS_URI"] == expected["OIDC_OP_JWKS_ENDPOINT"]
    with pytest.raises(CommandError, match="calls itself"):
        call_command("oidc_discover", provider.issuer + "/", stdout=StringIO())
    with pytest.raises(CommandError, match="could not read"):
        call_command("oidc_discover", "http://127.0.0.1:9", stdout=StringIO())
