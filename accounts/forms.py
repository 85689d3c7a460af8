"""Account and key forms. They check input; keys are changed through `accounts.services`."""

from __future__ import annotations

import datetime as dt
from typing import Any

from django import forms
from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.forms import AuthenticationForm, UserCreationForm, UsernameField

from accounts import throttle
from accounts.models import KeyAction

# Rotation grace periods offered on the keys page, in seconds.
GRACE_CHOICES = [
    ("0", "none: the old secret stops now"),
    ("3600", "1 hour"),
    ("86400", "24 hours"),
    ("604800", "7 days"),
]


def default_grace() -> str:
    """The offered period matching TURNOUT["KEY_ROTATION_GRACE_HOURS"], else 24 hours."""
    configured = str(round(float(settings.TURNOUT["KEY_ROTATION_GRACE_HOURS"]) * 3600))
    return configured if configured in dict(GRACE_CHOICES) else "86400"


class SignUpForm(UserCreationForm):
    email = forms.EmailField(help_text="Only for password reset links.")

    class Meta:
        model = get_user_model()
        fields = ("username", "email")
        field_classes = {"username": UsernameField}

    def clean_email(self) -> str:
        email: str = self.cleaned_data["email"]
        # One account per address, so that a reset link goes to exactly one account.
        if get_user_model().objects.filter(email__iexact=email).exists():
            raise forms.ValidationError("An account with this email already exists: log in or reset its password.")
        return email


class ThrottledAuthenticationForm(AuthenticationForm):
    """Django's login form, refusing a (username, address) pair with too many recent failures
    before the password is checked."""

    retry_after = 0

    def clean(self) -> dict[str, Any]:
        username = str(self.cleaned_data.get("username") or "")
        address = throttle.client_address(self.request)
        if not (username and self.cleaned_data.get("password")):
            return super().clean()  # nothing to check, so nothing to count
        self.retry_after = throttle.attempt(username, address)
        if self.retry_after:
            raise forms.ValidationError(throttle.refusal(self.retry_after), code="throttled")
        cleaned = super().clean()
        throttle.succeeded(username, address)
        return cleaned


def parse_patterns(raw: str) -> list[str]:
    """'fraud-*, iris,,iris ' -> ['fraud-*', 'iris']: trimmed, without empties or repeats, in order."""
    patterns: list[str] = []
    for pattern in (part.strip() for part in raw.split(",")):
        if pattern and pattern not in patterns:
            patterns.append(pattern)
    return patterns


class KeyCreateForm(forms.Form):
    name = forms.CharField(max_length=100, help_text="What will use it, e.g. 'nightly scoring job'.")
    model_patterns = forms.CharField(
        label="Models",
        max_length=1000,
        initial="*",
        help_text="Comma-separated model names or patterns, e.g. fraud-*, iris. * allows every model. "
        "The key reaches only these models, for every action: inference, and with manage the "
        "management API too (other models answer 404 there; it may create only models whose name matches).",
    )
    actions = forms.MultipleChoiceField(
        choices=KeyAction.choices,
        initial=[KeyAction.INFER, KeyAction.READ],
        widget=forms.CheckboxSelectMultiple,
        error_messages={"required": "Choose at least one action."},
    )
    expires_on = forms.DateField(
        label="Expires",
        required=False,
        widget=forms.DateInput(attrs={"type": "date"}, format="%Y-%m-%d"),
        help_text="The key stops working at the end of this day (UTC). Empty: it never expires.",
    )

    future_models = forms.BooleanField(
        required=False,
        label="Also for models not created yet",
        help_text="Without it, each name or pattern (other than *) must match an existing model, "
        "so that a misspelt name is caught now rather than as 404s later.",
    )

    def clean_model_patterns(self) -> list[str]:
        patterns = parse_patterns(self.cleaned_data["model_patterns"])
        if not patterns:
            raise forms.ValidationError("Give at least one model name or pattern (* for every model).")
        return patterns

    def clean_expires_on(self) -> dt.date | None:
        day: dt.date | None = self.cleaned_data["expires_on"]
        if day is not None and day < dt.datetime.now(dt.UTC).date():
            raise forms.ValidationError("Choose today or a later day.")
        return day

    def expires_at(self) -> dt.datetime | None:
        day: dt.date | None = self.cleaned_data["expires_on"]
        if day is None:
            return None
        return dt.datetime.combine(day + dt.timedelta(days=1), dt.time.min, tzinfo=dt.UTC)


class RotateForm(forms.Form):
    grace = forms.ChoiceField(
        label="Old secret keeps working for",
        choices=GRACE_CHOICES,
        error_messages={
            "required": "Choose a grace period.",
            "invalid_choice": "Choose one of the offered grace periods.",
        },
    )

    def grace_period(self) -> dt.timedelta:
        return dt.timedelta(seconds=int(self.cleaned_data["grace"]))
