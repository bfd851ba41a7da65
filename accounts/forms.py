from django import forms
from django.contrib.auth.models import Group
from django.contrib.auth.validators import UnicodeUsernameValidator
from django.core.exceptions import ValidationError

from accounts.capabilities import GRANTABLE
from ingestion.models import Collection


def add_service_errors(form: forms.Form, exc: ValidationError) -> None:
    """Show a service's refusal (separation of duties, a clash, …) at the top of the form."""
    for message in exc.messages:
        form.add_error(None, message)


class RolesField(forms.ModelMultipleChoiceField):
    widget = forms.CheckboxSelectMultiple

    def __init__(self, **kwargs) -> None:
        super().__init__(queryset=Group.objects.order_by("name"), required=False, **kwargs)


class CollectionsField(forms.ModelMultipleChoiceField):
    widget = forms.CheckboxSelectMultiple

    def __init__(self, **kwargs) -> None:
        super().__init__(queryset=Collection.objects.order_by("name"), required=False, **kwargs)


class UserCreateForm(forms.Form):
    username = forms.CharField(max_length=150, validators=[UnicodeUsernameValidator()])
    first_name = forms.CharField(max_length=150, required=False)
    last_name = forms.CharField(max_length=150, required=False)
    email = forms.EmailField(required=False)
    roles = RolesField()


class UserEditForm(forms.Form):
    first_name = forms.CharField(max_length=150, required=False)
    last_name = forms.CharField(max_length=150, required=False)
    email = forms.EmailField(required=False)
    roles = RolesField()


class RoleForm(forms.Form):
    name = forms.CharField(max_length=150)
    capabilities = forms.MultipleChoiceField(
        choices=[(c.value, c.label) for c in GRANTABLE],
        widget=forms.CheckboxSelectMultiple,
        required=False,
        initial=["chat"],
    )
    collections = CollectionsField(label="Reads collections")

    def __init__(self, *args, builtin: bool = False, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        if builtin:
            # Shown for information; the services refuse changes to built-in roles anyway.
            self.fields["name"].disabled = True
            self.fields["capabilities"].disabled = True


class CollectionForm(forms.Form):
    name = forms.CharField(max_length=120)
    description = forms.CharField(widget=forms.Textarea(attrs={"rows": 3}), required=False)
    readers = RolesField(label="Roles that may read it")
    managers = RolesField(
        label="Managed by",
        help_text="Members of these roles who hold “manage documents” upload, replace, move "
        "and delete its documents; they see its text only if their roles also read it. "
        "Administrators manage every collection.",
    )


class DateTimeLocalInput(forms.DateTimeInput):
    input_type = "datetime-local"

    def __init__(self, **kwargs) -> None:
        super().__init__(format="%Y-%m-%dT%H:%M", **kwargs)


class DocumentVersionForm(forms.Form):
    file = forms.FileField(label="New version")


class DocumentValidityForm(forms.Form):
    valid_from = forms.DateTimeField(
        required=False, widget=DateTimeLocalInput(), help_text="Not retrieved before this."
    )
    valid_until = forms.DateTimeField(
        required=False, widget=DateTimeLocalInput(), help_text="Never retrieved after this."
    )


class DocumentMoveForm(forms.Form):
    collection = forms.ModelChoiceField(queryset=Collection.objects.none())

    def __init__(self, *args, collections, **kwargs) -> None:
        # Only the collections the user manages: a move needs the right on both ends.
        super().__init__(*args, **kwargs)
        self.fields["collection"].queryset = collections


def _token_lifetimes() -> list[tuple[str, str]]:
    from django.conf import settings

    days = sorted({d for d in (7, 30, 90, 365) if d <= settings.API_TOKEN_MAX_DAYS})
    return [(str(d), f"{d} days") for d in days]


class ApiTokenForm(forms.Form):
    name = forms.CharField(max_length=100, help_text="What it is for, e.g. “Nightly import”.")
    days = forms.TypedChoiceField(coerce=int, label="Expires after", choices=_token_lifetimes)

    def __init__(self, *args, **kwargs) -> None:
        from django.conf import settings

        super().__init__(*args, **kwargs)
        self.fields["days"].initial = str(settings.API_TOKEN_DAYS)
