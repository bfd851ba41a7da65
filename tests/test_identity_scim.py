"""Directory groups → roles, and the SCIM 2.0 endpoint, driven as Entra ID and Okta drive it
(their request shapes: Microsoft's "Develop a SCIM endpoint" and Okta's SCIM 2.0 guide)."""

from __future__ import annotations

import json
from urllib.parse import quote

import pytest
from django.contrib.auth.models import Group
from django.test import Client

from accounts.capabilities import ADMINISTRATOR, COMPLIANCE_OFFICER
from accounts.identity import mapping
from accounts.identity.tokens import scim_token_create, scim_token_revoke
from accounts.models import (
    AuditEvent,
    DirectoryGrant,
    DirectoryGroupMapping,
    ExternalIdentity,
    ScimToken,
    User,
)
from accounts.selectors import user_readable_collection_ids
from tests.factories import CollectionFactory, RoleFactory, UserFactory

pytestmark = pytest.mark.django_db

SCIM = "application/scim+json"
USER_SCHEMA = "urn:ietf:params:scim:schemas:core:2.0:User"
PATCH = "urn:ietf:params:scim:api:messages:2.0:PatchOp"


@pytest.fixture
def admin():
    return UserFactory(username="ada", roles=[Group.objects.get(name=ADMINISTRATOR)])


@pytest.fixture
def world(admin):
    sales_docs = CollectionFactory(name="Sales", slug="sales")
    hr_docs = CollectionFactory(name="HR", slug="hr")
    sales = RoleFactory(name="Sales", reads=[sales_docs])
    hr = RoleFactory(name="HR", reads=[hr_docs])
    mapping.mapping_add(actor=admin, directory_group="sales-team", role=sales)
    mapping.mapping_add(actor=admin, directory_group="8f1c-hr-object-id", role=hr)
    return {"sales": sales, "hr": hr, "sales_docs": sales_docs, "hr_docs": hr_docs}


class Scim:
    """A SCIM client: bearer token, application/scim+json, JSON answers."""

    def __init__(self, raw: str) -> None:
        self.client = Client(HTTP_AUTHORIZATION=f"Bearer {raw}")

    def call(self, method: str, path: str, body: dict | None = None, status: int = 200):
        response = getattr(self.client, method)(
            "/scim/v2" + path, data=json.dumps(body) if body is not None else None,
            content_type=SCIM,
        )  # fmt: skip
        assert response.status_code == status, response.content
        return response.json() if response.content else None


@pytest.fixture
def scim(admin):
    _token, raw = scim_token_create(actor=admin, name="Entra ID")
    return Scim(raw)


def entra_user(name: str, object_id: str) -> dict:
    return {
        "schemas": [USER_SCHEMA, "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User"],
        "externalId": object_id,
        "userName": f"{name}@lumen.example",
        "active": True,
        "displayName": name.title(),
        "emails": [{"primary": True, "type": "work", "value": f"{name}@lumen.example"}],
        "name": {"formatted": name.title(), "familyName": "Lumen", "givenName": name.title()},
        "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User": {"department": "Sales"},
    }


def roles(user: User) -> set[str]:
    return set(User.objects.get(pk=user.pk).groups.values_list("name", flat=True))


# --- the mapping -------------------------------------------------------------------------------


def test_unknown_groups_give_nothing_and_roles_granted_by_hand_stay(world, admin):
    pat = UserFactory(username="pat", roles=[])
    manual = RoleFactory(name="Projects")
    pat.groups.add(manual)
    mapping.directory_roles_apply(user=pat, group_keys=["nobody-maps-this"], source="oidc")
    assert roles(pat) == {"Projects"}
    assert not Group.objects.filter(name="nobody-maps-this").exists()  # never invented
    mapping.directory_roles_apply(user=pat, group_keys=["sales-team"], source="oidc")
    assert roles(pat) == {"Projects", "Sales"}
    assert set(DirectoryGrant.objects.filter(user=pat).values_list("role__name", flat=True)) == {
        "Sales"
    }
    assert user_readable_collection_ids(user=pat) == {world["sales_docs"].pk}
    mapping.directory_roles_apply(user=pat, group_keys=[], source="oidc")
    assert roles(pat) == {"Projects"}  # the directory takes away only what it gave
    event = AuditEvent.objects.filter(action="user.directory_roles").first()
    assert event.details["before"] == ["Projects", "Sales"] and event.details["after"] == [
        "Projects"
    ]
    assert AuditEvent.objects.filter(action="directory.map").count() == 2


