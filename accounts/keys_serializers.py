"""Serializers of `/api/keys/` and `/api/plans/`. They check the shape of the input; the rules
(what a key may hold, who may rotate what, which plan is the default) are the services'."""

from __future__ import annotations

import datetime as dt
from typing import Any

from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from accounts import services
from accounts.models import ApiKey, KeyAction, Plan


def refuse_unknown_fields(serializer: serializers.Serializer, data: Any) -> None:
    """A typo is an error rather than an ignored setting."""
    if not hasattr(data, "keys"):
        return
    writable = sorted(name for name, field in serializer.fields.items() if not field.read_only)
    unknown = {
        key: [f"Unknown field. Fields you can send here: {', '.join(writable)}."] for key in data if key not in writable
    }
    if unknown:
        raise serializers.ValidationError(unknown)


class StrictSerializer(serializers.Serializer):
    def to_internal_value(self, data: Any) -> Any:
        refuse_unknown_fields(self, data)
        return super().to_internal_value(data)


class LimitsSerializer(serializers.Serializer):
    """The limits a key works under now: its overrides, else its plan's."""

    requests_per_window = serializers.IntegerField()
    window_seconds = serializers.IntegerField()
    burst = serializers.IntegerField()
    daily_quota = serializers.IntegerField(allow_null=True)


class ApiKeySerializer(serializers.ModelSerializer):
    """A key as its owner (or an admin) sees it; never its secret or digest."""

    id = serializers.CharField(source="public_id", read_only=True, help_text="The key's public id, in its prefix.")
    owner = serializers.CharField(source="user.username", read_only=True)
    status = serializers.CharField(source="shown_status", read_only=True)
    plan: serializers.SlugRelatedField[Plan] = serializers.SlugRelatedField(
        slug_field="name", read_only=True, allow_null=True
    )
    limits = serializers.SerializerMethodField()

    class Meta:
        model = ApiKey
        fields = [
            "id",
            "name",
            "prefix",
            "owner",
            "model_patterns",
            "actions",
            "status",
            "expires_at",
            "revoked_at",
            "previous_valid_until",
            "last_used_at",
            "plan",
            "requests_per_window",
            "window_seconds",
            "burst",
            "daily_quota",
            "limits",
            "created_at",
            "updated_at",
        ]
        read_only_fields = fields

    @extend_schema_field(LimitsSerializer)
    def get_limits(self, key: ApiKey) -> dict[str, Any]:
        # The default plan is read once per response, not once per key.
        if "default_plan" not in self.context:
            self.context["default_plan"] = services.default_plan()
        policy = services.effective_policy(key, key.plan or self.context["default_plan"])
        return {
            "requests_per_window": policy.limit,
            "window_seconds": policy.window_seconds,
            "burst": policy.burst,
            "daily_quota": policy.daily_quota,
        }


class ApiKeyWithSecretSerializer(ApiKeySerializer):
    """The answer to a create or a rotate: the only time the secret is sent."""

    secret = serializers.SerializerMethodField(help_text="The full key. Shown once: store it now.")

    class Meta(ApiKeySerializer.Meta):
        fields = [*ApiKeySerializer.Meta.fields, "secret"]
        read_only_fields = fields

    def get_secret(self, key: ApiKey) -> str:
        return str(self.context["secret"])


class KeyCreateSerializer(StrictSerializer):
    name = serializers.CharField(max_length=100, help_text="What will use it, e.g. 'nightly scoring job'.")
    model_patterns = serializers.ListField(
        child=serializers.CharField(max_length=200),
        default=["*"],
        max_length=100,
        help_text="Model names or glob patterns, e.g. ['fraud-*']; ['*'] (the default) reaches every model.",
    )
    actions = serializers.ListField(
        child=serializers.ChoiceField(choices=KeyAction.values),
        default=[KeyAction.INFER.value, KeyAction.READ.value],
        help_text="Any of infer, read, manage (default: infer and read).",
    )
    expires_at = serializers.DateTimeField(required=False, allow_null=True, help_text="Empty: never expires.")
    future_models = serializers.BooleanField(
        default=False,
        help_text="Accept model patterns that match no model yet (a key for models to come); otherwise each pattern "
        "but '*' must match a registered model.",
    )


class KeyRotateSerializer(StrictSerializer):
    grace_seconds = serializers.IntegerField(
        min_value=0,
        max_value=30 * 86400,
        required=False,
        help_text="How long the old secret keeps working (default TURNOUT_KEY_ROTATION_GRACE_HOURS; 0: stops now).",
    )

    def grace(self) -> dt.timedelta | None:
        seconds = self.validated_data.get("grace_seconds")
        return None if seconds is None else dt.timedelta(seconds=seconds)


LIMIT_FIELDS = ("requests_per_window", "window_seconds", "burst", "daily_quota")
# PostgreSQL's `integer` behind the PositiveIntegerFields; null clears the override.
LIMIT: dict[str, Any] = {"min_value": 1, "max_value": 2_147_483_647, "required": False, "allow_null": True}


class KeyLimitsSerializer(StrictSerializer):
    """An admin's change of a key's plan and overrides; fields left out keep their value, null
    clears an override (the plan's value applies)."""

    plan = serializers.SlugRelatedField(
        slug_field="name", queryset=Plan.objects.all(), required=False, allow_null=True, help_text="A plan's name."
    )
    requests_per_window = serializers.IntegerField(
        min_value=1, max_value=2_147_483_647, required=False, allow_null=True
    )
    window_seconds = serializers.IntegerField(min_value=1, max_value=2_147_483_647, required=False, allow_null=True)
    burst = serializers.IntegerField(min_value=1, max_value=2_147_483_647, required=False, allow_null=True)
    daily_quota = serializers.IntegerField(min_value=1, max_value=2_147_483_647, required=False, allow_null=True)


class PlanSerializer(serializers.ModelSerializer):
    keys = serializers.IntegerField(source="key_count", read_only=True, help_text="Keys on this plan.")

    class Meta:
        model = Plan
        fields = [
            "name",
            "requests_per_window",
            "window_seconds",
            "burst",
            "daily_quota",
            "priority",
            "is_default",
            "keys",
            "created_at",
            "updated_at",
        ]
        read_only_fields = ["keys", "created_at", "updated_at"]
        # Making a plan the default moves the flag from the previous one (plan_services.save_plan),
        # so the one-default constraint is not a reason to refuse here.
        validators: list[Any] = []
        extra_kwargs: dict[str, Any] = {"is_default": {"validators": []}}

    def to_internal_value(self, data: Any) -> Any:
        refuse_unknown_fields(self, data)
        return super().to_internal_value(data)
