"""Serializers for the rollouts API.

They validate and present; starting a rollout goes through `rollouts.services`.
Create serializers refuse fields they do not know (a typo such as
`step_second` is an error, not a silently ignored setting), and fields that
belong to another kind of rollout.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from django.core.validators import RegexValidator
from drf_spectacular.utils import extend_schema_field, inline_serializer
from rest_framework import serializers

from registry.models import ModelVersion, RegisteredModel
from rollouts import services
from rollouts.models import Arm, Rollout, RolloutKind
from rollouts.reports import live_report

HEADER_NAME = RegexValidator(
    r"^[A-Za-z0-9-]{1,64}$", "A header name: letters, digits and '-' only, e.g. x-routing-key."
)
ARM_NAME = RegexValidator(r"^[a-z0-9][a-z0-9_-]{0,31}$", "Lowercase letters, digits, '-' and '_'; at most 32.")


# --- Reading ------------------------------------------------------------------------------------------------------


class ArmSerializer(serializers.ModelSerializer):
    version = serializers.IntegerField(source="version.number", read_only=True, help_text="The version's number.")
    weight = serializers.FloatField(read_only=True, help_text="Share of the traffic, in percent.")

    class Meta:
        model = Arm
        fields = ["name", "version", "weight", "is_control", "reward_n", "reward_sum", "reward_sum_sq", "p_value"]
        read_only_fields = fields


# A plain serializer cannot declare a field named `errors` (the attribute holds its validation errors).
FIGURES = inline_serializer(
    "ArmFigures",
    fields={
        "requests": serializers.IntegerField(),
        "per_second": serializers.FloatField(),
        "error_rate": serializers.FloatField(allow_null=True, help_text="Share of answers outside 2xx."),
        "p50": serializers.FloatField(allow_null=True),
        "p95": serializers.FloatField(allow_null=True),
        "p99": serializers.FloatField(allow_null=True),
        "errors": serializers.DictField(child=serializers.IntegerField(), help_text="Status code → requests."),
        "batch_sizes": serializers.DictField(child=serializers.IntegerField(), help_text="Batch size → requests."),
        "mean_queue_ms": serializers.FloatField(allow_null=True),
        "mean_compute_ms": serializers.FloatField(allow_null=True),
        "agreement": serializers.FloatField(
            allow_null=True, help_text="A shadow: share of rows whose top class matched the champion's."
        ),
        "mean_max_difference": serializers.FloatField(
            allow_null=True, help_text="A shadow: mean over answers of the largest |champion - shadow|."
        ),
    },
    help_text="The dashboard's figures for the arm's requests; latencies in milliseconds, end to end in the gateway.",
)


class RewardSerializer(serializers.Serializer):
    n = serializers.IntegerField(help_text="Feedback received.")
    mean = serializers.FloatField(allow_null=True, help_text="Mean reward (conversion rate for true/false).")
    interval = serializers.ListField(
        child=serializers.FloatField(), allow_null=True, help_text="95 % confidence interval of the mean."
    )


class ComparisonSerializer(serializers.Serializer):
    difference = serializers.FloatField(allow_null=True, help_text="This arm's mean minus the control's.")
    interval = serializers.ListField(
        child=serializers.FloatField(), allow_null=True, help_text="95 % confidence interval of the difference."
    )
    p_value = serializers.FloatField(
        help_text="Always-valid p-value (mSPRT): stays valid however often it is looked at."
    )
    significant = serializers.BooleanField()
    samples_needed = serializers.IntegerField(
        allow_null=True, help_text="More samples per arm for 80 % power at the minimum effect; null without one."
    )
    samples_predicted = serializers.IntegerField(
        allow_null=True, help_text="Samples per arm at which the test reaches 80 % power."
    )


class ArmReportSerializer(serializers.Serializer):
    name = serializers.CharField()
    version = serializers.IntegerField()
    weight = serializers.FloatField()
    is_control = serializers.BooleanField()
    figures = FIGURES
    reward = RewardSerializer(allow_null=True, help_text="Experiments only.")
    comparison = ComparisonSerializer(allow_null=True, help_text="Experiments only; null for the control.")


class GateSerializer(serializers.Serializer):
    name = serializers.CharField()
    passed = serializers.BooleanField(allow_null=True, help_text="null: not enough data yet.")
    value = serializers.FloatField(allow_null=True)
    threshold = serializers.FloatField(allow_null=True)
    detail = serializers.CharField()


class AnalysisSerializer(serializers.Serializer):
    action = serializers.ChoiceField(
        choices=["wait", "advance", "promote", "rollback"], help_text="What the analysis decides (or decided)."
    )
    at = serializers.DateTimeField()
    gates = GateSerializer(many=True)
    figures = serializers.JSONField(help_text="The canary's and the champion's figures the gates used.")


class AgreementSerializer(serializers.Serializer):
    copies = serializers.IntegerField(help_text="Requests copied to the shadow since the rollout began.")
    agreement = serializers.FloatField(
        allow_null=True, help_text="Share of rows whose top class matched the champion's."
    )
    mean_max_difference = serializers.FloatField(
        allow_null=True, help_text="Mean over answers of the largest absolute difference from the champion's."
    )


class ReportSerializer(serializers.Serializer):
    arms = ArmReportSerializer(many=True)
    analysis = AnalysisSerializer(allow_null=True, help_text="Canaries: the gates against their thresholds.")
    agreement = AgreementSerializer(
        allow_null=True,
        help_text="Shadows: how the shadow's answers compared with the champion's.",
    )


class RolloutSerializer(serializers.ModelSerializer):
    model: serializers.SlugRelatedField[RegisteredModel] = serializers.SlugRelatedField(
        slug_field="name", read_only=True
    )
    created_by: serializers.SlugRelatedField[Any] = serializers.SlugRelatedField(slug_field="username", read_only=True)
    arms = ArmSerializer(many=True, read_only=True)
    last_analysis = AnalysisSerializer(read_only=True, allow_null=True)
    report = serializers.SerializerMethodField(
        help_text="Live figures per arm, the gates, rewards and comparisons; null in lists."
    )
    outcome = serializers.JSONField(
        read_only=True,
        help_text="Once ended: `reason`, and `gate` with its `figures` for a rollback, "
        "or `winner` and `version` for a promotion.",
    )

    class Meta:
        model = Rollout
        fields = [
            "id",
            "model",
            "kind",
            "status",
            "routing_header",
            "config",
            "step",
            "step_started_at",
            "arms",
            "last_analysis",
            "outcome",
            "created_by",
            "started_at",
            "ended_at",
            "created_at",
            "updated_at",
            "report",
        ]
        read_only_fields = fields

    @extend_schema_field(ReportSerializer(allow_null=True))
    def get_report(self, obj: Rollout) -> dict[str, Any] | None:
        # Live figures cost a few Redis and database reads: one rollout at a time, not in lists.
        return live_report(obj) if self.context.get("report") else None


# --- Starting -----------------------------------------------------------------------------------------------------


class StrictSerializer(serializers.Serializer):
    """Refuses keys it does not know, nested serializers included, saying which it takes."""

    def unexpected(self, key: str, writable: list[str]) -> str:
        return f"Unknown field. Fields you can send here: {', '.join(writable)}."

    def to_internal_value(self, data: Any) -> Any:
        if isinstance(data, Mapping):
            writable = sorted(name for name, field in self.fields.items() if not field.read_only)
            errors = {key: [self.unexpected(key, writable)] for key in data if key not in writable}
            if errors:
                raise serializers.ValidationError(errors)
        return super().to_internal_value(data)


def version_of(model: RegisteredModel, number: int, field: str) -> ModelVersion:
    version = ModelVersion.objects.filter(model=model, number=number).first()
    if version is None:
        raise serializers.ValidationError({field: [f"version {number} does not exist on model '{model.name}'."]})
    return version


class RolloutStartSerializer(StrictSerializer):
    """Fields every kind shares. Each kind's subclass starts it in `create` (`save(actor=...)`)."""

    kind = serializers.ChoiceField(choices=RolloutKind.choices)
    model = serializers.SlugRelatedField(
        slug_field="name", queryset=RegisteredModel.objects.all(), help_text="The model's name."
    )
    routing_header = serializers.CharField(
        required=False,
        validators=[HEADER_NAME],
        help_text="Request header whose value pins a client to an arm (default `x-routing-key`); "
        "without it, the API key does.",
    )

    def unexpected(self, key: str, writable: list[str]) -> str:
        for kind, serializer in START_SERIALIZERS.items():
            if key in serializer().fields:
                return f"'{key}' is a setting of a {kind} rollout, not of this one. Fields: {', '.join(writable)}."
        return super().unexpected(key, writable)

    def validate_routing_header(self, value: str) -> str:
        return value.lower()

    def options(self, data: dict[str, Any]) -> dict[str, Any]:
        return {"routing_header": data["routing_header"]} if "routing_header" in data else {}


