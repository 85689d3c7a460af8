"""Registry dashboard pages. Each view returns the full page or, for htmx, its named partial;
every change goes through `registry.services`."""

from __future__ import annotations

import json
from typing import Any

from django.conf import settings
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.db import IntegrityError
from django.db.models import OuterRef, Q, QuerySet, Subquery
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseNotAllowed
from django.shortcuts import get_object_or_404, render
from django.template.defaultfilters import filesizeformat
from django.urls import reverse
from django.views.decorators.csrf import csrf_exempt, csrf_protect
from django.views.decorators.http import require_GET, require_http_methods

from controlplane.htmx import HtmxHttpRequest
from controlplane.htmx import redirect as _redirect
from controlplane.htmx import sentence as _sentence
from controlplane.htmx import wants_partial as _wants_partial
from registry import pipeline_services, quantization_services, services
from registry.fallback_forms import FallbackForm, fits_the_form
from registry.fallback_policy import parse as parse_policy
from registry.forms import AliasForm, NewModelForm, ResponseCacheForm, UploadForm
from registry.models import Alias, ModelVersion, RegisteredModel, VersionStatus
from registry.permissions import can_create_models, can_maintain

# Versions whose validation has not finished: their pages refresh themselves.
IN_PROGRESS = (VersionStatus.PENDING, VersionStatus.VALIDATING)
# The multipart envelope and the small text fields around the file. A request
# declaring more than the artifact limit plus this is refused before it is read.
FORM_ALLOWANCE_BYTES = 64 * 1024


def _forbidden(request: HttpRequest, model: RegisteredModel | None, action: str, remedy: str) -> HttpResponse:
    context = {"model": model, "action": action, "remedy": remedy}
    return render(request, "registry/forbidden.html", context, status=403)


def not_a_maintainer(request: HttpRequest, model: RegisteredModel, action: str) -> HttpResponse:
    owner = model.owner.get_username() if model.owner else "an admin"
    remedy = f"Only the owner, the maintainers of '{model.name}' and admins may do that: ask {owner} to add you."
    return _forbidden(request, model, action, remedy)


# --- Models list and creation ------------------------------------------------


def _models_matching(query: str) -> QuerySet[RegisteredModel]:
    latest = ModelVersion.objects.filter(model=OuterRef("pk")).order_by("-number")
    production = Alias.objects.filter(model=OuterRef("pk"), name=services.PRODUCTION)
    models = RegisteredModel.objects.select_related("owner").annotate(
        latest_number=Subquery(latest.values("number")[:1]),
        latest_status=Subquery(latest.values("status")[:1]),
        production_number=Subquery(production.values("version__number")[:1]),
    )
    if query:
        # tags is a JSON list; icontains matches against its text, so a part of any tag matches.
        models = models.filter(Q(name__icontains=query) | Q(description__icontains=query) | Q(tags__icontains=query))
    return models.order_by("name")


@login_required
@require_GET
def model_list(request: HtmxHttpRequest) -> HttpResponse:
    query = request.GET.get("q", "").strip()
    models = list(_models_matching(query))
    context = {
        "models": models,
        "query": query,
        "any_model": bool(models) or RegisteredModel.objects.exists(),
        "can_create": can_create_models(request.user),
    }
    template = "registry/_model_table.html" if _wants_partial(request) else "registry/model_list.html"
    return render(request, template, context)


@login_required
@require_http_methods(["GET", "POST"])
def model_new(request: HtmxHttpRequest) -> HttpResponse:
    if not can_create_models(request.user):
        remedy = "Creating models is for members of the maintainers group: ask an admin to add you to it."
        return _forbidden(request, None, "create a model", remedy)
    form = NewModelForm(request.POST if request.method == "POST" else None)
    if request.method == "POST" and form.is_valid():
        name = form.cleaned_data["name"]
        try:
            model = services.create_model(
                name=name,
                description=form.cleaned_data["description"],
                tags=form.cleaned_data["tags"],
                kind=form.cleaned_data["kind"],
                actor=request.user,
            )
        except IntegrityError:  # created by someone else since the form checked the name
            form.add_error("name", f"A model named '{name}' already exists.")
        except services.RegistryError as exc:
            form.add_error("name", str(exc))
        else:
            if model.is_pipeline:
                messages.success(request, f"Pipeline '{model.name}' created. Choose the stages of its first version.")
                return _redirect(request, reverse("registry:pipeline-version-new", args=[model.name]))
            messages.success(request, f"Model '{model.name}' created. Upload its first version below.")
            return _redirect(request, reverse("registry:upload", args=[model.name]))
    return render(request, "registry/model_new.html", {"form": form})


