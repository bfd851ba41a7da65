"""The access matrix of chunk_search over the demo company, with its canary facts.

Every demo document is indexed for real; then, for every user and every canary question, no
retrieved chunk comes from a collection the user may not read, and no canary token of such a
collection appears in any retrieved text.
"""

import json
from io import StringIO
from pathlib import Path

import pytest
from django.core.management import call_command

from accounts.models import User
from accounts.selectors import user_readable_collection_ids
from ingestion import services
from ingestion.models import Collection, Document
from ingestion.selectors import chunk_search

MANIFEST = json.loads(
    (Path(__file__).resolve().parent.parent / "demo" / "manifest.json").read_text()
)

pytestmark = pytest.mark.slow


@pytest.fixture
def demo_indexed(db):
    call_command("load_demo", stdout=StringIO())
    for document in Document.objects.all():
        outcome = services.document_index(document_id=document.pk, task_id="matrix")
        assert outcome == "indexed", (
            document.title,
            Document.objects.get(pk=document.pk).state_reason,
        )
    return {c.slug: c.pk for c in Collection.objects.all()}


@pytest.mark.timeout(900)
def test_demo_company_access_matrix(demo_indexed):
    # One test, three parts: indexing the demo company takes most of its time.
    _no_user_retrieves_from_a_collection_they_cannot_read(demo_indexed)
    _readers_do_find_their_canaries(demo_indexed)
    _user_without_roles_retrieves_nothing()


def _no_user_retrieves_from_a_collection_they_cannot_read(demo_indexed):
    slug_of = {pk: slug for slug, pk in demo_indexed.items()}
    questions = [c["question"] for c in MANIFEST["canaries"]] + [
        q["question"] for q in MANIFEST["questions"]
    ]
    checked = 0
    for user in User.objects.all():
        readable = user_readable_collection_ids(user=user)
        forbidden_tokens = [
            c["token"]
            for c in MANIFEST["canaries"]
            if demo_indexed[c["collection"]] not in readable
        ]
        for question in questions:
            hits = chunk_search(user=user, query=question, k=8)
            for hit in hits:
                assert hit.collection_id in readable, (
                    user.username,
                    question,
                    slug_of[hit.collection_id],
                )
                for token in forbidden_tokens:
                    assert token not in hit.text, (user.username, question, token)
            checked += 1
    assert checked == User.objects.count() * len(questions)


def _readers_do_find_their_canaries(demo_indexed):
    # The other side of the matrix: the facts are there for those who may read them.
    found = 0
    for canary in MANIFEST["canaries"]:
        reader = next(
            u
            for u in User.objects.order_by("username")
            if demo_indexed[canary["collection"]] in user_readable_collection_ids(user=u)
        )
        hits = chunk_search(user=reader, query=canary["question"], k=5)
        found += any(canary["token"] in hit.text for hit in hits)
    assert found >= 0.8 * len(MANIFEST["canaries"]), f"found {found}/{len(MANIFEST['canaries'])}"


def _user_without_roles_retrieves_nothing():
    nora = User.objects.get(username="nora")
    assert all(
        chunk_search(user=nora, query=c["question"], k=5) == [] for c in MANIFEST["canaries"]
    )
