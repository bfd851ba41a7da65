"""The tuning pages' forms. Every value a browser posts is parsed here, so that a hostile one
(a Unicode digit, a NUL, a number beyond the database column) is a form error, never a 500."""

from django import forms
from django.conf import settings
from django.contrib.auth.models import Group

# Beyond any useful run, and far inside the PositiveIntegerField column it is stored in.
MAX_STEPS_LIMIT = 1_000_000


class TrainForm(forms.Form):
    profile_key = forms.CharField(max_length=32, widget=forms.HiddenInput)
    rank = forms.IntegerField(min_value=1, max_value=256, initial=settings.TUNING_LORA_RANK)
    epochs = forms.IntegerField(min_value=1, max_value=50, initial=settings.TUNING_EPOCHS)
    learning_rate = forms.FloatField(
        min_value=1e-7, max_value=1.0, initial=settings.TUNING_LEARNING_RATE
    )
    max_steps = forms.IntegerField(
        min_value=0,
        max_value=MAX_STEPS_LIMIT,
        initial=settings.TUNING_MAX_STEPS,
        help_text="0: as many as the epochs need",
    )


class RoleStrategyForm(forms.Form):
    """One role's routing strategy. The role is looked up by the form: an id that is not a
    plain ASCII number of an existing role is "unknown role", whatever its characters."""

    role = forms.ModelChoiceField(
        queryset=Group.objects.all(),
        error_messages={"invalid_choice": "that role does not exist (any more)."},
    )
    strategy = forms.CharField(max_length=16)

    def clean_role(self) -> Group:
        # ModelChoiceField would pass "²" or "١٢" on to int(), which reads them as 2 and 12.
        raw = str(self.data.get("role", ""))
        if not (raw.isascii() and raw.isdigit()):
            raise forms.ValidationError(self.fields["role"].error_messages["invalid_choice"])
        return self.cleaned_data["role"]
