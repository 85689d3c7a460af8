"""The model page's fallback form: the chain in its usual order (cached answer, a fallback
version, human review). The API takes any order and several fallback versions
(registry/fallback_policy.py); `registry/fallback_services.set_fallback` checks both."""

from __future__ import annotations

import re
from typing import Any

from django import forms

from registry.fallback_policy import (
    DEFAULT_CACHE_TTL_SECONDS,
    DEFAULT_RESERVE_MS,
    HUMAN_REVIEW_STATUSES,
    MAX_CACHE_TTL_SECONDS,
    MAX_RESERVE_MS,
    TRIGGERS,
    FallbackPolicy,
)

TRIGGER_LABELS = {
    "timeout": "Timeout: no answer within the request's deadline",
    "model_error": "Model error: the model could not run the input, or the version could not load",
    "overload": "Overload: the queue was full, or the worker's inference memory was taken",
}
VERSION_REFERENCE = re.compile(r"^(?:(?P<model>[a-z0-9][a-z0-9_-]{0,63}):)?v?(?P<number>[0-9]{1,9})$")


class FallbackForm(forms.Form):
    on = forms.MultipleChoiceField(
        choices=[(trigger, TRIGGER_LABELS[trigger]) for trigger in TRIGGERS],
        initial=list(TRIGGERS),
        widget=forms.CheckboxSelectMultiple,
        label="Fall back on",
        error_messages={"required": "Choose at least one failure to fall back on."},
    )
    cache = forms.BooleanField(
        required=False,
        initial=True,
        label="1. The last good answer to the same input",
        help_text="Every answer the model gives is kept for this; the same input and requested outputs get it back.",
    )
    cache_ttl_seconds = forms.IntegerField(
        min_value=1,
        max_value=MAX_CACHE_TTL_SECONDS,
        initial=DEFAULT_CACHE_TTL_SECONDS,
        label="Keep answers for (seconds)",
    )
    version = forms.CharField(
        required=False,
        max_length=80,
        label="2. A fallback version",
        help_text="A smaller or older version that takes the same inputs: its number (2), or another model's "
        "as name:number (fraud-small:1). Empty: none.",
    )
    human_review = forms.BooleanField(
        required=False,
        initial=True,
        label="3. Human review",
        help_text="Answers with no outputs and parameters.human_review_required: the client routes it to a person.",
    )
    human_review_status = forms.TypedChoiceField(
        choices=[(status, str(status)) for status in HUMAN_REVIEW_STATUSES],
        coerce=int,
        initial=200,
        label="Human review's HTTP status",
    )
    reserve_ms = forms.IntegerField(
        min_value=0,
        max_value=MAX_RESERVE_MS,
        initial=DEFAULT_RESERVE_MS,
        label="Reserve for the chain (ms)",
        help_text="Held back from the model's deadline when timeouts fall back, at most half of it.",
    )

    def __init__(self, *args: Any, policy: FallbackPolicy | None = None, **kwargs: Any) -> None:
        if policy is not None and not args and "initial" not in kwargs:
            kwargs["initial"] = initial_of(policy)
        super().__init__(*args, **kwargs)

    def clean_version(self) -> tuple[str | None, int] | None:
        raw = self.cleaned_data["version"].strip()
        if not raw:
            return None
        found = VERSION_REFERENCE.match(raw)
        if found is None:
            raise forms.ValidationError("Write a version number (2) or another model's as name:number (fraud-small:1).")
        return found["model"], int(found["number"])

    def clean(self) -> dict[str, Any]:
        data = super().clean() or {}
        if not (data.get("cache") or data.get("version") or data.get("human_review")):
            raise forms.ValidationError("Choose at least one fallback, or remove the fallback instead.")
        return data

    def as_policy(self) -> dict[str, Any]:
        data = self.cleaned_data
        chain: list[dict[str, Any]] = []
        if data["cache"]:
            chain.append({"kind": "cache", "ttl_seconds": data["cache_ttl_seconds"]})
        if data["version"] is not None:
            model, number = data["version"]
            step: dict[str, Any] = {"kind": "version", "version": number}
            if model is not None:
                step["model"] = model
            chain.append(step)
        if data["human_review"]:
            chain.append({"kind": "human_review", "status": data["human_review_status"]})
        return {"on": list(data["on"]), "chain": chain, "reserve_ms": data["reserve_ms"]}


def initial_of(policy: FallbackPolicy) -> dict[str, Any]:
    kinds = {step.kind: step for step in policy.chain}
    version = next((step for step in policy.chain if step.kind == "version"), None)
    return {
        "on": policy.triggers,
        "cache": "cache" in kinds,
        "cache_ttl_seconds": kinds["cache"].ttl_seconds if "cache" in kinds else DEFAULT_CACHE_TTL_SECONDS,
        "version": ""
        if version is None
        else (f"{version.model}:{version.version}" if version.model else version.version),
        "human_review": "human_review" in kinds,
        "human_review_status": kinds["human_review"].status if "human_review" in kinds else 200,
        "reserve_ms": policy.reserve_ms,
    }


def fits_the_form(policy: FallbackPolicy) -> bool:
    """Whether the form can show this policy as it is (the API allows orders and lengths it cannot)."""
    order = [step.kind for step in policy.chain]
    return order == sorted(order, key=["cache", "version", "human_review"].index) and order.count("version") <= 1
