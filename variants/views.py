"""A version page's comparison section (loaded by htmx from registry's version page): the
comparisons with its baseline, a button to run one, and links to start a shadow or a canary."""

from __future__ import annotations

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import Http404, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.views.decorators.http import require_http_methods, require_POST

from controlplane.htmx import HtmxHttpRequest, wants_partial
from controlplane.htmx import redirect as htmx_redirect
from registry.models import ModelVersion
from registry.permissions import can_maintain
from registry.views import not_a_maintainer
from rollouts import services as rollouts
from variants.capacity_services import CapacityRefused, apply_recommendation, start_capacity_report
from variants.models import CapacityReport, Comparison
from variants.services import ComparisonRefused, start_comparison


@login_required
@require_http_methods(["GET", "POST"])
def version_section(request: HtmxHttpRequest, name: str, number: int) -> HttpResponse:
    version = get_object_or_404(ModelVersion.objects.select_related("model", "parent"), model__name=name, number=number)
    page = reverse("registry:version", args=[name, number])
    if request.method == "POST":
        if not can_maintain(request.user, version.model):
            return not_a_maintainer(request, version.model, "compare versions")
        try:
            start_comparison(version, actor=request.user)
        except ComparisonRefused as exc:
            messages.error(request, str(exc))
        else:
            messages.success(request, "Comparison queued: both versions answer the same inputs on a worker.")
        return htmx_redirect(request, page + "#comparisons")
    if not wants_partial(request):
        return redirect(page + "#comparisons")
    comparisons = list(Comparison.objects.filter(version=version).select_related("baseline")[:5])
    report = CapacityReport.objects.filter(version=version).select_related("applied_by").first()
    context = {
        "model": version.model,
        "version": version,
        "comparisons": comparisons,
        "report": report,
        "can_maintain": can_maintain(request.user, version.model),
        "polling": any(c.in_progress for c in comparisons) or (report is not None and report.in_progress),
    }
    return render(request, "variants/_section.html", context)


@login_required
@require_POST
def capacity(request: HtmxHttpRequest, name: str, number: int, pk: int | None = None) -> HttpResponse:
    """Start a capacity report (`p99_target_ms` posted), or with `pk` apply that report's recommendation."""
    version = get_object_or_404(ModelVersion.objects.select_related("model"), model__name=name, number=number)
    if not can_maintain(request.user, version.model):
        return not_a_maintainer(request, version.model, "measure or change serving settings")
    try:
        if pk is None:
            target = float(request.POST.get("p99_target_ms", ""))
            start_capacity_report(version, p99_target_ms=target, actor=request.user)
            messages.success(request, "Capacity report queued: a worker measures it on one core.")
        else:
            report = get_object_or_404(CapacityReport, pk=pk, version=version)
            apply_recommendation(report, actor=request.user)
            messages.success(request, "Recommended serving settings applied; workers use them at once.")
    except ValueError:
        messages.error(request, "Give the p99 target in milliseconds, a number such as 50.")
    except CapacityRefused as exc:
        messages.error(request, str(exc))
    return htmx_redirect(request, reverse("registry:version", args=[name, number]) + "#comparisons")


@login_required
@require_POST
def start_rollout(request: HtmxHttpRequest, name: str, number: int, kind: str) -> HttpResponse:
    """One click from a comparison: a shadow (every request copied) or a canary (the default steps and
    gates) of this version against production, started by the rollouts service; its page follows it."""
    version = get_object_or_404(ModelVersion.objects.select_related("model"), model__name=name, number=number)
    if not can_maintain(request.user, version.model):
        return not_a_maintainer(request, version.model, "start a rollout")
    if kind not in ("shadow", "canary"):
        raise Http404(f"no such rollout kind: {kind}")
    try:
        if kind == "shadow":
            rollout = rollouts.start_shadow(version.model, version, actor=request.user)
        else:
            rollout = rollouts.start_canary(version.model, version, actor=request.user)
    except rollouts.RolloutError as exc:
        messages.error(request, f"{str(exc)[:1].upper()}{str(exc)[1:]}.")
        return htmx_redirect(request, reverse("registry:version", args=[name, number]) + "#comparisons")
    messages.success(request, f"{rollout.get_kind_display()} of v{number} started. This page follows it live.")
    return htmx_redirect(request, reverse("rollouts:detail", args=[rollout.pk]))
