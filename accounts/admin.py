"""Plans and every user's keys, for admins.

Keys are created by their users on the keys page, so there is no "add" here,
and never a delete (revoke instead: a revocation is audited and reaches the
gateways at once). The change form edits only the plan and the four limit
overrides, through `services.set_limits`, so each change is audited and the
gateways drop their cached copy of the key.
"""

from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import admin, messages
from django.contrib.auth import get_user_model
from django.contrib.auth.admin import UserAdmin
from django.db.models import Q, QuerySet
from django.http import HttpRequest
from django.utils import timezone

from accounts import plan_services, services
from accounts.models import ApiKey, Plan

LIMIT_FIELDS = ("requests_per_window", "window_seconds", "burst", "daily_quota")


@admin.register(Plan)
class PlanAdmin(admin.ModelAdmin):
    list_display = ("name", "priority", "requests_per_window", "window_seconds", "burst", "daily_quota", "is_default")
    list_filter = ("priority",)
    search_fields = ("name",)
    readonly_fields = ("created_at", "updated_at")

    def save_model(self, request: HttpRequest, obj: Plan, form: Any, change: bool) -> None:
        # Not obj.save(): the service audits the change and tells the gateways.
        plan_services.save_plan(obj, actor=request.user, changed=form.changed_data if change else None)

    def delete_model(self, request: HttpRequest, obj: Plan) -> None:
        self.delete_queryset(request, Plan.objects.filter(pk=obj.pk))

    def delete_queryset(self, request: HttpRequest, queryset: QuerySet[Plan]) -> None:
        # The admin's confirmation page already refuses plans that keys protect.
        plan_services.delete_plans(queryset, actor=request.user)


class StatusFilter(admin.SimpleListFilter):
    title = "status"
    parameter_name = "status"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        return [
            ("active", "active"),
            ("owner_deactivated", "owner deactivated"),
            ("expired", "expired"),
            ("revoked", "revoked"),
        ]

    def queryset(self, request: HttpRequest, queryset: QuerySet[Any]) -> QuerySet[Any]:
        now = timezone.now()
        unexpired = Q(expires_at__isnull=True) | Q(expires_at__gt=now)
        if self.value() == "active":
            return queryset.filter(unexpired, revoked_at__isnull=True, user__is_active=True)
        if self.value() == "owner_deactivated":
            return queryset.filter(unexpired, revoked_at__isnull=True, user__is_active=False)
        if self.value() == "expired":
            return queryset.filter(revoked_at__isnull=True, expires_at__lte=now)
        if self.value() == "revoked":
            return queryset.filter(revoked_at__isnull=False)
        return queryset


def _limit_field(label: str) -> forms.IntegerField:
    # services.set_limits refuses anything below 1; the form says so next to the field first.
    return forms.IntegerField(label=label, required=False, min_value=1, help_text="Empty: the plan's value.")


class ApiKeyLimitsForm(forms.ModelForm):
    """The plan and the per-key overrides."""

    requests_per_window = _limit_field("Requests per window")
    window_seconds = _limit_field("Window (seconds)")
    burst = _limit_field("Burst")
    daily_quota = _limit_field("Daily quota")

    class Meta:
        model = ApiKey
        fields = ("plan", *LIMIT_FIELDS)


@admin.register(ApiKey)
class ApiKeyAdmin(admin.ModelAdmin):
    form = ApiKeyLimitsForm
    list_display = ("name", "user", "prefix", "shown_status", "plan", "last_used_at", "expires_at", "created_at")
    list_filter = (StatusFilter, "plan", "environment", "created_at")
    list_select_related = ("user", "plan")
    search_fields = ("name", "public_id", "user__username", "user__email")
    actions = ["revoke_selected"]
    # Never the digests: they are not secret enough to show and useless to an admin.
    fieldsets = [
        (None, {"fields": ("user", "name", "prefix", "shown_status", "model_patterns", "actions")}),
        ("Dates", {"fields": ("created_at", "expires_at", "last_used_at", "revoked_at", "previous_valid_until")}),
        ("Limits", {"fields": ("plan", *LIMIT_FIELDS), "description": "Changes are audited as key.limits_changed."}),
    ]
    readonly_fields = (
        "user",
        "name",
        "prefix",
        "shown_status",
        "model_patterns",
        "actions",
        "created_at",
        "expires_at",
        "last_used_at",
        "revoked_at",
        "previous_valid_until",
    )

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    @admin.display(description="status")
    def shown_status(self, obj: ApiKey) -> str:
        return obj.shown_status

    def save_model(self, request: HttpRequest, obj: ApiKey, form: Any, change: bool) -> None:
        # Not obj.save(): the change goes through the service, which audits it and invalidates caches.
        if not form.has_changed():
            return
        services.set_limits(
            obj,
            actor=request.user,
            plan=form.cleaned_data["plan"],
            **{name: form.cleaned_data[name] for name in LIMIT_FIELDS},
        )

    @admin.action(description="Revoke selected keys", permissions=["change"])
    def revoke_selected(self, request: HttpRequest, queryset: QuerySet[ApiKey]) -> None:
        revoked = 0
        for key in queryset.filter(revoked_at__isnull=True):
            services.revoke_key(key, actor=request.user)
            revoked += 1
        skipped = queryset.count() - revoked
        note = f" ({skipped} already revoked)" if skipped else ""
        self.message_user(request, f"Revoked {revoked} key{'s' if revoked != 1 else ''}{note}.", messages.SUCCESS)


class AuditedUserAdmin(UserAdmin):
    """Django's user admin, naming the admin in the audit entries of a user deactivated,
    reactivated or deleted here (accounts/signals.py writes them and stops the user's keys)."""

    def save_model(self, request: HttpRequest, obj: Any, form: Any, change: bool) -> None:
        with services.acting_as(request.user):
            super().save_model(request, obj, form, change)

    def delete_model(self, request: HttpRequest, obj: Any) -> None:
        with services.acting_as(request.user):
            super().delete_model(request, obj)

    def delete_queryset(self, request: HttpRequest, queryset: QuerySet[Any]) -> None:
        with services.acting_as(request.user):
            super().delete_queryset(request, queryset)


admin.site.unregister(get_user_model())
admin.site.register(get_user_model(), AuditedUserAdmin)
