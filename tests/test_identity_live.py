"""A directory change reaches a person already at work: their open socket closes, and the next
question (adapter eligibility included) sees the new roles."""

from __future__ import annotations

import json

import pytest
from asgiref.sync import sync_to_async
from django.contrib.auth.models import Group

from accounts.capabilities import ADMINISTRATOR
from accounts.identity import mapping
from accounts.identity.tokens import scim_token_create
from tests.factories import RoleFactory, UserFactory
from tests.test_identity_scim import PATCH, Scim, entra_user
from tests.test_socket_access import SESSION_ENDED, chat, closed_with, visitor

pytestmark = [pytest.mark.slow]


def _directory():
    admin = UserFactory(username="ada", roles=[Group.objects.get(name=ADMINISTRATOR)])
    readers = RoleFactory(name="Readers")
    mapping.mapping_add(actor=admin, directory_group="readers", role=readers)
    _token, raw = scim_token_create(actor=admin, name="Entra ID")
    scim = Scim(raw)
    pat = scim.call("post", "/Users", entra_user("pat", "a1"), status=201)["id"]
    group = scim.call("post", "/Groups", {"displayName": "readers",
                                          "members": [{"value": pat}]}, status=201)  # fmt: skip
    from accounts.models import User

    return scim, User.objects.get(pk=pat), group["id"]


@pytest.mark.django_db(transaction=True)
@pytest.mark.asyncio
@pytest.mark.parametrize("change", ["deactivate", "remove from group"])
async def test_a_scim_change_closes_the_open_socket_of_that_user(live_asgi, change):
    scim, pat, group = await sync_to_async(_directory)()
    guest = await visitor(pat)
    ws = await chat(live_asgi, guest)
    if change == "deactivate":
        body = {"schemas": [PATCH], "Operations": [{"op": "replace", "value": {"active": False}}]}
        await sync_to_async(scim.call)("patch", f"/Users/{pat.pk}", body)
    else:
        body = {"schemas": [PATCH], "Operations": [
            {"op": "Remove", "path": "members", "value": [{"value": str(pat.pk)}]}]}  # fmt: skip
        await sync_to_async(scim.call)("patch", f"/Groups/{group}", body, status=204)
    code, frames = await closed_with(ws)
    assert code == SESSION_ENDED and frames[-1]["fatal"]
    assert json.dumps(frames)  # the page reads why


@pytest.mark.django_db(transaction=True)
def test_a_group_removed_while_its_profiles_adapter_is_active_makes_it_ineligible():
    from tests.tuning_support import load_demo, registered_adapter
    from tuning.selectors import adapter_for_user

    load_demo("sales")
    admin = Group.objects.get(name=ADMINISTRATOR).user_set.first()
    mapping.mapping_add(
        actor=admin, directory_group="sales-team", role=Group.objects.get(name="Sales")
    )
    adapter = registered_adapter()
    _token, raw = scim_token_create(actor=admin, name="Okta")
    scim = Scim(raw)
    pat = scim.call("post", "/Users", entra_user("pat", "o1"), status=201)["id"]
    group = scim.call("post", "/Groups", {"displayName": "sales-team",
                                          "members": [{"value": pat}]}, status=201)  # fmt: skip
    from accounts.models import User

    person = User.objects.get(pk=pat)
    assert adapter_for_user(user=person).adapter == adapter
    scim.call("patch", f"/Groups/{group['id']}", {"schemas": [PATCH], "Operations": [
        {"op": "remove", "path": f'members[value eq "{pat}"]'}]}, status=204)  # fmt: skip
    assert adapter_for_user(user=person).adapter is None
