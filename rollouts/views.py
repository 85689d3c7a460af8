"""Rollout pages: start one from a model, watch it live, steer it, and the history.

Each view returns the full page or, for htmx, its named partial; every change
goes through `rollouts.services`, which audits it.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import redis
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.paginator import Paginator
from django.db import DatabaseError
from django.db.models import QuerySet
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseNotAllowed
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.utils import timezone
from django.views.decorators.http import require_GET, require_http_methods

from audit.models import AuditEntry
from controlplane.htmx import HtmxHttpRequest
from controlplane.htmx import redirect as _redirect
from controlplane.htmx import sentence as _sentence
from controlplane.htmx import wants_partial as _wants_partial
from observability import queries
from registry import services as registry
from registry.models import RegisteredModel, VersionStatus
from registry.permissions import can_maintain
from registry.views import not_a_maintainer
from rollouts import services
from rollouts.forms import FORMS, RolloutForm
from rollouts.models import ACTIVE, Rollout, RolloutKind, RolloutStatus
from rollouts.reports import live_report
from rollouts.safety import promotion_blocker, signature_conflict

HISTORY_PAGE_SIZE = 50
VERBS = ("pause", "resume", "promote", "abort", "stop")


# --- What a rollout looks like in a list -----------------------------------------------------------------------


def split_text(rollout: Rollout) -> str:
    """'champion v1 80 % · canary v2 20 %'; a shadow says what it mirrors."""
    arms = list(rollout.arms.all())
    if rollout.kind == RolloutKind.SHADOW:
        champion = next((a for a in arms if a.name == "champion"), None)
        shadow = next((a for a in arms if a.name == "shadow"), None)
        share = float(rollout.config.get("fraction", 1.0)) * 100
        if champion is None or shadow is None:
            return ""
        return f"champion v{champion.version.number} answers; shadow v{shadow.version.number} gets {share:g} % copied"
    return " · ".join(f"{a.name} v{a.version.number} {a.weight:.4g} %" for a in arms)


def ended_text(rollout: Rollout) -> str:
    """Where the traffic went when the rollout ended: 'Promoted: v3 took 100 % of the traffic'."""
    if rollout.is_active:
        return ""
    outcome = rollout.outcome or {}
    if rollout.status == RolloutStatus.PROMOTED:
        return f"Promoted: v{outcome.get('version', '?')} took 100 % of the traffic"
    control = next((arm for arm in rollout.arms.all() if arm.is_control), None)
    serving = f"v{control.version.number}" if control else "the production version"
    return f"{rollout.get_status_display()}: {serving} serves 100 % of the traffic"


def outcome_text(rollout: Rollout) -> str:
    outcome = rollout.outcome or {}
    if rollout.status == RolloutStatus.PROMOTED:
        return f"{outcome.get('winner', '?')} (v{outcome.get('version', '?')}) promoted to production"
    if rollout.status == RolloutStatus.ROLLED_BACK:
        gate = outcome.get("gate", "?")
        found = next((g for g in (outcome.get("figures") or {}).get("gates", []) if g.get("name") == gate), None)
        if found and found.get("value") is not None and found.get("threshold") is not None:
            return f"rolled back: gate {gate} failed ({found['value']:.4g} against a limit of {found['threshold']:g})"
        return f"rolled back: gate {gate} failed"
    if rollout.status in (RolloutStatus.ABORTED, RolloutStatus.STOPPED):
        return f"{rollout.get_status_display().lower()}: {outcome.get('reason', '')}".rstrip(": ")
    return ""


def _rows(rollouts: QuerySet[Rollout] | list[Rollout]) -> list[dict[str, Any]]:
    return [
        {"rollout": r, "split": split_text(r) if r.is_active else ended_text(r), "outcome": outcome_text(r)}
        for r in rollouts
    ]


def _with_arms(queryset: QuerySet[Rollout]) -> QuerySet[Rollout]:
    return queryset.select_related("model", "created_by").prefetch_related("arms__version")


# --- The list and the history ------------------------------------------------------------------------------------


@login_required
@require_GET
def rollout_list(request: HtmxHttpRequest) -> HttpResponse:
    name = request.GET.get("model", "").strip()
    model = RegisteredModel.objects.filter(name=name).first() if name else None
    if name and model is None:
        raise Http404(f"no model named {name!r}")
    rollouts = _with_arms(Rollout.objects.order_by("-created_at", "-id"))
    if model is not None:
        rollouts = rollouts.filter(model=model)
    ended = rollouts.exclude(status__in=ACTIVE)
    page = Paginator(ended, HISTORY_PAGE_SIZE).get_page(request.GET.get("page"))
    context = {
        "model": model,
        "active": _rows(rollouts.filter(status__in=ACTIVE)),
        "history": _rows(list(page)),
        "page": page,
        "can_start": model is not None and can_maintain(request.user, model),
    }
    return render(request, "rollouts/list.html", context)


# --- Starting one -------------------------------------------------------------------------------------------------


def _initial(model: RegisteredModel, kind: str, asked: str = "") -> dict[str, Any]:
    """A sensible start: the version asked for (`?version=`, from a comparison's "start a shadow"),
    else the newest ready version that is not in production; never one that does not fit production."""
    production = registry.serving_version(model)
    # A version whose signature does not fit production's is never preselected (nor startable).
    ready = [
        v
        for v in model.versions.filter(status=VersionStatus.READY).order_by("-number")
        if signature_conflict(production, v) is None
    ]
    newest = next((v for v in ready if production is None or v.pk != production.pk), None)
    if asked.isdigit():
        newest = next((v for v in ready if v.number == int(asked)), newest)
    initial: dict[str, Any] = {}
    if newest is not None and kind != "experiment":
        initial["version"] = newest.number
    if kind == "experiment" and production is not None and newest is not None:
        initial["arms"] = f"control {production.number} 50\ntreatment {newest.number} 50"
    return initial


@login_required
@require_http_methods(["GET", "POST"])
def rollout_new(request: HtmxHttpRequest, name: str) -> HttpResponse:
    model = get_object_or_404(RegisteredModel.objects.select_related("owner"), name=name)
    if not can_maintain(request.user, model):
        return not_a_maintainer(request, model, "start a rollout")
    kind = request.POST.get("kind") or request.GET.get("kind") or RolloutKind.CANARY
    if kind not in FORMS:
        kind = RolloutKind.CANARY
    form_class = FORMS[kind]
    form: RolloutForm
    if request.method == "POST":
        form = form_class(request.POST, model=model)
        if form.is_valid():
            try:
                rollout = form.start(request.user)
            except services.RolloutError as exc:
                # The service owns the rules; its error goes next to the field at fault.
                form.add_error(exc.field if exc.field in form.fields else None, _sentence(str(exc)) + ".")
            else:
                messages.success(request, f"{rollout.get_kind_display()} started. This page follows it live.")
                return _redirect(request, reverse("rollouts:detail", args=[rollout.pk]))
    else:
        form = form_class(initial=_initial(model, kind, request.GET.get("version", "")), model=model)
    context = {
        "model": model,
        "kind": kind,
        "kinds": [(value, label) for value, label in RolloutKind.choices],
        "form": form,
        "production": registry.serving_version(model),
        "active": services.active_rollout(model),
    }
    return render(request, "rollouts/new.html", context)


# --- One rollout, live --------------------------------------------------------------------------------------------


def _window_for(rollout: Rollout, now: dt.datetime) -> str:
    age = now - rollout.started_at
    for name in ("5m", "1h", "24h"):
        if age <= queries.WINDOWS[name]:
            return name
    return "7d"


def _charts(rollout: Rollout, arms: list[dict[str, Any]], now: dt.datetime) -> tuple[str, list[dict[str, Any]]]:
    """Per-arm latency and throughput timelines over the window that covers the rollout."""
    window_name = _window_for(rollout, now)
    charts = []
    for arm in arms:
        line = queries.timeline(
            window_name, model=rollout.model.name, version=str(arm["version"]), arm=arm["name"], now=now
        )
        charts.append({"arm": arm["name"], "id": f"arm-chart-{arm['name']}", "data": {"timeline": line.as_json()}})
    return window_name, charts


def _canary_step(rollout: Rollout, now: dt.datetime) -> dict[str, Any] | None:
    if rollout.kind != RolloutKind.CANARY:
        return None
    steps = rollout.config.get("steps") or [100]
    started = rollout.step_started_at or rollout.started_at
    remaining = max(0.0, float(rollout.config.get("step_seconds", 0)) - (now - started).total_seconds())
    return {
        "number": rollout.step + 1,
        "count": len(steps),
        "percent": steps[min(rollout.step, len(steps) - 1)],
        "steps": steps,
        "started": started,
        "remaining_seconds": round(remaining) if rollout.status == RolloutStatus.RUNNING else None,
    }


def _live_context(request: HttpRequest, rollout: Rollout) -> dict[str, Any]:
    now = timezone.now()
    context: dict[str, Any] = {
        "rollout": rollout,
        "split": split_text(rollout),
        "ended": ended_text(rollout),
        "outcome": outcome_text(rollout),
        "step": _canary_step(rollout, now),
        "can_maintain": can_maintain(request.user, rollout.model),
        "audit": AuditEntry.objects.filter(object_type="rollouts.rollout", object_id=str(rollout.pk)).order_by(
            "created_at", "id"
        ),
        "polling": rollout.is_active,
    }
    try:
        report = live_report(rollout, now)
        for arm in report["arms"]:
            rate = arm["figures"]["error_rate"]
            arm["error_percent"] = None if rate is None else 100 * rate
            fallen = arm["figures"]["fallback_rate"]
            arm["fallback_percent"] = None if fallen is None else 100 * fallen
        context["report"] = report
        if rollout.is_active and context["can_maintain"]:
            # A failing arm is not offered for promotion (the service refuses it too).
            names = [a["name"] for a in report["arms"] if not a["is_control"]]
            context["promotion_blocked"] = {name: promotion_blocker(rollout, name, now) for name in names}
        if rollout.is_active:
            context["window_name"], context["charts"] = _charts(rollout, report["arms"], now)
    except (redis.RedisError, DatabaseError) as exc:
        context["unavailable"] = f"Figures are unavailable while Redis or PostgreSQL is unreachable ({exc})."
    return context


@login_required
@require_GET
def rollout_detail(request: HtmxHttpRequest, pk: int) -> HttpResponse:
    rollout = get_object_or_404(_with_arms(Rollout.objects.all()), pk=pk)
    context = _live_context(request, rollout)
    template = "rollouts/_live.html" if _wants_partial(request) else "rollouts/detail.html"
    return render(request, template, context)


def _arm(rollout: Rollout, name: str) -> Any:
    return next((arm for arm in rollout.arms.all() if arm.name == name), None)


def effect_text(rollout: Rollout, verb: str, arm_name: str | None = None) -> str:
    """What an irreversible action will do, in the words the confirmation shows."""
    model = rollout.model.name
    control = next((arm for arm in rollout.arms.all() if arm.is_control), None)
    production = f"v{control.version.number}" if control else "the production version"
    if verb == "promote":
        name = arm_name or {"canary": "canary", "shadow": "shadow"}.get(rollout.kind, "")
        arm = _arm(rollout, name)
        target = f"v{arm.version.number}" if arm else name
        if rollout.kind == RolloutKind.SHADOW:
            return (
                f"{target}, which has only answered copies so far, answers every request to {model} at once; "
                f"{production} stops serving and the shadow ends. Going back means setting production to "
                f"{production} again by hand."
            )
        return (
            f"Production moves from {production} to {target} at once: {target} answers 100 % of {model}'s "
            f"requests and the {rollout.get_kind_display().lower()} ends. Going back means setting production "
            f"to {production} again by hand."
        )
    if verb == "abort":
        return (
            f"All of {model}'s traffic goes back to {production} at once and the "
            f"{rollout.get_kind_display().lower()} ends for good (it cannot be resumed; start a new one to try again)."
        )
    if rollout.kind == RolloutKind.SHADOW:
        return f"The shadow stops receiving copies and ends; {production} keeps answering every request."
    return (
        f"The experiment ends without promoting any arm: all of {model}'s traffic goes to {production}; "
        "the figures gathered so far stay on this page."
    )


CONFIRMED = {"pause": False, "resume": False, "promote": True, "abort": True, "stop": True}
VERB_LABELS = {"promote": "Promote", "abort": "Abort", "stop": "Stop"}


def _confirm(request: HtmxHttpRequest, rollout: Rollout, verb: str, arm: str | None) -> HttpResponse:
    blocker = promotion_blocker(rollout, arm or _default_arm(rollout)) if verb == "promote" else None
    context = {
        "rollout": rollout,
        "verb": verb,
        "label": VERB_LABELS[verb],
        "arm": arm or "",
        "effect": effect_text(rollout, verb, arm),
        "blocker": blocker,
        "danger": verb != "promote",
    }
    return render(request, "rollouts/confirm.html", context)


def _default_arm(rollout: Rollout) -> str:
    return {"canary": "canary", "shadow": "shadow"}.get(rollout.kind, "")


@login_required
@require_http_methods(["GET", "POST"])
def rollout_action(request: HtmxHttpRequest, pk: int, verb: str) -> HttpResponse:
    """Pause and resume act at once; promote, abort and stop first show what they will do (GET, or
    a POST without `confirm=yes`) and act only on the confirmation's POST, with or without JS."""
    rollout = get_object_or_404(_with_arms(Rollout.objects.select_related("model__owner")), pk=pk)
    if verb not in VERBS:
        raise Http404(f"no action {verb!r}")
    if not can_maintain(request.user, rollout.model):
        return not_a_maintainer(request, rollout.model, f"{verb} this rollout")
    arm = (request.POST.get("arm") or request.GET.get("arm") or "").strip() or None
    if request.method == "GET" and not CONFIRMED[verb]:
        return HttpResponseNotAllowed(["POST"])
    if CONFIRMED[verb] and (request.method == "GET" or request.POST.get("confirm") != "yes"):
        if not rollout.is_active:
            messages.error(
                request, f"Not done: this rollout has already ended ({rollout.get_status_display().lower()})."
            )
            return _redirect(request, reverse("rollouts:detail", args=[rollout.pk]))
        return _confirm(request, rollout, verb, arm)
    try:
        if verb == "pause":
            services.pause(rollout, actor=request.user)
        elif verb == "resume":
            services.resume(rollout, actor=request.user)
        elif verb == "abort":
            services.abort(rollout, actor=request.user, reason=f"aborted by {request.user.get_username()}")
        elif verb == "stop":
            if rollout.kind == RolloutKind.CANARY:
                raise services.RolloutError("a canary ends with abort or promote")
            services.stop_experiment(rollout, actor=request.user)
        else:
            done = services.promote(rollout, actor=request.user, arm_name=arm)
            messages.success(request, f"Promoted: {outcome_text(done)}.")
    except services.RolloutError as exc:
        messages.error(request, f"Not done: {_sentence(str(exc))}.")
    else:
        if verb != "promote":
            rollout.refresh_from_db()
            messages.success(request, f"{rollout.get_kind_display()} {rollout.get_status_display().lower()}.")
    return _redirect(request, reverse("rollouts:detail", args=[rollout.pk]))


# --- The model page's section ---------------------------------------------------------------------------------------


@login_required
@require_GET
def model_section(request: HtmxHttpRequest, name: str) -> HttpResponse:
    """The rollout box on a model's page, loaded by htmx; without htmx, the model's rollouts page."""
    model = get_object_or_404(RegisteredModel, name=name)
    if not _wants_partial(request):
        return redirect(f"{reverse('rollouts:list')}?model={model.name}")
    active = services.active_rollout(model)
    context = {
        "model": model,
        "active": active,
        "split": split_text(active) if active else "",
        "can_start": can_maintain(request.user, model) and active is None,
        "has_production": registry.serving_version(model) is not None,
        "ended": Rollout.objects.filter(model=model).exclude(status__in=ACTIVE).count(),
    }
    return render(request, "rollouts/_model_section.html", context)
