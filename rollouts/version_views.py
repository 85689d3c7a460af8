"""A version's next steps, for its page in the registry (which loads this section by htmx and
imports nothing of rollouts): make it production, try it as a canary or a shadow, archive it."""

from __future__ import annotations

from django.contrib.auth.decorators import login_required
from django.http import HttpResponse
from django.shortcuts import get_object_or_404, render
from django.views.decorators.http import require_GET

from controlplane.htmx import HtmxHttpRequest
from controlplane.htmx import wants_partial as _wants_partial
from registry.models import ModelVersion
from registry.permissions import can_maintain
from registry.views import not_a_maintainer
from rollouts.next_steps import next_steps


@login_required
@require_GET
def version_next_steps(request: HtmxHttpRequest, name: str, number: int) -> HttpResponse:
    """The section for htmx (empty for a version with nothing to offer), else a page of its own."""
    version = get_object_or_404(
        ModelVersion.objects.select_related("model", "model__owner"), model__name=name, number=number
    )
    if not can_maintain(request.user, version.model):
        return not_a_maintainer(request, version.model, "change this version")
    context = {"model": version.model, "version": version, "next": next_steps(version)}
    if _wants_partial(request):
        if context["next"] is None:
            return HttpResponse("")
        return render(request, "rollouts/_next_steps.html", context)
    return render(request, "rollouts/version_next_steps.html", context)
