"""The model page's fallback section: set or remove what answers when the serving version fails."""

from __future__ import annotations

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import HttpResponse
from django.shortcuts import get_object_or_404, render
from django.urls import reverse
from django.views.decorators.http import require_POST

from controlplane.htmx import HtmxHttpRequest
from controlplane.htmx import redirect as _redirect
from controlplane.htmx import sentence as _sentence
from registry.fallback_forms import FallbackForm
from registry.fallback_services import set_fallback
from registry.models import RegisteredModel
from registry.permissions import can_maintain
from registry.services import RegistryError
from registry.views import model_context, not_a_maintainer


@login_required
@require_POST
def fallback(request: HtmxHttpRequest, name: str) -> HttpResponse:
    model = get_object_or_404(RegisteredModel.objects.select_related("owner"), name=name)
    if not can_maintain(request.user, model):
        return not_a_maintainer(request, model, "change the fallback")
    target = reverse("registry:detail", args=[model.name]) + "#fallback"
    if "remove" in request.POST:
        set_fallback(model, None, actor=request.user)
        messages.success(request, "Fallback removed: failures reach clients as errors again.")
        return _redirect(request, target)
    form = FallbackForm(request.POST)
    if form.is_valid():
        policy = form.as_policy()
        try:
            set_fallback(model, policy, actor=request.user)
        except RegistryError as exc:
            # The service names the step: "chain[1]: fraud has no version 9". The form has one version field.
            where, _, message = str(exc).partition(": ")
            kinds = [step["kind"] for step in policy["chain"]]
            on_version = "version" in kinds and where == f"chain[{kinds.index('version')}]"
            form.add_error("version" if on_version else None, _sentence(message if on_version else str(exc)))
        else:
            messages.success(request, "Fallback saved: it applies to the next request.")
            return _redirect(request, target)
    context = model_context(request, model, None, form)
    return render(request, "registry/model_detail.html", context, status=400)
