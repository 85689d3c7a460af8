"""Dashboard forms for starting rollouts. They check input and say what is wrong
next to the field; the rollouts themselves start through `rollouts.services`."""

from __future__ import annotations

import re
from typing import Any

from django import forms
from django.core.validators import RegexValidator

from registry import services as registry
from registry.forms import VersionChoiceField
from registry.models import ModelVersion, RegisteredModel, VersionStatus
from rollouts import services
from rollouts.safety import signature_conflicts

HEADER_NAME = RegexValidator(r"^[A-Za-z0-9-]{1,64}$", "Letters, digits and '-' only, e.g. x-routing-key.")
ARM_NAME = re.compile(r"^[a-z0-9][a-z0-9_-]{0,31}$")


def _numbers(raw: str) -> list[float]:
    """'5, 25,50 100' -> [5.0, 25.0, 50.0, 100.0]."""
    values = []
    for part in re.split(r"[\s,]+", raw.strip()):
        if not part:
            continue
        try:
            values.append(float(part))
        except ValueError:
            raise forms.ValidationError(f"'{part}' is not a number.") from None
    return values


class VersionSelect(forms.Select):
    """A version picker whose versions that cannot take production's traffic are shown, marked and disabled."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.refused: set[str] = set()

    def create_option(self, name: str, value: Any, *args: Any, **kwargs: Any) -> dict[str, Any]:
        option = super().create_option(name, value, *args, **kwargs)
        if str(value) in self.refused:
            option["attrs"]["disabled"] = True
        return option


class RolloutVersionField(VersionChoiceField):
    """A version picker that marks the versions whose signature does not fit production's."""

    widget = VersionSelect

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.conflicts: dict[int, str] = {}

    def label_from_instance(self, obj: Any) -> str:
        if obj.number in self.conflicts:
            return f"v{obj.number}: its signature does not fit production's, it cannot take traffic"
        return super().label_from_instance(obj)


