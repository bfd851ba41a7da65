"""The access module: readable collections, capabilities, object checks and access profiles.

A shared cast, for the allowed and the denied case alike:
    alice   Sales              reads company + sales
    bob     HR                 reads company + hr
    charlie (no role)          reads nothing
    dana    Sales + HR         reads company + sales + hr
"""

from __future__ import annotations

import subprocess
from io import StringIO
from pathlib import Path

import pytest
from django.contrib.auth.models import Group
from django.core.management import call_command
from django.db import connection, transaction
from django.test.utils import CaptureQueriesContext
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from accounts.capabilities import ADMINISTRATOR, COMPLIANCE_OFFICER, Capability
from accounts.models import AuditEvent, User
from accounts.selectors import (
    access_profile_for_role,
    access_profile_for_user,
    access_profiles,
    profile_key,
    readable_collection_ids_query,
    user_can_read_collection,
    user_capabilities,
    user_has_capability,
    user_may_see,
    user_readable_collection_ids,
)
from ingestion.models import Collection
from tests.factories import CollectionFactory, RoleFactory, UserFactory

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def world(db):
    company = CollectionFactory(name="Company", slug="company")
    sales = CollectionFactory(name="Sales", slug="sales")
    hr = CollectionFactory(name="HR", slug="hr")
    sales_role = RoleFactory(name="Sales", reads=[company, sales])
    hr_role = RoleFactory(name="HR", reads=[company, hr])
    return {
        "company": company,
        "sales": sales,
        "hr": hr,
        "sales_role": sales_role,
        "hr_role": hr_role,
        "alice": UserFactory(username="alice", roles=[sales_role]),
        "bob": UserFactory(username="bob", roles=[hr_role]),
        "charlie": UserFactory(username="charlie"),
        "dana": UserFactory(username="dana", roles=[sales_role, hr_role]),
    }


def ids(*collections: Collection) -> frozenset[int]:
    return frozenset(c.pk for c in collections)


def test_a_user_reads_the_union_of_their_roles_collections(world):
    w = world
    assert user_readable_collection_ids(user=w["alice"]) == ids(w["company"], w["sales"])
    assert user_readable_collection_ids(user=w["bob"]) == ids(w["company"], w["hr"])
    assert user_readable_collection_ids(user=w["dana"]) == ids(w["company"], w["sales"], w["hr"])


def test_sales_user_cannot_read_hr(world):
    assert not user_can_read_collection(user=world["alice"], collection_id=world["hr"].pk)
    assert user_can_read_collection(user=world["bob"], collection_id=world["hr"].pk)


def test_user_without_roles_reads_nothing(world):
    assert user_readable_collection_ids(user=world["charlie"]) == frozenset()
    assert not user_can_read_collection(user=world["charlie"], collection_id=world["company"].pk)


def test_inactive_and_anonymous_users_read_nothing(world):
    from django.contrib.auth.models import AnonymousUser

    alice = world["alice"]
    User.objects.filter(pk=alice.pk).update(is_active=False)
    # The in-memory object still says active: the query must not trust it.
    assert alice.is_active
    assert user_readable_collection_ids(user=alice) == frozenset()
    assert user_readable_collection_ids(user=AnonymousUser()) == frozenset()
    assert user_readable_collection_ids(user=None) == frozenset()
    assert not user_can_read_collection(user=world["bob"], collection_id=None)


def test_revoking_a_role_takes_effect_on_the_next_call(world):
    alice, sales = world["alice"], world["sales"]
    assert user_can_read_collection(user=alice, collection_id=sales.pk)
    alice.groups.remove(world["sales_role"])
    assert not user_can_read_collection(user=alice, collection_id=sales.pk)
    assert user_readable_collection_ids(user=alice) == frozenset()


def test_withdrawing_a_collection_from_a_role_takes_effect_on_the_next_call(world):
    dana, hr = world["dana"], world["hr"]
    world["hr_role"].readable_collections.remove(hr)
    assert hr.pk not in user_readable_collection_ids(user=dana)
    assert hr.pk not in user_readable_collection_ids(user=world["bob"])


