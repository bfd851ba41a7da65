"""Reads of the adapter registry, and the adapter eligibility check of every question.

`adapter_for_user` answers "may an adapter serve this user, now?". It builds on the access
module through `ingestion.selectors.documents_for_user` (readable collections in SQL, and
freshness): an adapter serves a user only if *every* one of its training documents is, in one
SQL statement, still readable by that user, still current, still at the version it was
trained on, and still in the collection it was trained from. Nothing is cached: a revoked role,
a new version, an expiry or a move takes effect on the next question, also when the hook that
marks adapters stale was missed. And it serves only on the base it was trained on: the same
query keeps only adapters whose base model and base file hash are the ones being served, and
(on the local adapters' server) whose file that server has loaded (assistant.llm.adapters).
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass, field

from django.conf import settings
from django.db.models import (
    BooleanField,
    Count,
    Exists,
    ExpressionWrapper,
    F,
    OuterRef,
    Q,
    QuerySet,
    Value,
)

from accounts.capabilities import Capability
from accounts.selectors import access_profiles, user_has_capability
from assistant.llm.adapters import ServedBase, served_base
from ingestion.rls import reading_as
from ingestion.selectors import documents_for_user
from tuning.models import Adapter, AdapterDocument, RoleStrategy, TrainingExample


@dataclass(frozen=True)
class Eligibility:
    adapter: Adapter | None
    reason: str
    trained: frozenset[tuple[int, int]] = field(default_factory=frozenset)  # (document, version)

    @property
    def eligible(self) -> bool:
        return self.adapter is not None


def adapter_unservable_documents(*, user, adapter: Adapter) -> int:
    """How many of `adapter`'s training documents `user` may not read now, or that changed.

    One query: training rows without a matching readable, current document at the trained
    version and collection. 0 means the adapter may serve this user.
    """
    current = documents_for_user(user=user).filter(
        pk=OuterRef("document_id"),
        version=OuterRef("version"),
        indexed_version=OuterRef("version"),
        collection_id=OuterRef("collection_id"),
    )
    return (
        AdapterDocument.objects.filter(adapter=adapter)
        .filter(~Exists(current) | Q(document_id__isnull=True))
        .count()
    )


def adapter_for_user(*, user, role_ids: Collection[int] | None = None) -> Eligibility:
    """The active adapter that may answer `user` now, or None with the reason in words.

    Candidates are the active adapters trained for one of the user's current roles (newest
    activation first); the first whose every training document passes the check serves.
    `role_ids`: the user's roles as the caller has just read them (one query fewer).
    """
    if not user.is_authenticated:
        roles = []
    elif role_ids is not None:
        roles = list(role_ids)
    else:
        roles = list(user.groups.values_list("pk", flat=True))
    served = served_base()
    # Adapters that went stale while serving are read in the same query, to say why; so are
    # active adapters on a base that is not served (`servable` is computed in SQL).
    found = list(
        Adapter.objects.filter(
            Q(state=Adapter.State.ACTIVE)
            | Q(state=Adapter.State.STALE, activated_at__isnull=False),
            roles__in=roles,
        )
        .annotate(
            document_count=Count("documents", distinct=True),
            servable=_servable(served),
        )
        .distinct()
        .order_by("-activated_at", "-pk")
    )
    active = [a for a in found if a.state == Adapter.State.ACTIVE]
    candidates = [a for a in active if a.servable]
    if not candidates:
        if active:
            return Eligibility(None, not_served_reason(active[0], served))
        if found:
            # No document title here: the changed document may be one this user cannot read.
            return Eligibility(
                None,
                f"{found[0].label} is stale: one of its training documents changed after it was "
                "trained, so it no longer answers until it is trained again.",
            )
        return Eligibility(None, "No active adapter for your access profile.")
    refusals = []
    # The training documents are read as `user` (row-level security: their collections only).
    with reading_as(user=user):
        return _first_servable(user, candidates, refusals)


def _servable(served: ServedBase | None):
    """SQL: the adapter's base is the one served, and its file is loaded where that is known."""
    if served is None or served.adapters == frozenset():
        # (An empty IN list is no SQL: Django would drop the condition, not make it false.)
        return Value(False, output_field=BooleanField())
    condition = Q(base_model=served.model, base_sha256=served.sha256)
    if served.adapters is not None:
        condition &= Q(name__in=sorted(served.adapters))
    return ExpressionWrapper(condition, output_field=BooleanField())


def not_served_reason(adapter: Adapter, served: ServedBase | None) -> str:
    """Why an adapter cannot answer on what is served now, in words for the log and its page."""
    if served is None:
        return f"{adapter.label} cannot answer: the adapters' model server is not running."
    if adapter.base_model != served.model:
        return (
            f"{adapter.label} was trained on {adapter.base_model or 'an unrecorded base'}, "
            f"which the adapters' model server does not serve (it serves {served.model}); "
            "train a new version on the served base."
        )
    if adapter.base_sha256 != served.sha256:
        return (
            f"{adapter.label} was trained on another file of {adapter.base_model} than the one "
            "being served (its SHA-256 differs); train a new version."
        )
    return (
        f"{adapter.label} is not loaded by the adapters' model server yet (it loads every "
        "ready and active adapter within seconds of a change)."
    )


