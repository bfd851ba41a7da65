"""Writes to collections (and, with the ingestion issue, documents and chunks)."""

from __future__ import annotations

from collections.abc import Iterable

from django.contrib.auth.models import Group
from django.core.exceptions import ValidationError
from django.db import transaction
from django.utils.text import slugify

from accounts.models import User
from accounts.services import audit_record
from ingestion.models import Collection


def _unique_slug(name: str, *, exclude_pk: int | None = None) -> str:
    base = slugify(name)[:100] or "collection"
    slug, n = base, 2
    taken = Collection.objects.exclude(pk=exclude_pk) if exclude_pk else Collection.objects
    while taken.filter(slug=slug).exists():
        slug, n = f"{base}-{n}", n + 1
    return slug


def _clean_name(name: str, *, exclude_pk: int | None = None) -> str:
    name = " ".join(name.split())
    if not name:
        raise ValidationError("A collection needs a name.")
    clash = Collection.objects.filter(name__iexact=name)
    if exclude_pk:
        clash = clash.exclude(pk=exclude_pk)
    if clash.exists():
        raise ValidationError(f"A collection called {name!r} exists already.")
    return name


@transaction.atomic
def collection_create(
    *,
    actor: User | None,
    name: str,
    description: str = "",
    readers: Iterable[Group] = (),
    slug: str | None = None,
) -> Collection:
    name = _clean_name(name)
    readers = list(readers)
    collection = Collection.objects.create(
        name=name,
        slug=slug or _unique_slug(name),
        description=description.strip(),
    )
    collection.readers.set(readers)
    audit_record(
        actor=actor,
        action="collection.create",
        target=collection,
        details={"readers": sorted(r.name for r in readers)},
    )
    return collection


@transaction.atomic
def collection_update(
    *,
    actor: User,
    collection: Collection,
    name: str,
    description: str,
    readers: Iterable[Group],
) -> Collection:
    """Rename a collection and set the roles that read it; effective on the next question."""
    Collection.objects.select_for_update().get(pk=collection.pk)
    details: dict = {}
    name = _clean_name(name, exclude_pk=collection.pk)
    if name != collection.name:
        details["name"] = {"before": collection.name, "after": name}
        collection.name = name
    description = description.strip()
    if description != collection.description:
        details["description"] = {"before": collection.description, "after": description}
        collection.description = description
    collection.save()
    readers = list(readers)
    before = sorted(collection.readers.values_list("name", flat=True))
    after = sorted(r.name for r in readers)
    if before != after:
        collection.readers.set(readers)
        details["readers"] = {"before": before, "after": after}
    if details:
        audit_record(actor=actor, action="collection.update", target=collection, details=details)
    return collection
