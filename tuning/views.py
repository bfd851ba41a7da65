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
from tuning import charts, selectors, services
from tuning.forms import TrainForm
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
    adapter = get_object_or_404(Adapter, pk=pk)
    return render(
        request,
        "tuning/adapter_detail.html",
        {
            "adapter": adapter,
            "documents": selectors.adapter_document_rows(adapter=adapter),
            "train_sample": selectors.adapter_examples(adapter=adapter, split="train"),
            "heldout_sample": selectors.adapter_examples(adapter=adapter, split="heldout"),
            "probe_sample": selectors.adapter_examples(adapter=adapter, split="probe", limit=10),
            "counts": {
                split: adapter.examples.filter(split=split).count()
                for split in TrainingExample.Split.values
            },
            "loss_chart": charts.loss_svg(adapter.loss_history),
            "accuracy_chart": charts.accuracy_svg(adapter.metrics.get("heldout") or {}),
            "hybrid_sources": settings.TUNING_HYBRID_SOURCES,
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
    role_id = request.POST.get("role", "")
    role = get_object_or_404(Group, pk=int(role_id) if role_id.isdigit() else 0)
    try:
        services.role_strategy_set(
            actor=request.user, role=role, strategy=request.POST.get("strategy", "")
        )
    except ValidationError as exc:
        messages.error(request, " ".join(exc.messages))
    else:
        messages.success(request, f"Routing for “{role.name}” saved.")
    return redirect("tuning:adapter_list")
