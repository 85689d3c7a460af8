"""The registry page that creates a pipeline version: a form with one row per stage
(registry/pipeline_forms.py). A pipeline's other pages are the models' (registry/views.py)."""

from __future__ import annotations

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import HttpResponse
from django.shortcuts import get_object_or_404, render
from django.urls import reverse
from django.views.decorators.http import require_http_methods

from controlplane.htmx import HtmxHttpRequest
from controlplane.htmx import redirect as _redirect
from controlplane.htmx import sentence as _sentence
from controlplane.htmx import wants_partial as _wants_partial
from registry import pipeline_services, services
from registry.models import RegisteredModel
from registry.permissions import can_maintain
from registry.pipeline_forms import PipelineComposer
from registry.views import not_a_maintainer

# Buttons of the form that redraw it rather than create the version.
REDRAW_ACTIONS = ("add", "refresh")


@login_required
@require_http_methods(["GET", "POST"])
def pipeline_version_new(request: HtmxHttpRequest, name: str) -> HttpResponse:
    pipeline = get_object_or_404(RegisteredModel.objects.select_related("owner"), name=name)
    if not pipeline.is_pipeline:
        return _redirect(request, reverse("registry:upload", args=[pipeline.name]))
    if not can_maintain(request.user, pipeline):
        return not_a_maintainer(request, pipeline, "create a version of this pipeline")
    action = request.POST.get("action", "create") if request.method == "POST" else "create"
    if action not in REDRAW_ACTIONS and not action.startswith("remove-"):
        action = "create"
    url = reverse("registry:pipeline-version-new", args=[pipeline.name])
    composer = PipelineComposer(request.POST if request.method == "POST" else None, action, url=url)
    if request.method == "POST" and action == "create" and composer.is_valid():
        fields = composer.form.cleaned_data
        try:
            result = pipeline_services.create_pipeline_version(
                pipeline,
                composer.specs(),
                actor=request.user,
                outputs=fields["outputs"] or None,
                description=fields["description"],
            )
        except pipeline_services.PipelineRefused as exc:
            composer.refused(exc)
        except services.RegistryError as exc:
            composer.form.add_error(None, _sentence(str(exc)) + ".")
        else:
            number = result.version.number
            if result.created:
                messages.success(request, f"Created version {number}. Validation runs the chain; this page follows it.")
            else:
                messages.info(request, f"Nothing new: these stages are already version {number}.")
            return _redirect(request, reverse("registry:version", args=[pipeline.name, number]))
    context = {"model": pipeline, "composer": composer}
    template = "registry/_pipeline_form.html" if _wants_partial(request) else "registry/pipeline_new.html"
    return render(request, template, context)