def test_the_directory_never_makes_anyone_administrator_and_compliance_officer(world, admin):
    mapping.mapping_add(
        actor=admin, directory_group="it-admins", role=Group.objects.get(name=ADMINISTRATOR)
    )
    mapping.mapping_add(
        actor=admin, directory_group="audit", role=Group.objects.get(name=COMPLIANCE_OFFICER)
    )
    pat = UserFactory(username="pat")
    mapping.directory_roles_apply(user=pat, group_keys=["it-admins", "audit"], source="scim")
    held = roles(pat)
    assert not {ADMINISTRATOR, COMPLIANCE_OFFICER} <= held
    event = AuditEvent.objects.filter(action="user.directory_roles").first()
    assert any("separation of duties" in c for c in event.details["conflicts"])
    # An officer granted by hand is not made administrator by the directory either.
    olga = UserFactory(username="olga", roles=[Group.objects.get(name=COMPLIANCE_OFFICER)])
    mapping.directory_roles_apply(user=olga, group_keys=["it-admins"], source="ldap")
    assert roles(olga) == {COMPLIANCE_OFFICER}


def test_the_directory_cannot_remove_the_last_administrator(world, admin):
    it = Group.objects.get(name=ADMINISTRATOR)
    mapping.mapping_add(actor=admin, directory_group="it-admins", role=it)
    admin.groups.clear()
    mapping.directory_roles_apply(user=admin, group_keys=["it-admins"], source="oidc")
    assert roles(admin) == {ADMINISTRATOR}
    mapping.directory_roles_apply(user=admin, group_keys=[], source="oidc")
    assert roles(admin) == {ADMINISTRATOR}
    assert "last active administrator" in str(
        AuditEvent.objects.filter(action="user.directory_roles").first().details["conflicts"]
    )


# --- SCIM ---------------------------------------------------------------------------------------


def test_scim_answers_only_to_a_live_token(world, admin):
    token, raw = scim_token_create(actor=admin, name="Okta")
    for header in ({}, {"HTTP_AUTHORIZATION": "Bearer scim_wrong"}, {"HTTP_AUTHORIZATION": raw}):
        response = Client(**header).get("/scim/v2/Users")
        assert response.status_code == 401
        assert response.json()["schemas"] == ["urn:ietf:params:scim:api:messages:2.0:Error"]
    Scim(raw).call("get", "/Users")
    scim_token_revoke(actor=admin, token=token)
    response = Client(HTTP_AUTHORIZATION=f"Bearer {raw}").get("/scim/v2/Users")
    assert response.status_code == 401
    actions = set(AuditEvent.objects.values_list("action", flat=True))
    assert {"scim_token.create", "scim_token.revoke"} <= actions


def test_an_entra_user_is_provisioned_found_updated_and_deactivated(world, scim):
    created = scim.call("post", "/Users", entra_user("pat", "aad-1"), status=201)
    pat = User.objects.get(pk=int(created["id"]))
    assert (pat.username, pat.email, pat.first_name) == ("pat@lumen.example",) * 2 + ("Pat",)
    assert not pat.has_usable_password()
    # Entra looks a user up by userName, then by externalId, before creating.
    found = scim.call("get", '/Users?filter=userName eq "pat@lumen.example"')
    assert found["totalResults"] == 1 and found["Resources"][0]["externalId"] == "aad-1"
    assert scim.call("get", '/Users?filter=externalId eq "aad-2"')["totalResults"] == 0
    scim.call("post", "/Users", entra_user("pat", "aad-1"), status=409)
    # Entra's PATCH: capitalised ops, "False" as a string.
    scim.call("patch", f"/Users/{pat.pk}", {"schemas": [PATCH], "Operations": [
        {"op": "Replace", "path": "name.familyName", "value": "Moreau"},
        {"op": "Replace", "path": "active", "value": "False"},
    ]})  # fmt: skip
    pat.refresh_from_db()
    assert pat.last_name == "Moreau" and not pat.is_active
    assert AuditEvent.objects.filter(action="user.deactivate", target_id=str(pat.pk)).get()
    assert AuditEvent.objects.get(action="user.create").actor_username == "scim:Entra ID"
    # DELETE: gone for SCIM, the person's records stay.
    scim.call("delete", f"/Users/{pat.pk}", status=204)
    scim.call("get", f"/Users/{pat.pk}", status=404)
    assert User.objects.filter(pk=pat.pk, is_active=False).exists()


