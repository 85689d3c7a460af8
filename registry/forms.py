"""Dashboard forms for the registry. They check input; the changes themselves go through `registry.services`."""

from __future__ import annotations

from typing import Any

from django import forms
from django.conf import settings
from django.template.defaultfilters import filesizeformat

from registry.models import (
    MAX_CACHE_TTL_SECONDS,
    NAME_VALIDATOR,
    ModelKind,
    ModelVersion,
    RegisteredModel,
    VersionStatus,
)
from registry.services import RESERVED_NAMES

MAX_TAGS = 20


class VersionChoiceField(forms.ModelChoiceField):
    """Versions of one model, offered and posted by number."""

    def label_from_instance(self, obj: Any) -> str:
        return f"v{obj.number} ({obj.get_status_display().lower()})"


def parse_tags(raw: str) -> list[str]:
    """'vision, resnet,,vision ' -> ['vision', 'resnet']: trimmed, without empties or repeats, in order."""
    tags: list[str] = []
    for tag in (part.strip() for part in raw.split(",")):
        if tag and tag not in tags:
            tags.append(tag)
    return tags


class NewModelForm(forms.Form):
    kind = forms.ChoiceField(
        choices=[
            (ModelKind.MODEL, "Model: its versions are ONNX files you upload"),
            (
                ModelKind.PIPELINE,
                "Pipeline: its versions are stages, ready versions of other models run one after another",
            ),
        ],
        initial=ModelKind.MODEL,
        required=False,
        widget=forms.RadioSelect,
        help_text="Cannot change later.",
    )
    name = forms.CharField(
        max_length=64,
        validators=[NAME_VALIDATOR],
        help_text="Lowercase letters, digits, '-' and '_'. Clients use it in /v2/models/<name>/infer.",
    )
    description = forms.CharField(required=False, widget=forms.Textarea(attrs={"rows": 3}))
    tags = forms.CharField(required=False, max_length=1000, help_text="Comma-separated, e.g. vision, resnet.")

    def clean_kind(self) -> str:
        return str(self.cleaned_data["kind"] or ModelKind.MODEL)

    def clean_name(self) -> str:
        name: str = self.cleaned_data["name"]
        if name in RESERVED_NAMES:
            raise forms.ValidationError(f"'{name}' is reserved by the dashboard; choose another name.")
        if RegisteredModel.objects.filter(name=name).exists():
            raise forms.ValidationError(f"A model named '{name}' already exists.")
        return name

    def clean_tags(self) -> list[str]:
        tags = parse_tags(self.cleaned_data["tags"])
        if len(tags) > MAX_TAGS:
            raise forms.ValidationError(f"At most {MAX_TAGS} tags; this has {len(tags)}.")
        too_long = [tag for tag in tags if len(tag) > 64]
        if too_long:
            raise forms.ValidationError(f"Tags are at most 64 characters: '{too_long[0][:20]}…' is longer.")
        return tags


class AliasForm(forms.Form):
    alias = forms.CharField(
        max_length=64,
        validators=[NAME_VALIDATOR],
        initial="production",
        help_text="'production' is what requests without a version get.",
    )
    version = VersionChoiceField(queryset=ModelVersion.objects.none(), to_field_name="number", empty_label=None)

    def __init__(self, *args: Any, model: RegisteredModel, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        version = self.fields["version"]
        assert isinstance(version, VersionChoiceField)
        version.queryset = model.versions.filter(status=VersionStatus.READY).order_by("-number")
        version.error_messages["invalid_choice"] = "Choose a ready version of this model."


class ResponseCacheForm(forms.Form):
    """A version's response cache, on its page (the other serving settings change through the API)."""

    cache_ttl_seconds = forms.IntegerField(
        min_value=0,
        max_value=MAX_CACHE_TTL_SECONDS,
        label="Response cache TTL (seconds)",
        help_text=(
            f"Repeated requests (same inputs, same requested outputs) are answered from the cache for this long, "
            f"without running the model; 0 turns the cache off, at most {MAX_CACHE_TTL_SECONDS} (7 days). "
            "Only for deterministic models: a model that samples, or whose answer depends on the time or on "
            "anything but its input, would repeat one answer to every caller."
        ),
    )


class UploadForm(forms.Form):
    file = forms.FileField(
        label="ONNX file",
        widget=forms.ClearableFileInput(attrs={"accept": ".onnx"}),
        error_messages={"empty": "The file is empty."},
    )
    description = forms.CharField(required=False, widget=forms.Textarea(attrs={"rows": 2}))
    parent = VersionChoiceField(
        queryset=ModelVersion.objects.none(),
        to_field_name="number",
        required=False,
        empty_label="none",
        label="Parent version",
        help_text="The version this one was trained or fine-tuned from.",
    )
    source_run_url = forms.URLField(
        required=False, max_length=500, assume_scheme="https", label="Source run URL", help_text="The training run."
    )
    training_data = forms.CharField(
        required=False, max_length=500, help_text="A reference to the training data, e.g. s3://bucket/iris-v3."
    )

    def __init__(self, *args: Any, model: RegisteredModel, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        parent = self.fields["parent"]
        assert isinstance(parent, VersionChoiceField)
        parent.queryset = model.versions.order_by("-number")
        limit = settings.TURNOUT["MAX_ARTIFACT_BYTES"]
        self.fields["file"].help_text = f"A single .onnx file, at most {filesizeformat(limit)} ({limit} bytes)."