class RolloutForm(forms.Form):
    """Fields every kind shares; `model` is given by the page."""

    routing_header = forms.CharField(
        max_length=64,
        initial="x-routing-key",
        validators=[HEADER_NAME],
        help_text="Requests with the same value of this header always reach the same version; "
        "without it, the same API key does.",
    )

    def __init__(self, *args: Any, model: RegisteredModel, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.model = model
        self.ready = model.versions.filter(status=VersionStatus.READY).order_by("-number")
        # Marked for the user; the refusal itself is the service's (rollouts/safety.py).
        self.conflicts = signature_conflicts(registry.serving_version(model), self.ready)
        for field in self.fields.values():
            if isinstance(field, VersionChoiceField):
                field.queryset = self.ready
                field.error_messages["invalid_choice"] = "Choose a ready version of this model."
                if isinstance(field, RolloutVersionField):
                    field.conflicts = self.conflicts
                if isinstance(field.widget, VersionSelect):
                    field.widget.refused = {str(number) for number in self.conflicts}

    def clean_routing_header(self) -> str:
        return str(self.cleaned_data["routing_header"]).lower()

    def start(self, actor: Any) -> Any:
        raise NotImplementedError


class CanaryForm(RolloutForm):
    version = RolloutVersionField(
        queryset=ModelVersion.objects.none(),
        to_field_name="number",
        empty_label="Choose a version",
        help_text="The new version; it takes a growing share of the traffic while its gates hold.",
    )
    steps = forms.CharField(
        initial="5, 25, 50, 100",
        help_text="The canary's share of traffic at each step, in percent, increasing, ending at 100.",
    )
    step_seconds = forms.IntegerField(min_value=1, initial=600, help_text="Least time at each step, in seconds.")
    analysis_interval_seconds = forms.IntegerField(
        min_value=1, initial=60, help_text="How often the gates are checked, in seconds."
    )
    min_requests = forms.IntegerField(
        min_value=0, initial=100, help_text="Canary requests a step needs before the gates are judged."
    )
    max_error_rate_increase = forms.FloatField(
        min_value=0,
        max_value=1,
        required=False,
        initial=0.01,
        help_text="Roll back when the canary's error rate exceeds the champion's by more than this "
        "(0.01 = one percentage point). Empty: no error gate.",
    )
    max_p95_ratio = forms.FloatField(
        min_value=1,
        required=False,
        initial=1.25,
        help_text="Roll back when the canary's p95 latency exceeds the champion's by this factor. Empty: no gate.",
    )
    min_reward_ratio = forms.FloatField(
        min_value=0,
        required=False,
        help_text="Roll back when the canary's mean reward falls below this share of the champion's "
        "(needs feedback). Empty: no reward gate.",
    )

    field_order = [
        "version",
        "steps",
        "step_seconds",
        "analysis_interval_seconds",
        "min_requests",
        "max_error_rate_increase",
        "max_p95_ratio",
        "min_reward_ratio",
        "routing_header",
    ]

    def clean_steps(self) -> list[float]:
        return _numbers(self.cleaned_data["steps"])  # the rule itself: services.check_steps

    def start(self, actor: Any) -> Any:
        data = self.cleaned_data
        config = {
            "steps": data["steps"],
            "step_seconds": data["step_seconds"],
            "analysis_interval_seconds": data["analysis_interval_seconds"],
            "gates": {
                "min_requests": data["min_requests"],
                "max_error_rate_increase": data["max_error_rate_increase"],
                "max_p95_ratio": data["max_p95_ratio"],
                "min_reward_ratio": data["min_reward_ratio"],
            },
        }
        return services.start_canary(
            self.model, data["version"], actor=actor, config=config, routing_header=data["routing_header"]
        )


class ExperimentForm(RolloutForm):
    arms = forms.CharField(
        widget=forms.Textarea(attrs={"rows": 3}),
        help_text="One arm per line: name, version number, weight. For example “control 3 50” and "
        "“treatment 4 50”. The first arm is the control unless you name another below.",
    )
    control = forms.CharField(required=False, max_length=32, help_text="The arm the others are compared with.")
    metric = forms.ChoiceField(
        choices=[("binary", "Conversion (feedback true/false)"), ("numeric", "Numeric reward")],
        help_text="What clients send to /v2/models/<name>/feedback for each request.",
    )
    minimum_effect = forms.FloatField(
        required=False,
        help_text="The smallest difference worth detecting (e.g. 0.02 for two points of conversion); "
        "the page then predicts the samples needed.",
    )
    alpha = forms.FloatField(initial=0.05, help_text="Significance level: the false-positive rate accepted.")

    field_order = ["arms", "control", "metric", "minimum_effect", "alpha", "routing_header"]

    def clean_arms(self) -> list[tuple[str, ModelVersion, float]]:
        arms: list[tuple[str, ModelVersion, float]] = []
        for number, line in enumerate(self.cleaned_data["arms"].splitlines(), start=1):
            parts = line.replace(",", " ").split()
            if not parts:
                continue
            if len(parts) != 3:
                raise forms.ValidationError(f"Line {number}: write “name version weight”, e.g. “treatment 4 50”.")
            name, version_text, weight_text = parts
            if not ARM_NAME.match(name):
                raise forms.ValidationError(
                    f"Line {number}: '{name}' is not an arm name (lowercase letters, digits, '-', '_')."
                )
            version = self.ready.filter(number=int(version_text)).first() if version_text.isdigit() else None
            if version is None:
                raise forms.ValidationError(f"Line {number}: '{version_text}' is not a ready version of this model.")
            try:
                weight = float(weight_text)
            except ValueError:
                raise forms.ValidationError(f"Line {number}: the weight '{weight_text}' is not a number.") from None
            arms.append((name, version, weight))
        return arms  # the rules of arms, weights and the control: services.check_arms

    def start(self, actor: Any) -> Any:
        data = self.cleaned_data
        return services.start_experiment(
            self.model,
            data["arms"],
            actor=actor,
            control=data["control"] or None,
            metric=data["metric"],
            minimum_effect=data["minimum_effect"],
            alpha=data["alpha"],
            routing_header=data["routing_header"],
        )


class ShadowForm(RolloutForm):
    version = RolloutVersionField(
        queryset=ModelVersion.objects.none(),
        to_field_name="number",
        empty_label="Choose a version",
        help_text="It receives a copy of the requests after the champion answered; clients never see its answers.",
    )
    fraction = forms.FloatField(initial=1.0, help_text="Share of requests copied, from above 0 to 1 (1 = all of them).")

    field_order = ["version", "fraction", "routing_header"]

    def start(self, actor: Any) -> Any:
        data = self.cleaned_data
        return services.start_shadow(
            self.model, data["version"], actor=actor, fraction=data["fraction"], routing_header=data["routing_header"]
        )


FORMS: dict[str, type[RolloutForm]] = {"canary": CanaryForm, "experiment": ExperimentForm, "shadow": ShadowForm}
