from django import forms
from django.conf import settings


class TrainForm(forms.Form):
    profile_key = forms.CharField(max_length=32, widget=forms.HiddenInput)
    rank = forms.IntegerField(min_value=1, max_value=256, initial=settings.TUNING_LORA_RANK)
    epochs = forms.IntegerField(min_value=1, max_value=50, initial=settings.TUNING_EPOCHS)
    learning_rate = forms.FloatField(
        min_value=1e-7, max_value=1.0, initial=settings.TUNING_LEARNING_RATE
    )
    max_steps = forms.IntegerField(
        min_value=0, initial=settings.TUNING_MAX_STEPS, help_text="0: as many as the epochs need"
    )