def test_scim_cannot_claim_a_local_account(world, scim):
    scim.call("post", "/Users", {"schemas": [USER_SCHEMA], "userName": "ada"}, status=409)
    assert not ExternalIdentity.objects.exists()


def test_okta_group_push_sets_roles_and_a_removal_takes_them_away(world, scim):
    pat = scim.call("post", "/Users", entra_user("pat", "okta-1"), status=201)["id"]
    max_ = scim.call("post", "/Users", entra_user("max", "okta-2"), status=201)["id"]
    group = scim.call("post", "/Groups", {
        "schemas": ["urn:ietf:params:scim:schemas:core:2.0:Group"],
        "displayName": "sales-team", "members": [{"value": pat, "display": "pat"}],
    }, status=201)  # fmt: skip
    pat_user, max_user = User.objects.get(pk=pat), User.objects.get(pk=max_)
    assert roles(pat_user) == {"Sales"} and roles(max_user) == set()
    # Okta adds with a list, removes with a filter in the path.
    scim.call("patch", f"/Groups/{group['id']}", {"schemas": [PATCH], "Operations": [
        {"op": "add", "path": "members", "value": [{"value": max_}]}]}, status=204)  # fmt: skip
    assert roles(max_user) == {"Sales"}
    scim.call("patch", f"/Groups/{group['id']}", {"schemas": [PATCH], "Operations": [
        {"op": "remove", "path": f'members[value eq "{pat}"]'}]}, status=204)  # fmt: skip
    assert roles(pat_user) == set() and user_readable_collection_ids(user=pat_user) == set()
    assert roles(max_user) == {"Sales"}
    listed = scim.call("get", f"/Groups/{group['id']}")
    assert [m["value"] for m in listed["members"]] == [max_]
    # An unknown group: a group nobody mapped gives nothing.
    other = scim.call("post", "/Groups", {"displayName": "Chess club",
                                          "members": [{"value": pat}]}, status=201)  # fmt: skip
    assert roles(pat_user) == set()
    # Deleting the group takes its role away from its members.
    scim.call("delete", f"/Groups/{group['id']}", status=204)
    assert roles(max_user) == set()
    assert other["displayName"] == "Chess club"
    actions = list(AuditEvent.objects.values_list("action", flat=True))
    assert "directory_group.members" in actions and "directory_group.delete" in actions


def test_a_group_is_mapped_by_its_external_id_as_entra_sends_it(world, scim):
    pat = scim.call("post", "/Users", entra_user("pat", "aad-1"), status=201)["id"]
    group = {"displayName": "Human Resources", "externalId": "8f1c-hr-object-id"}
    scim.call("post", "/Groups", group | {"members": [{"value": pat}]}, status=201)
    assert roles(User.objects.get(pk=pat)) == {"HR"}


def test_lists_are_filtered_and_paged(world, scim):
    for i in range(5):
        scim.call("post", "/Users", entra_user(f"user{i}", f"id-{i}"), status=201)
    first = scim.call("get", "/Users?startIndex=1&count=2")
    assert first["totalResults"] == 5 and first["itemsPerPage"] == 2
    last = scim.call("get", "/Users?startIndex=5&count=2")
    assert [r["userName"] for r in last["Resources"]] == ["user4@lumen.example"]
    scim.call("get", '/Users?filter=title co "x"', status=400)
    assert scim.call("get", "/Groups?excludedAttributes=members")["totalResults"] == 0
    assert scim.call("get", '/Users?filter=id eq "not-a-number"')["totalResults"] == 0


# --- the administrators' page -------------------------------------------------------------------


