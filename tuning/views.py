"""Adapter administration: train per access profile, watch, evaluate, activate; routing per role.

Thin: each view checks the capability, calls one service or selector, renders or redirects.
"""

from __future__ import annotations

from django.conf import settings
from django.contrib import messages
from django.contrib.auth.models import Group
from django.core.exceptions import ValidationError
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_POST

from accounts.capabilities import Capability
from accounts.decorators import capability_required
from tuning import charts, selectors, services, visibility
from tuning.forms import RoleStrategyForm, TrainForm
from tuning.models import Adapter, RoleStrategy, TrainingExample

manage_adapters = capability_required(Capability.MANAGE_ADAPTERS)


@manage_adapters
def adapter_list(request: HttpRequest) -> HttpResponse:
    strategies = selectors.role_strategies()
    return render(
        request,
        "tuning/adapter_list.html",
        {
            "rows": selectors.profiles_with_adapters(),
            "form": TrainForm(),
            "roles": [
                (role, strategies.get(role.pk, "")) for role in Group.objects.order_by("name")
            ],
            "strategies": RoleStrategy.Strategy.choices,
            "default_strategy": settings.TUNING_DEFAULT_STRATEGY,
        },
    )


@manage_adapters
@require_POST
def adapter_train(request: HttpRequest) -> HttpResponse:
    form = TrainForm(request.POST)
    if not form.is_valid():
        messages.error(request, "Check the training settings: " + form.errors.as_text())
        return redirect("tuning:adapter_list")
    try:
        adapter = services.adapter_create(actor=request.user, **form.cleaned_data)
    except ValidationError as exc:
        messages.error(request, " ".join(exc.messages))
        return redirect("tuning:adapter_list")
    messages.success(request, f"Training {adapter.label} is queued.")
    return redirect("tuning:adapter_detail", pk=adapter.pk)


@manage_adapters
def adapter_detail(request: HttpRequest, pk: int) -> HttpResponse:
    """The adapter's state, scores and counts for every manager; its text (pairs, keys, probe
    questions, evaluation answers, document titles) only where the viewer reads its source
    collections (tuning.visibility)."""
    adapter = get_object_or_404(Adapter, pk=pk)
    viewer = request.user
    access = visibility.adapter_text_access(user=viewer, adapter=adapter)

    def sample(split: str, limit: int = 20):
        return visibility.examples_for_user(user=viewer, adapter=adapter, split=split, limit=limit)

    return render(
        request,
        "tuning/adapter_detail.html",
        {
            "adapter": adapter,
            "documents": visibility.document_rows_for_user(user=viewer, adapter=adapter),
            "train_sample": sample(TrainingExample.Split.TRAIN),
            "heldout_sample": sample(TrainingExample.Split.HELDOUT),
            "probe_sample": sample(TrainingExample.Split.PROBE, limit=10),
            "counts": {split: count.total for split, count in access.counts.items()},
            "access": access,
            "hidden_note": visibility.HIDDEN_NOTE if access.hides_text(adapter.metrics) else "",
            "loss_chart": charts.loss_svg(adapter.loss_history),
            "accuracy_chart": charts.accuracy_svg(adapter.metrics.get("heldout") or {}),
            "hybrid_sources": settings.TUNING_HYBRID_SOURCES,
            "serving_note": selectors.adapter_serving_note(adapter),
        },
    )


def _decide(request: HttpRequest, pk: int, action, done: str) -> HttpResponse:
    adapter = get_object_or_404(Adapter, pk=pk)
    try:
        action(actor=request.user, adapter=adapter)
    except ValidationError as exc:
        messages.error(request, " ".join(exc.messages))
    else:
        messages.success(request, f"{adapter.label} {done}.")
    return redirect("tuning:adapter_detail", pk=pk)


@manage_adapters
@require_POST
def adapter_activate(request: HttpRequest, pk: int) -> HttpResponse:
    return _decide(request, pk, services.adapter_activate, "is active")


@manage_adapters
@require_POST
def adapter_retire(request: HttpRequest, pk: int) -> HttpResponse:
    return _decide(request, pk, services.adapter_retire, "is retired")


@manage_adapters
@require_POST
def adapter_cancel(request: HttpRequest, pk: int) -> HttpResponse:
    return _decide(request, pk, services.adapter_cancel, "is being cancelled")


@manage_adapters
@require_POST
def role_strategy(request: HttpRequest) -> HttpResponse:
    """Save one role's routing strategy. Whatever was posted, the answer is a redirect with a
    message: a hostile role id or strategy is a form error, not a server error."""
    form = RoleStrategyForm(request.POST)
    if not form.is_valid():
        messages.error(request, "Routing not saved: " + _form_errors(form))
        return redirect("tuning:adapter_list")
    role = form.cleaned_data["role"]
    try:
        services.role_strategy_set(
            actor=request.user, role=role, strategy=form.cleaned_data["strategy"]
        )
    except ValidationError as exc:
        messages.error(request, "Routing not saved: " + " ".join(exc.messages))
    else:
        messages.success(request, f"Routing for “{role.name}” saved.")
    return redirect("tuning:adapter_list")


def _form_errors(form) -> str:
    """The form's errors as one line, each named by its field (the message is one line)."""
    return " ".join(
        f"{name}: {message}" for name, errors in form.errors.items() for message in errors
    )