class GatesSerializer(StrictSerializer):
    min_requests = serializers.IntegerField(
        min_value=0, required=False, help_text="Canary requests a step needs before any gate is judged."
    )
    max_error_rate_increase = serializers.FloatField(
        min_value=0,
        max_value=1,
        required=False,
        allow_null=True,
        help_text="Largest canary error rate minus champion error rate (0.01 = one point); null turns it off.",
    )
    max_p95_ratio = serializers.FloatField(
        min_value=1, required=False, allow_null=True, help_text="Largest canary p95 / champion p95; null turns it off."
    )
    min_reward_ratio = serializers.FloatField(
        min_value=0,
        required=False,
        allow_null=True,
        help_text="Smallest canary mean reward / champion mean reward; null (the default) turns it off.",
    )


class CanaryStartSerializer(RolloutStartSerializer):
    version = serializers.IntegerField(min_value=1, help_text="The ready version to roll out.")
    steps = serializers.ListField(
        child=serializers.FloatField(min_value=0, max_value=100),
        min_length=1,
        max_length=20,
        required=False,
        help_text="Canary traffic percentages, increasing, ending at 100 (default [5, 25, 50, 100]).",
    )
    step_seconds = serializers.IntegerField(min_value=1, required=False, help_text="Least time per step.")
    analysis_interval_seconds = serializers.IntegerField(
        min_value=1, required=False, help_text="How often the gates are analysed."
    )
    gates = GatesSerializer(required=False)

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        attrs["version"] = version_of(attrs["model"], attrs["version"], "version")
        return attrs

    def create(self, validated_data: dict[str, Any]) -> Rollout:
        data = validated_data
        config = {k: data[k] for k in ("steps", "step_seconds", "analysis_interval_seconds", "gates") if k in data}
        return services.start_canary(
            data["model"], data["version"], actor=data["actor"], config=config, **self.options(data)
        )