# --- One model: aliases, versions, set alias ------------------------------------


def model_context(
    request: HttpRequest,
    model: RegisteredModel,
    alias_form: AliasForm | None,
    fallback_form: FallbackForm | None = None,
) -> dict[str, Any]:
    rows = model.versions.select_related("created_by").order_by("-number")
    if model.is_pipeline:
        rows = rows.prefetch_related("stages__version__model")
    versions = list(rows)
    maintainer = can_maintain(request.user, model)
    if maintainer and alias_form is None:
        alias_form = AliasForm(model=model)
    policy = parse_policy(model.fallback) if model.fallback else None
    if maintainer and fallback_form is None:
        fallback_form = FallbackForm(policy=policy)
    return {
        "model": model,
        "versions": versions,
        "aliases": model.aliases.select_related("version").order_by("name"),
        "polling": any(version.status in IN_PROGRESS for version in versions),
        "can_maintain": maintainer,
        "alias_form": alias_form,
        "has_ready": any(version.status == VersionStatus.READY for version in versions),
        "fallback": policy,
        "fallback_steps": [step.describe(model.name) for step in policy.chain] if policy else [],
        "fallback_form": fallback_form,
        "fallback_fits_form": policy is None or fits_the_form(policy),
    }


@login_required
@require_http_methods(["GET", "POST"])
def model_detail(request: HtmxHttpRequest, name: str) -> HttpResponse:
    model = get_object_or_404(RegisteredModel.objects.select_related("owner"), name=name)
    alias_form = None
    if request.method == "POST":
        if not can_maintain(request.user, model):
            return not_a_maintainer(request, model, "move an alias")
        alias_form = AliasForm(request.POST, model=model)
        if alias_form.is_valid():
            alias_name, version = alias_form.cleaned_data["alias"], alias_form.cleaned_data["version"]
            try:
                services.set_alias(model, alias_name, version, actor=request.user)
            except services.RegistryError as exc:
                alias_form.add_error("version", _sentence(str(exc)))
            else:
                messages.success(request, f"Alias '{alias_name}' now points at version {version.number}.")
                return _redirect(request, reverse("registry:detail", args=[model.name]))
    context = model_context(request, model, alias_form)
    if request.method == "GET" and _wants_partial(request):
        return render(request, "registry/_versions.html", context)
    return render(request, "registry/model_detail.html", context)


# --- Upload ------------------------------------------------------------------


def _render_upload(request: HtmxHttpRequest, context: dict[str, Any], status: int = 200) -> HttpResponse:
    template = "registry/_upload_form.html" if _wants_partial(request) else "registry/upload.html"
    context["max_bytes"] = settings.TURNOUT["MAX_ARTIFACT_BYTES"]
    return render(request, template, context, status=status)


def _declared_length(request: HttpRequest) -> int:
    try:
        return int(request.META.get("CONTENT_LENGTH") or 0)
    except ValueError:
        return 0


