"""The version page's serving-settings form: the response cache's TTL."""

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
from registry import services
from registry.forms import ResponseCacheForm
from registry.models import ModelVersion
from registry.permissions import can_maintain
from registry.views import not_a_maintainer, version_page


@login_required
@require_POST
def version_cache(request: HtmxHttpRequest, name: str, number: int) -> HttpResponse:
    version = get_object_or_404(
        ModelVersion.objects.select_related("model", "model__owner", "parent", "created_by"),
        model__name=name,
        number=number,
    )
    if not can_maintain(request.user, version.model):
        return not_a_maintainer(request, version.model, "change this version's response cache")
    form = ResponseCacheForm(request.POST)
    if not form.is_valid():
        return version_page(request, version, form, status=400)
    ttl = form.cleaned_data["cache_ttl_seconds"]
    try:
        services.update_version(version, actor=request.user, cache_ttl_seconds=ttl)
    except services.RegistryError as exc:
        messages.error(request, f"Not changed: {_sentence(str(exc))}.")
    else:
        done = f"answers are reused for {ttl} s" if ttl else "the response cache is off"
        messages.success(request, f"Version {number}: {done}. The gateways apply it at once.")
    return _redirect(request, reverse("registry:version", args=[name, number]))
