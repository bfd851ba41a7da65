from __future__ import annotations

from django import forms
from django.contrib.auth.models import Group

from compliance.models import QueryLogEntry, QueryLogExport, QueryLogReview
from compliance.selectors import LogFilters
from ingestion.models import Collection

STATES = [
    ("", "Any review state"),
    ("queue", "To do: flagged or unreviewed"),
    ("flagged", "Flagged"),
    ("unreviewed", "Not reviewed"),
    ("reviewed", "Reviewed"),
]
# What the claim check found (compliance.selectors.GROUNDING_CHOICES).
GROUNDING = [
    ("", "Any"),
    ("unsupported", "Unsupported figures"),
    ("supported", "Every figure supported"),
    ("unchecked", "Not checked"),
    ("looped", "Stopped: repeated itself"),
]


class LogFilterForm(forms.Form):
    """The review workspace's filters (GET). Invalid values are reported, never silently dropped."""

    q = forms.CharField(required=False, max_length=200, label="Text")
    user = forms.CharField(required=False, max_length=150, label="User")
    role = forms.ChoiceField(required=False, label="Role")
    collection = forms.TypedChoiceField(
        required=False, coerce=int, empty_value=None, label="Collection used"
    )
    date_from = forms.DateField(required=False, label="From")
    date_to = forms.DateField(required=False, label="To")
    route = forms.ChoiceField(
        required=False,
        label="Route",
        choices=[
            ("", "Any route"),
            ("rag", "Retrieval (rag)"),
            ("tuned", "Adapter (tuned)"),
            ("hybrid", "Adapter with passages (hybrid)"),
        ],
    )
    model = forms.CharField(required=False, max_length=200, label="Model or adapter")
    outcome = forms.ChoiceField(required=False, label="Outcome")
    state = forms.ChoiceField(required=False, label="Review", choices=STATES)
    grounding = forms.ChoiceField(required=False, label="Grounding", choices=GROUNDING)

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.fields["role"].choices = [("", "Any role")] + [
            (name, name) for name in Group.objects.order_by("name").values_list("name", flat=True)
        ]
        self.fields["collection"].choices = [
            ("", "Any collection"),
            *list(Collection.objects.order_by("name").values_list("id", "name")),
        ]
        self.fields["outcome"].choices = [("", "Any outcome")] + [
            c for c in QueryLogEntry.Outcome.choices if c[0] != QueryLogEntry.Outcome.CHECKPOINT
        ]

    def clean(self):
        data = super().clean()
        if data.get("date_from") and data.get("date_to") and data["date_from"] > data["date_to"]:
            self.add_error("date_to", "The end date is before the start date.")
        return data

    def filters(self) -> LogFilters:
        data = {k: v for k, v in self.cleaned_data.items() if v not in ("", None)}
        if isinstance(data.get("q"), str):
            data["q"] = data["q"].strip()
        return LogFilters(**data)


class ReviewForm(forms.Form):
    kind = forms.ChoiceField(choices=QueryLogReview.Kind.choices)
    note = forms.CharField(required=False, widget=forms.Textarea(attrs={"rows": 3}))


class ExportForm(forms.Form):
    format = forms.ChoiceField(choices=QueryLogExport.Format.choices, initial="csv")


class DashboardForm(forms.Form):
    date_from = forms.DateField(required=False, label="From")
    date_to = forms.DateField(required=False, label="To")