# The CSRF check reads the whole multipart body (request.POST), so it must run
# after the size check: csrf_exempt here, csrf_protect on the part that reads.
@csrf_exempt
@login_required
@require_http_methods(["GET", "POST"])
def upload(request: HtmxHttpRequest, name: str) -> HttpResponse:
    model = get_object_or_404(RegisteredModel.objects.select_related("owner"), name=name)
    if model.is_pipeline:  # its versions are made of stages, on their own page
        return _redirect(request, reverse("registry:pipeline-version-new", args=[model.name]))
    if not can_maintain(request.user, model):
        return not_a_maintainer(request, model, "upload a version")
    if request.method == "GET":
        return _render_upload(request, {"model": model, "form": UploadForm(model=model)})
    limit = settings.TURNOUT["MAX_ARTIFACT_BYTES"]
    if _declared_length(request) > limit + FORM_ALLOWANCE_BYTES:
        message = f"This upload is larger than the limit of {filesizeformat(limit)} ({limit} bytes) per file."
        context = {"model": model, "form": UploadForm(model=model), "file_error": message}
        return _render_upload(request, context, status=413)
    return _receive_upload(request, model)


@csrf_protect
def _receive_upload(request: HtmxHttpRequest, model: RegisteredModel) -> HttpResponse:
    form = UploadForm(request.POST, request.FILES, model=model)
    if not form.is_valid():
        return _render_upload(request, {"model": model, "form": form})
    data = form.cleaned_data
    try:
        result = services.upload_version(
            model,
            data["file"],
            actor=request.user,
            parent_number=data["parent"].number if data["parent"] else None,
            description=data["description"],
            source_run_url=data["source_run_url"],
            training_data=data["training_data"],
        )
    except services.RegistryError as exc:
        form.add_error("file", _sentence(str(exc)))
        status = 413 if isinstance(exc, services.ArtifactTooLarge) else 200
        return _render_upload(request, {"model": model, "form": form}, status=status)
    number = result.version.number
    if result.created:
        # Where validation stands is the page's own (polled) status, not a message that would go stale.
        messages.success(request, f"Uploaded version {number}.")
    else:
        archived = (
            " It is archived: restore it on its page to serve it again."
            if result.version.status == VersionStatus.ARCHIVED
            else ""
        )
        messages.info(request, f"Nothing new stored: these bytes are already version {number}.{archived}")
    return _redirect(request, reverse("registry:version", args=[model.name, number]))


# --- One version -----------------------------------------------------------------


def _shape_text(shape: list[int]) -> str:
    return "[" + ", ".join("-1 (dynamic)" if dim == -1 else str(dim) for dim in shape) + "]"


def _signature_rows(signature: dict[str, Any] | None) -> list[dict[str, str]]:
    rows = []
    for kind in ("inputs", "outputs"):
        for spec in (signature or {}).get(kind, []):
            rows.append(
                {
                    "kind": kind[:-1],
                    "name": spec["name"],
                    "datatype": spec["datatype"],
                    "shape": _shape_text(spec["shape"]),
                }
            )
    return rows


def _web_link(url: str) -> str | None:
    # Stored URLs come from the API as well; only ever make http(s) ones clickable.
    return url if url.lower().startswith(("https://", "http://")) else None


def _serving_settings(version: ModelVersion) -> list[tuple[str, Any]]:
    return [
        ("Max batch size", version.max_batch_size),
        ("Max queue delay", f"{version.max_queue_delay_ms:g} ms"),
        ("Preferred batch sizes", ", ".join(map(str, version.preferred_batch_sizes)) or "none"),
        ("Max queue size", version.max_queue_size),
        ("Default timeout", f"{version.default_timeout_ms} ms"),
        ("Execution provider", version.get_execution_provider_display()),
        ("Warm up at start", "yes" if version.warmup else "no"),
        ("Intra-op threads", version.intra_op_threads or "the worker's setting"),
        ("Response cache", f"{version.cache_ttl_seconds} s" if version.cache_ttl_seconds else "off"),
    ]


@login_required
@require_GET
def version_detail(request: HtmxHttpRequest, name: str, number: int) -> HttpResponse:
    version = get_object_or_404(
        ModelVersion.objects.select_related("model", "parent", "created_by"), model__name=name, number=number
    )
    return version_page(request, version)


