"""Shared set-up of the tuning tests: the demo company with some collections really indexed."""

from __future__ import annotations

from io import StringIO

from django.core.management import call_command
from django.db import DEFAULT_DB_ALIAS, connections

from accounts.models import User
from ingestion import services as ingestion
from ingestion.models import Document
from tuning.models import Adapter, AdapterDocument

CANARIES_HR = ("Bands", "SPARROW")  # see demo/manifest.json


def load_demo(*collections: str) -> None:
    """Load the demo company and index the documents of `collections` (for real)."""
    call_command("load_demo", *([] if collections else ["--no-documents"]), stdout=StringIO())
    for document in Document.objects.filter(collection__slug__in=collections):
        assert ingestion.document_index(document_id=document.pk, task_id="test") == "indexed"


def backend_pid(conn) -> int:
    """The PostgreSQL server process of a Django connection (connecting it if it is not)."""
    with conn.cursor() as cursor:
        cursor.execute("SELECT pg_backend_pid()")
        return cursor.fetchone()[0]


def terminate_backend(pid: int) -> None:
    """What a PostgreSQL restart does to a connection: its server process ends under it. Asked
    of a connection of its own, which waits until the process is gone."""
    other = connections.create_connection(DEFAULT_DB_ALIAS)
    try:
        with other.cursor() as cursor:
            cursor.execute("SELECT pg_terminate_backend(%s, 5000)", [pid])
            assert cursor.fetchone()[0], f"backend {pid} did not end"
    finally:
        other.close()


def user(username: str) -> User:
    return User.objects.get(username=username)


def sales_profile_key() -> str:
    from accounts.selectors import access_profile_for_user

    return access_profile_for_user(user=user("sam")).key


def registered_adapter(*, state: str = Adapter.State.ACTIVE, accuracy: float = 0.8) -> Adapter:
    """An adapter row for the Sales profile trained on its current documents (no weights).

    For eligibility and routing tests: the registry is what they read; the FAKE model backend
    answers for the adapter by name.
    """
    from django.conf import settings
    from django.contrib.auth.models import Group
    from django.utils import timezone

    from accounts.selectors import access_profile_for_role
    from assistant.llm.adapters import base_sha256

    profile = access_profile_for_role(role=Group.objects.get(name="Sales"))
    adapter = Adapter.objects.create(
        profile_key=profile.key,
        collection_ids=sorted(profile.collection_ids),
        role_names=list(profile.role_names),
        version=Adapter.objects.filter(profile_key=profile.key).count() + 1,
        name=f"{profile.key}-v{Adapter.objects.filter(profile_key=profile.key).count() + 1}",
        base_model=settings.TUNING_BASE_MODEL,
        base_sha256=base_sha256(settings.TUNING_BASE_MODEL),
        state=state,
        metrics={
            "heldout": {"n": 10, "base": 0.0, "adapter": accuracy, "rag": 0.6},
            "leak": {"n": 4, "leaks": 0},
        },
        activated_at=timezone.now() if state == Adapter.State.ACTIVE else None,
        trained_at=timezone.now(),
    )
    adapter.roles.set(profile.role_ids)
    for document in Document.objects.filter(
        collection_id__in=profile.collection_ids, indexed_version__isnull=False
    ):
        AdapterDocument.objects.create(
            adapter=adapter,
            document=document,
            document_title=document.title,
            collection_id=document.collection_id,
            version=document.indexed_version,
        )
    return adapter
