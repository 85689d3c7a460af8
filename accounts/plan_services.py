"""Plans: every path that creates, changes or deletes one goes through here (the admin and
`/api/plans/`), is audited, and tells the web processes to re-read the keys it governs."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from django.db import transaction
from django.db.models import Q, QuerySet

from accounts.models import ApiKey, Plan
from accounts.services import ApiKeyError, keys_changed
from audit.services import record

PLAN_FIELDS = ("name", "requests_per_window", "window_seconds", "burst", "daily_quota", "priority", "is_default")


class PlanError(ApiKeyError):
    """A plan change the service refuses, with a message for the user."""


def plan_snapshot(plan: Plan) -> dict[str, Any]:
    return {name: getattr(plan, name) for name in PLAN_FIELDS}


def keys_using(plans: Iterable[Plan], *, planless: bool) -> QuerySet[ApiKey]:
    """Keys whose limits come from `plans`, and from the default plan when `planless`."""
    condition = Q(plan__in=list(plans))
    if planless:
        condition |= Q(plan__isnull=True)
    return ApiKey.objects.filter(condition)


def _take_default(plan: Plan) -> list[Plan]:
    """Make room for `plan` as the default: the previous default stops being it (one at a time,
    `accounts_plan_one_default`). Returns the plans that lost the flag."""
    previous = list(Plan.objects.select_for_update().filter(is_default=True).exclude(pk=plan.pk))
    Plan.objects.filter(pk__in=[p.pk for p in previous]).update(is_default=False)
    return previous


def save_plan(plan: Plan, *, actor: Any, changed: Iterable[str] | None = None) -> Plan:
    """Create `plan` (no pk yet) or save the changes already set on it (`changed`: the fields
    that changed; None: any may have). Making a plan the default takes the flag from the
    previous default plan, so that "which plan is the default" is one atomic change."""
    changed = set(PLAN_FIELDS if changed is None else changed)
    creating = plan.pk is None
    with transaction.atomic():
        before = None if creating else plan_snapshot(Plan.objects.select_for_update().get(pk=plan.pk))
        was_default = bool(before and before["is_default"])
        previous = _take_default(plan) if plan.is_default else []
        plan.save()
        record(actor, "plan.created" if creating else "plan.changed", plan, before=before, after=plan_snapshot(plan))
        for other in previous:
            record(actor, "plan.changed", other, before={"is_default": True}, after={"is_default": False})
        # Keys without a plan follow the default one, so they change too when the default
        # plan changes, or when a plan becomes or stops being the default.
        planless = plan.is_default or was_default or "is_default" in changed
        keys_changed(keys_using([plan, *previous], planless=planless).values_list("public_id", flat=True))
    return plan


def delete_plans(plans: Iterable[Plan], *, actor: Any) -> None:
    """Delete plans that no key uses; keys protect their plan (PlanError names how many use it)."""
    plans = list(plans)
    with transaction.atomic():
        for plan in plans:
            used = ApiKey.objects.filter(plan=plan).count()
            if used:
                raise PlanError(f"plan '{plan.name}' is the plan of {used} key(s); move them to another plan first")
        for plan in plans:
            record(actor, "plan.deleted", plan, before=plan_snapshot(plan))
        Plan.objects.filter(pk__in=[p.pk for p in plans]).delete()
        # Only keys without a plan can be affected: those that followed a deleted default plan.
        planless = any(plan.is_default for plan in plans)
        keys_changed(keys_using([], planless=planless).values_list("public_id", flat=True))