def test_the_filter_runs_in_sql_as_one_statement(world):
    alice = world["alice"]
    with CaptureQueriesContext(connection) as queries:
        names = sorted(
            Collection.objects.filter(id__in=readable_collection_ids_query(user=alice)).values_list(
                "slug", flat=True
            )
        )
    assert names == ["company", "sales"]
    assert len(queries) == 1
    sql = queries[0]["sql"]
    assert "ingestion_collection_readers" in sql and "auth_user_groups" in sql.replace(
        "accounts_user_groups", "auth_user_groups"
    )


def test_user_may_see_collections_by_role_and_fails_closed_on_unknown_objects(world):
    w = world
    assert user_may_see(user=w["alice"], obj=w["sales"])
    assert not user_may_see(user=w["alice"], obj=w["hr"])
    assert not user_may_see(user=w["charlie"], obj=w["company"])
    # A kind of object the access module has no rule for is refused, whoever asks.
    event = AuditEvent.objects.create(
        actor_username="x", action="x", target_type="x", target_id="1", target_repr="x"
    )
    assert not user_may_see(user=w["dana"], obj=event)
    assert not user_may_see(user=w["dana"], obj=object())
    assert not user_may_see(user=w["dana"], obj=None)


def test_builtin_roles_have_separated_capabilities(db):
    admin = UserFactory(username="ada", roles=[Group.objects.get(name=ADMINISTRATOR)])
    officer = UserFactory(username="cora", roles=[Group.objects.get(name=COMPLIANCE_OFFICER)])
    assert user_has_capability(user=admin, capability=Capability.MANAGE_USERS)
    assert not user_has_capability(user=admin, capability=Capability.REVIEW_QUERYLOG)
    assert user_has_capability(user=officer, capability=Capability.REVIEW_QUERYLOG)
    assert not user_has_capability(user=officer, capability=Capability.MANAGE_USERS)
    assert not user_has_capability(user=officer, capability=Capability.MANAGE_DOCUMENTS)


def test_a_superuser_gains_no_capability_without_roles(db):
    root = User.objects.create_superuser("root", password="a-long-root-password")
    assert root.has_perm(Capability.REVIEW_QUERYLOG.perm)  # what Django would say
    assert user_capabilities(user=root) == frozenset()  # what Counsel says


def test_roles_with_identical_collections_share_one_profile(world):
    w = world
    twin = RoleFactory(name="Sales Operations", reads=[w["company"], w["sales"]])
    sales_profile = access_profile_for_role(role=w["sales_role"])
    assert access_profile_for_role(role=twin) == sales_profile
    assert set(sales_profile.role_names) == {"Sales", "Sales Operations"}
    assert sales_profile.collection_ids == ids(w["company"], w["sales"])
    assert access_profile_for_role(role=w["hr_role"]).key != sales_profile.key


def test_profile_key_depends_only_on_the_collection_set(world):
    w = world
    key_before = access_profile_for_role(role=w["sales_role"]).key
    w["sales_role"].name = "Sales EMEA"
    w["sales_role"].save()
    assert access_profile_for_role(role=w["sales_role"]).key == key_before
    w["sales_role"].readable_collections.add(w["hr"])
    assert access_profile_for_role(role=w["sales_role"]).key != key_before
    assert profile_key(set()) == "ap-none"


def test_a_user_with_several_roles_has_the_profile_of_the_union(world):
    profile = access_profile_for_user(user=world["dana"])
    assert profile.collection_ids == ids(world["company"], world["sales"], world["hr"])
    assert set(profile.role_names) == {"Sales", "HR"}
    assert access_profile_for_user(user=world["charlie"]).is_empty


# --- the demo company, against a table written by hand ---------------------------------------

DEMO_TABLE = {
    "admin": {"company"},
    "compliance": {"company"},
    "sam": {"company", "sales"},
    "hana": {"company", "hr"},
    "eli": {"company", "engineering"},
    "fiona": {"company", "finance"},
    "max": {"company", "sales", "engineering"},
    "omar": {"company", "sales"},
    "erin": {"company"},
    "nora": set(),
}


def test_demo_company_readable_collections_match_the_table(db):
    call_command("load_demo", stdout=StringIO())
    slugs = dict(Collection.objects.values_list("pk", "slug"))
    actual = {
        user.username: {slugs[i] for i in user_readable_collection_ids(user=user)}
        for user in User.objects.all()
    }
    assert actual == DEMO_TABLE


