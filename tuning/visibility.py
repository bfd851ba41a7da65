"""Which of an adapter's derived text a viewer may see on the adapter pages.

Training pairs, held-out questions and their keys, leak-probe questions and evaluation answers
are copies of facts of documents, or a model's words about them. "Manage adapters" may be
granted to a role that reads less than an adapter's profile, and the leak probe is drawn from
collections *outside* the profile by design, so without this check the adapter page would be a
way around the access model. The rule: text is shown only to someone who reads every collection
it came from; everyone else sees counts and scores, and a note that says why.

Every check is one SQL statement built on the access module's
`readable_collection_ids_query`, so the grants are re-read on every request and there is no
second access rule here: this module only says where each piece of text came from.

- a stored pair (`TrainingExample`) came from one collection, its `collection_id`; the generic
  refusals came from none and are shown to every manager; a pair whose collection is unknown is
  shown to nobody;
- a training document's title (`AdapterDocument`) from its `collection_id`;
- the evaluation's sample answers are the adapter's and retrieval's words for a member of the
  profile, so they may state any fact of the profile: shown only to someone who reads the
  whole profile (`Adapter.collection_ids`);
- the leaked answers are those words about the probe's foreign facts: shown only to someone who
  reads the whole profile and every probe pair's collection.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from django.db.models import Count, Exists, OuterRef, Q, QuerySet

from accounts.selectors import readable_collection_ids_query
from tuning.models import Adapter, AdapterDocument, TrainingExample
from tuning.selectors import adapter_document_rows

HIDDEN_NOTE = (
    "Some questions, answers and document titles come from collections you do not read, so "
    "they are not shown here; the counts and scores cover them all."
)


@dataclass(frozen=True)
class SplitCount:
    total: int
    shown: int

    @property
    def hidden(self) -> int:
        return self.total - self.shown


@dataclass(frozen=True)
class AdapterTextAccess:
    """What `viewer` may see of one adapter's text; counts are for everyone."""

    counts: dict[str, SplitCount]
    reads_profile: bool
    titles_hidden: int

    @property
    def samples(self) -> bool:
        return self.reads_profile

    @property
    def leaked(self) -> bool:
        return self.reads_profile and self.counts[TrainingExample.Split.PROBE].hidden == 0

    def hides_text(self, metrics: dict) -> bool:
        """Whether anything of this adapter's text is withheld (the page then says why)."""
        return bool(
            self.titles_hidden
            or any(c.hidden for c in self.counts.values())
            or (metrics.get("samples") and not self.samples)
            or ((metrics.get("leak") or {}).get("leaked") and not self.leaked)
        )


def _example_readable(user) -> Q:
    """A pair's text is readable by `user`: it came from no document, or from a collection they
    read now (an unknown collection, NULL, matches neither)."""
    return Q(document_id__isnull=True, collection_id__isnull=True) | Q(
        collection_id__in=readable_collection_ids_query(user=user)
    )


def examples_for_user(
    *, user, adapter: Adapter, split: str, limit: int = 20
) -> QuerySet[TrainingExample]:
    """The first `limit` pairs of `split` whose text `user` may read, filtered in SQL."""
    return (
        TrainingExample.objects.filter(adapter=adapter, split=split)
        .filter(_example_readable(user))
        .order_by("id")[:limit]
    )


def example_counts(*, user, adapter: Adapter) -> dict[str, SplitCount]:
    """Per split, how many pairs there are and how many of them `user` may read (one query)."""
    readable = _example_readable(user)
    aggregates = {}
    for split in TrainingExample.Split.values:
        aggregates[f"{split}_total"] = Count("id", filter=Q(split=split))
        aggregates[f"{split}_shown"] = Count("id", filter=Q(split=split) & readable)
    row = TrainingExample.objects.filter(adapter=adapter).aggregate(**aggregates)
    return {
        split: SplitCount(total=row[f"{split}_total"], shown=row[f"{split}_shown"])
        for split in TrainingExample.Split.values
    }


def reads_every_collection(*, user, collection_ids: Iterable[int]) -> bool:
    """Whether `user` reads every one of `collection_ids` now (a deleted collection: no)."""
    wanted = {int(c) for c in collection_ids}
    if not wanted:
        return True
    found = readable_collection_ids_query(user=user).filter(collection_id__in=wanted)
    return wanted <= set(found.values_list("collection_id", flat=True))


def adapter_text_access(*, user, adapter: Adapter) -> AdapterTextAccess:
    return AdapterTextAccess(
        counts=example_counts(user=user, adapter=adapter),
        reads_profile=reads_every_collection(user=user, collection_ids=adapter.collection_ids),
        titles_hidden=document_rows_for_user(user=user, adapter=adapter)
        .filter(title_readable=False)
        .count(),
    )


def document_rows_for_user(*, user, adapter: Adapter) -> QuerySet[AdapterDocument]:
    """Training documents with whether each is still at its trained version and collection, and
    whether `user` reads the collection it was trained from (else its title is not shown)."""
    readable = readable_collection_ids_query(user=user).filter(
        collection_id=OuterRef("collection_id")
    )
    # Readable titles first: a withheld title's place among the others would hint at it.
    return (
        adapter_document_rows(adapter=adapter)
        .annotate(title_readable=Exists(readable))
        .order_by("-title_readable", "document_title", "pk")
    )