def version_page(
    request: HtmxHttpRequest, version: ModelVersion, cache_form: ResponseCacheForm | None = None, status: int = 200
) -> HttpResponse:
    """The version's page (or its body, for htmx); `cache_form` bound when a change was refused."""
    signature = version.signature
    quantizations = [] if version.is_pipeline else list(quantization_services.jobs_of(version))
    context = {
        "model": version.model,
        "version": version,
        # The body refreshes itself while this version's validation or a quantization of it runs.
        "polling": version.status in IN_PROGRESS or any(job.in_progress for job in quantizations),
        "validating": version.status in IN_PROGRESS,
        "quantizations": quantizations,
        "signature_rows": _signature_rows(signature),
        "batch_dim": signature.get("batch_dim") if signature else None,
        "metadata_json": json.dumps(version.metadata, indent=2, sort_keys=True),
        "source_run_link": _web_link(version.source_run_url),
        "serving": _serving_settings(version),
        "job": version.validation_jobs.first(),
        "aliases": version.aliases.order_by("name"),
    }
    if version.is_pipeline:
        context.update(pipeline_services.pipeline_layout(version))
    else:
        context["used_by"] = pipeline_services.pipelines_using(version)
    if version.status == VersionStatus.READY:
        try:
            context["workers"] = services.worker_states(version)
        except services.WorkersUnreachable as exc:
            context["workers_error"] = _sentence(str(exc))
    context["can_maintain"] = can_maintain(request.user, version.model)
    # What to do next (make it production, a canary, a shadow): the rollouts app's section.
    context["offers_next_steps"] = context["can_maintain"] and version.status == VersionStatus.READY
    context["cache_form"] = cache_form or ResponseCacheForm(initial={"cache_ttl_seconds": version.cache_ttl_seconds})
    template = "registry/_version_body.html" if _wants_partial(request) else "registry/version_detail.html"
    return render(request, template, context, status=status)


# What a maintainer may do to a version from its page, and what each says when done.
VERSION_VERBS = {
    "load": "Asked {n} live worker(s) to load version {number}; the table below follows them.",
    "unload": "Asked {n} live worker(s) to unload version {number}; its next request loads it again.",
    "archive": "Version {number} is archived: it is no longer served, and can take no alias or traffic.",
    "restore": "Version {number} is restored: it is {status} again.",
}


ARCHIVE_EFFECT = (
    "{model} v{number} stops being served: requests for it get 404, and it can take no alias or rollout "
    "traffic. Its artifact and history are kept, and it can be restored later."
)


@login_required
@require_http_methods(["GET", "POST"])
def version_action(request: HtmxHttpRequest, name: str, number: int, verb: str) -> HttpResponse:
    """Load, unload and restore act at once; archive first shows what it will do (GET, or a POST
    without `confirm=yes`) and acts on the confirmation's POST, with or without JS."""
    version = get_object_or_404(
        ModelVersion.objects.select_related("model", "model__owner"), model__name=name, number=number
    )
    if verb not in VERSION_VERBS:
        raise Http404(f"no action {verb!r}")
    if not can_maintain(request.user, version.model):
        return not_a_maintainer(request, version.model, f"{verb} this version")
    if verb == "archive" and (request.method == "GET" or request.POST.get("confirm") != "yes"):
        effect = ARCHIVE_EFFECT.format(model=name, number=number)
        return render(
            request, "registry/confirm_archive.html", {"model": version.model, "version": version, "effect": effect}
        )
    if request.method == "GET":
        return HttpResponseNotAllowed(["POST"])
    try:
        if verb in ("archive", "restore"):
            change = services.archive_version if verb == "archive" else services.restore_version
            changed = change(version, actor=request.user)
            messages.success(request, VERSION_VERBS[verb].format(number=number, status=changed.status))
            return _redirect(request, reverse("registry:version", args=[name, number]))
        if verb == "load":
            workers = services.load_version(version, actor=request.user)
        else:
            workers = services.unload_version(version, actor=request.user)
    except services.RegistryError as exc:
        messages.error(request, f"Not done: {_sentence(str(exc))}.")
    else:
        if workers:
            messages.success(request, VERSION_VERBS[verb].format(n=len(workers), number=version.number))
        else:
            messages.info(request, f"No live worker serves version {version.number} now: there is nothing to {verb}.")
    return _redirect(request, reverse("registry:version", args=[name, number]))