def test_demo_company_profiles(db):
    call_command("load_demo", stdout=StringIO())
    by_roles = {p.role_names: p for p in access_profiles()}
    assert ("Sales", "Sales Operations") in by_roles
    assert ("Administrator", "Compliance officer", "Employee") in by_roles
    assert len({p.key for p in access_profiles()}) == len(access_profiles())


# --- random worlds ----------------------------------------------------------------------------

worlds = st.fixed_dictionaries(
    {
        "collections": st.integers(min_value=1, max_value=6),
        # role -> set of collection indexes
        "grants": st.lists(st.sets(st.integers(0, 5), max_size=6), min_size=1, max_size=6),
        # user -> set of role indexes
        "memberships": st.lists(st.sets(st.integers(0, 5), max_size=4), min_size=1, max_size=6),
    }
)


@pytest.mark.django_db
@settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(spec=worlds)
def test_random_worlds_readable_is_the_union_and_profiles_group_identical_sets(spec):
    with transaction.atomic():
        collections = [
            Collection.objects.create(name=f"hc{i}", slug=f"hc{i}")
            for i in range(spec["collections"])
        ]
        roles = []
        for r, grant in enumerate(spec["grants"]):
            role = Group.objects.create(name=f"hr{r}")
            role.readable_collections.set([collections[i] for i in grant if i < len(collections)])
            roles.append(role)
        expected_by_role = {
            role.pk: frozenset(c.pk for c in role.readable_collections.all()) for role in roles
        }
        for u, membership in enumerate(spec["memberships"]):
            user = User.objects.create(username=f"hu{u}")
            mine = [roles[i] for i in membership if i < len(roles)]
            user.groups.set(mine)
            expected = frozenset().union(*(expected_by_role[r.pk] for r in mine))
            assert user_readable_collection_ids(user=user) == expected
            if not mine:
                assert expected == frozenset()

        # The built-in roles read nothing here; only our roles are compared.
        profiles = [p for p in access_profiles() if set(p.role_ids) & set(expected_by_role)]
        for profile in profiles:
            sets = {expected_by_role[r] for r in profile.role_ids if r in expected_by_role}
            assert sets == {profile.collection_ids}  # one profile, one set
        keys = [p.collection_ids for p in profiles]
        assert len(keys) == len(set(keys))  # one set, one profile
        grouped = {rid for p in profiles for rid in p.role_ids}
        assert set(expected_by_role) <= grouped
        transaction.set_rollback(True)


# --- the lint rule ------------------------------------------------------------------------------

PLANTED = "from ingestion.models import Chunk\n\nChunk.objects.all()\n"


def _ruff(filename: str, source: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [str(ROOT / ".venv" / "bin" / "ruff"), "check", "--stdin-filename", filename, "-"],
        input=source,
        cwd=ROOT,
        capture_output=True,
        text=True,
    )


def test_lint_refuses_chunk_rows_outside_ingestion_selectors_and_services():
    result = _ruff("assistant/services.py", PLANTED)
    assert result.returncode == 1
    assert "TID251" in result.stdout
    assert "accounts.selectors" in result.stdout or "chokepoint" in result.stdout


@pytest.mark.parametrize(
    "allowed", ["ingestion/selectors.py", "ingestion/services.py", "ingestion/models.py"]
)
def test_lint_allows_chunk_rows_in_the_chokepoint(allowed):
    assert _ruff(allowed, PLANTED).returncode == 0


def test_lint_refuses_raw_sql_on_the_chunk_table(tmp_path):
    planted = ROOT / "assistant" / "_planted_violation.py"
    planted.write_text('SQL = "SELECT * FROM ingestion_chunk"\n')
    try:
        result = subprocess.run(
            [str(ROOT / "scripts" / "check-access")], cwd=ROOT, capture_output=True, text=True
        )
    finally:
        planted.unlink()
    assert result.returncode == 1
    assert "assistant/_planted_violation.py" in result.stdout
    clean = subprocess.run(
        [str(ROOT / "scripts" / "check-access")], cwd=ROOT, capture_output=True, text=True
    )
    assert clean.returncode == 0, clean.stdout