class ExperimentArmSerializer(StrictSerializer):
    name = serializers.CharField(validators=[ARM_NAME])
    version = serializers.IntegerField(min_value=1)
    weight = serializers.FloatField(min_value=0, help_text="Relative share; the weights are scaled to 100 %.")


class ExperimentStartSerializer(RolloutStartSerializer):
    arms = ExperimentArmSerializer(many=True, help_text="Two or more arms, each a ready version with a weight.")
    control = serializers.CharField(required=False, help_text="The arm the others are compared with (the first).")
    metric = serializers.ChoiceField(
        choices=[("binary", "binary (conversion)"), ("numeric", "numeric (reward)")], default="binary"
    )
    minimum_effect = serializers.FloatField(
        required=False,
        allow_null=True,
        help_text="The smallest difference worth detecting (e.g. 0.02); sets the predicted sample size.",
    )
    alpha = serializers.FloatField(default=0.05, help_text="Significance level, between 0 and 0.5.")

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        model = attrs["model"]
        attrs["arms"] = [{**arm, "version": version_of(model, arm["version"], "arms")} for arm in attrs["arms"]]
        return attrs

    def create(self, validated_data: dict[str, Any]) -> Rollout:
        data = validated_data
        return services.start_experiment(
            data["model"],
            [(arm["name"], arm["version"], arm["weight"]) for arm in data["arms"]],
            actor=data["actor"],
            control=data.get("control"),
            metric=data["metric"],
            minimum_effect=data.get("minimum_effect"),
            alpha=data["alpha"],
            **self.options(data),
        )


class ShadowStartSerializer(RolloutStartSerializer):
    version = serializers.IntegerField(min_value=1, help_text="The ready version that gets a copy of the traffic.")
    fraction = serializers.FloatField(
        default=1.0, help_text="Share of requests mirrored, in (0, 1]; sticky per routing key."
    )

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        attrs["version"] = version_of(attrs["model"], attrs["version"], "version")
        return attrs

    def create(self, validated_data: dict[str, Any]) -> Rollout:
        data = validated_data
        return services.start_shadow(
            data["model"], data["version"], actor=data["actor"], fraction=data["fraction"], **self.options(data)
        )


START_SERIALIZERS: dict[str, type[RolloutStartSerializer]] = {
    RolloutKind.CANARY: CanaryStartSerializer,
    RolloutKind.EXPERIMENT: ExperimentStartSerializer,
    RolloutKind.SHADOW: ShadowStartSerializer,
}


# --- Actions ------------------------------------------------------------------------------------------------------


class PromoteSerializer(StrictSerializer):
    arm = serializers.CharField(
        required=False,
        help_text="The arm whose version becomes `production`: required for an experiment "
        "(its winner); a canary or shadow promotes its new version.",
    )


class AbortSerializer(StrictSerializer):
    reason = serializers.CharField(required=False, max_length=500, help_text="Recorded in the outcome.")