def test_administrators_map_groups_and_make_and_revoke_scim_tokens_on_a_page(world, admin):
    client = Client()
    client.force_login(admin)
    page = client.get("/manage/directory/")
    assert page.status_code == 200 and "sales-team" in page.content.decode()
    client.post("/manage/directory/", {"directory_group": "finance", "role": world["hr"].pk})
    made = DirectoryGroupMapping.objects.get(directory_group="finance")
    client.post(f"/manage/directory/mappings/{made.pk}/remove/")
    assert not DirectoryGroupMapping.objects.filter(directory_group="finance").exists()
    client.post("/manage/directory/tokens/new/", {"name": "Okta"})
    shown = client.get("/manage/directory/").content.decode()
    raw = shown.split("shown once: <code>")[1].split("</code>")[0]
    Scim(raw).call("get", "/Users")
    token = ScimToken.objects.get(name="Okta")
    client.post(f"/manage/directory/tokens/{token.pk}/revoke/")
    assert Client(HTTP_AUTHORIZATION=f"Bearer {raw}").get("/scim/v2/Users").status_code == 401
    actions = set(AuditEvent.objects.values_list("action", flat=True))
    assert {"directory.map", "directory.unmap", "scim_token.create", "scim_token.revoke"} <= actions
    # Nobody else may.
    pat = UserFactory(username="pat", roles=[world["sales"]])
    client.force_login(pat)
    assert client.get("/manage/directory/").status_code == 403


def test_the_user_page_tells_directory_roles_from_roles_granted_by_hand(world, admin, scim):
    pat = User.objects.get(
        pk=scim.call("post", "/Users", entra_user("pat", "a1"), status=201)["id"]
    )
    pat.groups.add(RoleFactory(name="Projects"))
    scim.call("post", "/Groups", {"displayName": "sales-team", "members": [{"value": str(pat.pk)}]},
              status=201)  # fmt: skip
    client = Client()
    client.force_login(admin)
    page = client.get(f"/manage/users/{pat.pk}/").content.decode()
    directory = page.split("Roles from the company directory")[1].split("</section>")[0]
    assert "Sales" in directory and "Projects" not in directory


HOSTILE = ["\x00", "a\x00b", "\ud800", "²", "١٢", "9" * 40, "-1", "1e309", "A" * 70_000,
           "' OR 1=1 --", '" or "', "\u202e", None, 12, True, [], {}]  # fmt: skip


def test_hostile_scim_requests_get_a_scim_error_never_a_server_error(world, scim):
    pat = scim.call("post", "/Users", entra_user("pat", "a1"), status=201)["id"]
    group = scim.call("post", "/Groups", {"displayName": "g"}, status=201)["id"]
    client = Client(raise_request_exception=False, HTTP_AUTHORIZATION=scim.client.defaults[
        "HTTP_AUTHORIZATION"])  # fmt: skip
    errors = []

    def send(method: str, path: str, body=None) -> None:
        data = json.dumps(body).encode("utf-8", "surrogatepass") if body is not None else None
        response = getattr(client, method)("/scim/v2" + path, data=data, content_type=SCIM)
        if response.status_code >= 500:
            errors.append((method, path[:60], repr(body)[:60], response.status_code))

    for value in HOSTILE:
        text = value if isinstance(value, str) else json.dumps(value)
        quoted = quote(text.encode("utf-8", "surrogatepass"), safe='= "')[:2000]
        send("get", f'/Users?filter=userName eq "{quoted}"')
        send("get", f"/Users?startIndex={quoted}&count={quoted}")
        send("get", f"/Users/{quoted[:100]}")
        send("get", f"/Groups/{quoted[:100]}")
        send("post", "/Users", {"userName": value, "externalId": value, "emails": value,
                                "name": {"givenName": value}, "active": value})  # fmt: skip
        send("post", "/Groups", {"displayName": value, "members": value})
        send("put", f"/Users/{pat}", {"userName": value, "active": value})
        send("patch", f"/Users/{pat}", {"Operations": [{"op": value, "path": value,
                                                       "value": value}]})  # fmt: skip
        send("patch", f"/Users/{pat}", {"Operations": value})
        send("patch", f"/Groups/{group}", {"Operations": [{"op": "add", "path": "members",
                                                          "value": value}]})  # fmt: skip
        send("patch", f"/Groups/{group}", {"Operations": [{"op": "replace", "value": value}]})
        send("put", f"/Groups/{group}", {"displayName": value, "members": [{"value": value}]})
    assert not errors, errors


def test_a_directory_role_taken_away_by_hand_and_granted_again_is_the_administrators(world, admin):
    from accounts import services

    pat = UserFactory(username="pat")
    mapping.directory_roles_apply(user=pat, group_keys=["sales-team"], source="oidc")
    services.user_set_roles(actor=admin, user=pat, roles=[])
    services.user_set_roles(actor=admin, user=pat, roles=[world["sales"]])
    mapping.directory_roles_apply(user=pat, group_keys=[], source="oidc")
    assert roles(pat) == {"Sales"}  # granted by hand now: the directory leaves it alone
