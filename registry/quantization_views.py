"""The version page's quantize buttons; the jobs are listed in the version's body
(templates/registry/_quantizations.html), which refreshes itself while one runs."""

from __future__ import annotations

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import HttpResponse
from django.shortcuts import get_object_or_404
from django.urls import reverse
from django.views.decorators.http import require_POST

from controlplane.htmx import HtmxHttpRequest
from controlplane.htmx import redirect as _redirect
from controlplane.htmx import sentence as _sentence
from registry import quantization_services, services
from registry.models import ModelVersion, QuantizationMethod
from registry.permissions import can_maintain
from registry.views import not_a_maintainer


@login_required
@require_POST
def version_quantize(request: HtmxHttpRequest, name: str, number: int) -> HttpResponse:
    version = get_object_or_404(
        ModelVersion.objects.select_related("model", "model__owner"), model__name=name, number=number
    )
    if not can_maintain(request.user, version.model):
        return not_a_maintainer(request, version.model, "quantize this version")
    method = request.POST.get("method", "")
    try:
        quantization_services.start_quantization(version, method, actor=request.user)
    except services.RegistryError as exc:
        messages.error(request, f"Not started: {_sentence(str(exc))}.")
    else:
        label = QuantizationMethod(method).label
        messages.success(
            request, f"Quantizing version {number} to {label}: the new version appears below when it is made."
        )
    return _redirect(request, reverse("registry:version", args=[name, number]))