def adapter_serving_note(adapter: Adapter) -> str:
    """For the adapter's page: why a ready or active adapter would not answer now ('' if it
    would, as far as its base and file go; eligibility per user also checks the documents)."""
    if adapter.state not in (Adapter.State.READY, Adapter.State.ACTIVE):
        return ""
    served = served_base()
    servable = Adapter.objects.filter(pk=adapter.pk).annotate(servable=_servable(served))
    if servable.values_list("servable", flat=True).first():
        return ""
    return not_served_reason(adapter, served)


def _first_servable(user, candidates: list[Adapter], refusals: list[str]) -> Eligibility:
    for adapter in candidates:
        if adapter.document_count == 0:
            refusals.append(f"{adapter.label} has no training documents")
            continue
        missing = adapter_unservable_documents(user=user, adapter=adapter)
        if missing == 0:
            trained = frozenset(
                AdapterDocument.objects.filter(adapter=adapter).values_list(
                    "document_id", "version"
                )
            )
            return Eligibility(adapter, "", trained)
        refusals.append(
            f"{missing} of the {adapter.document_count} training documents of {adapter.label} "
            "are not readable by you or have changed"
        )
    return Eligibility(None, "Adapter refused: " + "; ".join(refusals) + ".")


def strategy_for_user(*, user, role_ids: Collection[int] | None = None) -> str:
    """The routing strategy for `user`: the most cautious of their roles' strategies.

    Retrieval wins over automatic, automatic over the adapter; roles without a setting use
    TUNING_DEFAULT_STRATEGY. `role_ids`: as in `adapter_for_user`.
    """
    roles = (
        list(role_ids) if role_ids is not None else list(user.groups.values_list("pk", flat=True))
    )
    if not roles:
        return "rag"
    chosen = dict(RoleStrategy.objects.filter(role_id__in=roles).values_list("role_id", "strategy"))
    strategies = {chosen.get(role, settings.TUNING_DEFAULT_STRATEGY) for role in roles}
    for strategy in ("rag", "auto", "tuned"):
        if strategy in strategies:
            return strategy
    return "rag"


def role_strategies() -> dict[int, str]:
    return dict(RoleStrategy.objects.values_list("role_id", "strategy"))


# --- serving --------------------------------------------------------------------------------------

SERVED_STATES = (Adapter.State.READY, Adapter.State.ACTIVE)


def adapters_to_serve() -> QuerySet[Adapter]:
    """What the adapters' server should load: every ready or active adapter on the adapters'
    base (ready ones too, so that activating one takes effect on the next question)."""
    return Adapter.objects.filter(state__in=SERVED_STATES, base_model=settings.TUNING_BASE_MODEL)


# --- administration ---------------------------------------------------------------------------


def adapter_list() -> QuerySet[Adapter]:
    return Adapter.objects.annotate(
        document_count=Count("documents", distinct=True)
    ).prefetch_related("roles")


def profiles_with_adapters() -> list[dict]:
    """Every non-empty access profile with its adapters, newest first (the tuning page)."""
    adapters: dict[str, list[Adapter]] = {}
    for adapter in adapter_list():
        adapters.setdefault(adapter.profile_key, []).append(adapter)
    return [
        {"profile": profile, "adapters": adapters.get(profile.key, [])}
        for profile in access_profiles()
        if not profile.is_empty
    ]


def adapter_examples(*, adapter: Adapter, split: str, limit: int = 20) -> QuerySet:
    return TrainingExample.objects.filter(adapter=adapter, split=split).order_by("id")[:limit]


def adapter_document_rows(*, adapter: Adapter) -> QuerySet[AdapterDocument]:
    """Training documents with whether each is still at its trained version and collection."""
    return AdapterDocument.objects.filter(adapter=adapter).annotate(
        current_version=F("document__version"),
        current_collection=F("document__collection_id"),
    )


# --- the tuning pages' live view ------------------------------------------------------------

SYNC_MAX_ADAPTERS = 500


def progress_event(adapter: Adapter, **extra) -> dict:
    """What the tuning pages are told about an adapter: pushed on every change, and sent again
    when a page (re)connects and asks (`adapter_progress_snapshot`)."""
    return {
        "type": "adapter.progress",
        "id": adapter.pk,
        "state": adapter.state,
        "phase": adapter.phase,
        "step": adapter.step,
        "total": adapter.total_steps,
        "reason": adapter.state_reason,
        **extra,
    }


def adapter_progress_snapshot(*, user, adapter_ids: Collection[int]) -> list[dict]:
    """The current state of the adapters a page shows, for a user who manages adapters (none
    for anyone else: the capability is checked again, as on every request). A page asks after
    every (re)connect, so that a change pushed while it loaded or was offline is not missed."""
    if not user_has_capability(user=user, capability=Capability.MANAGE_ADAPTERS):
        return []
    ids = list(adapter_ids)[:SYNC_MAX_ADAPTERS]
    return [
        progress_event(a, loss=(a.loss_history[-1][1] if a.loss_history else None))
        for a in Adapter.objects.filter(pk__in=ids).order_by("pk")
    ]
