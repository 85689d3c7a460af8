"""A version page's comparison section (loaded by htmx from registry's version page): the
comparisons with its baseline, a button to run one, and links to start a shadow or a canary."""

from __future__ import annotations

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.views.decorators.http import require_http_methods

from controlplane.htmx import HtmxHttpRequest, wants_partial
from controlplane.htmx import redirect as htmx_redirect
from registry.models import ModelVersion
from registry.permissions import can_maintain
from registry.views import not_a_maintainer
from variants.models import Comparison
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
    context = {
        "model": version.model,
        "version": version,
        "comparisons": comparisons,
        "can_maintain": can_maintain(request.user, version.model),
        "polling": any(c.in_progress for c in comparisons),
    }
    return render(request, "variants/_section.html", context)
