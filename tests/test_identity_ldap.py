"""Signing in with an LDAP directory (Debian's slapd, started here with a test tree), through
the same group mapping as OpenID Connect and SCIM."""

from __future__ import annotations

import pytest
from django.contrib.auth.models import Group
from django.test import Client

from accounts.capabilities import ADMINISTRATOR
from accounts.identity import mapping
from accounts.models import AuditEvent, ExternalIdentity, User
from accounts.selectors import user_readable_collection_ids
from tests.factories import PASSWORD, CollectionFactory, RoleFactory, UserFactory
from tests.identity_support import LDAP_SUFFIX, Slapd

pytestmark = [pytest.mark.slow, pytest.mark.django_db]

PEOPLE, GROUPS = f"ou=people,{LDAP_SUFFIX}", f"ou=groups,{LDAP_SUFFIX}"


def _person(uid: str, password: str, given: str, surname: str) -> str:
    return f"""dn: uid={uid},{PEOPLE}
objectClass: inetOrgPerson
uid: {uid}
cn: {given} {surname}
givenName: {given}
sn: {surname}
mail: {uid}@lumen.example
userPassword: {password}
"""


def _group(cn: str, *members: str) -> str:
    lines = [f"dn: cn={cn},{GROUPS}", "objectClass: groupOfNames", f"cn: {cn}"]
    lines += [f"member: uid={m},{PEOPLE}" for m in members]
    return "\n".join(lines) + "\n"


TREE = "\n".join([
    f"dn: {LDAP_SUFFIX}\nobjectClass: dcObject\nobjectClass: organization\ndc: lumen\no: Lumen\n",
    f"dn: {PEOPLE}\nobjectClass: organizationalUnit\nou: people\n",
    f"dn: {GROUPS}\nobjectClass: organizationalUnit\nou: groups\n",
    _person("lena", "lena-secret", "Lena", "Berg"),
    _person("ada", "not-the-local-password", "Ada", "Impostor"),
    _person("max", "max-secret", "Max", "Holm"),
    _group("sales-team", "lena", "max"),  # groupOfNames needs a member left after a removal
    _group("chess", "lena"),
])  # fmt: skip


@pytest.fixture(scope="module")
def slapd(tmp_path_factory):
    server = Slapd(tmp_path_factory.mktemp("slapd")).start(TREE)
    yield server
    server.stop()


@pytest.fixture
def company(settings, slapd):
    for name, value in slapd.settings().items():
        setattr(settings, name, value)
    settings.AUTHENTICATION_BACKENDS = [
        "axes.backends.AxesStandaloneBackend",
        "accounts.identity.local.LocalPasswordBackend",
        "accounts.identity.ldap.CompanyLDAPBackend",
    ]
    admin = UserFactory(username="ada", roles=[Group.objects.get(name=ADMINISTRATOR)])
    sales_docs = CollectionFactory(name="Sales", slug="sales")
    sales = RoleFactory(name="Sales", reads=[sales_docs])
    mapping.mapping_add(actor=admin, directory_group="sales-team", role=sales)
    return {"admin": admin, "sales_docs": sales_docs}


def sign_in(username: str, password: str) -> Client:
    client = Client()
    client.post("/accounts/login/", {"username": username, "password": password})
    return client


def signed_in_as(client: Client) -> str | None:
    response = client.get("/accounts/tokens/")
    return response.context["user"].username if response.status_code == 200 else None


def test_a_first_ldap_sign_in_creates_the_user_with_the_mapped_roles(company, slapd):
    assert signed_in_as(sign_in("lena", "wrong")) is None
    client = sign_in("lena", "lena-secret")
    assert signed_in_as(client) == "lena"
    lena = User.objects.get(username="lena")
    assert (lena.first_name, lena.last_name, lena.email) == ("Lena", "Berg", "lena@lumen.example")
    assert set(lena.groups.values_list("name", flat=True)) == {"Sales"}  # "chess" gives nothing
    assert not Group.objects.filter(name__in=["chess", "sales-team"]).exists()
    assert user_readable_collection_ids(user=lena) == {company["sales_docs"].pk}
    assert ExternalIdentity.objects.get(user=lena).subject == f"uid=lena,{PEOPLE}".lower()
    assert AuditEvent.objects.filter(action="user.directory_roles", target_id=str(lena.pk))


def test_a_group_removed_in_ldap_is_gone_at_the_next_sign_in(company, slapd):
    sign_in("lena", "lena-secret")
    lena = User.objects.get(username="lena")
    removal = f"dn: cn=sales-team,{GROUPS}\nchangetype: modify\ndelete: member\n"
    removal += f"member: uid=lena,{PEOPLE}\n"
    assert slapd.modify(removal) == 0
    try:
        assert signed_in_as(sign_in("lena", "lena-secret")) == "lena"
        assert set(lena.groups.values_list("name", flat=True)) == set()
        assert user_readable_collection_ids(user=lena) == set()
    finally:
        restore = f"dn: cn=sales-team,{GROUPS}\nchangetype: modify\nadd: member\n"
        assert slapd.modify(restore + f"member: uid=lena,{PEOPLE}\n") == 0


def test_ldap_never_signs_in_a_local_account_of_the_same_name(company, slapd):
    assert signed_in_as(sign_in("ada", "not-the-local-password")) is None
    assert signed_in_as(sign_in("ada", PASSWORD)) == "ada"  # her own password still works
    assert not ExternalIdentity.objects.exists()


def test_a_deactivated_ldap_user_can_no_longer_sign_in(company, slapd):
    client = sign_in("lena", "lena-secret")
    User.objects.filter(username="lena").update(is_active=False)
    assert signed_in_as(client) is None
    assert signed_in_as(sign_in("lena", "lena-secret")) is None
