"""The dashboard's "new pipeline version" form: one row per stage (a name, a version picker,
a timeout, optional explicit inputs), the pipeline's outputs and a description.

The pickers offer, per row, the ready versions that fit after the versions chosen in the rows
above (`registry.pipelines.fits_after`); whether the whole pipeline fits is decided by
`registry.pipeline_services.create_pipeline_version`, whose refusal is shown on the row it names.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import Any, cast

from django import forms

from controlplane.htmx import sentence
from registry.models import PIPELINE_FRAMEWORK, ModelKind, ModelVersion, VersionStatus
from registry.pipeline_services import PipelineRefused, StageSpec, about_outputs
from registry.pipelines import MAX_STAGES, RESERVED_STAGE_NAMES, StagePlan, fits_after
from registry.signature import Signature, TensorSpec

MAPPING_HELP = 'One "name=source" a line, or a JSON object.'


def parse_mapping(raw: str) -> dict[str, str]:
    """'a=input.a' lines, or a JSON object of strings, -> {"a": "input.a"}; blank -> {}."""
    text = raw.strip()
    if not text:
        return {}
    if text.startswith("{"):
        try:
            value = json.loads(text)
        except ValueError as exc:
            raise forms.ValidationError(f"This is not valid JSON: {exc}.") from None
        if not all(isinstance(k, str) and isinstance(v, str) for k, v in value.items()):
            raise forms.ValidationError('Map names to sources, both text: {"x": "input.x"}.')
        return cast(dict[str, str], value)
    mapping: dict[str, str] = {}
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        name, equals, source = line.partition("=")
        if not equals or not name.strip() or not source.strip():
            raise forms.ValidationError(f'Line {number} is not "name=source": {line.strip()[:60]!r}.')
        if name.strip() in mapping:
            raise forms.ValidationError(f"Line {number} maps '{name.strip()}' a second time.")
        mapping[name.strip()] = source.strip()
    return mapping


def version_key(version: ModelVersion) -> str:
    """How a picker names a version: `<model>:<number>` (a model name has no colon)."""
    return f"{version.model.name}:{version.number}"


def _tensors(specs: list[TensorSpec]) -> str:
    return ", ".join(f"{s['name']} {s['datatype']} {s['shape']}" for s in specs) or "nothing"


def describe(signature: Signature) -> str:
    """What a stage takes and gives, for the line under its picker."""
    return f"takes {_tensors(signature['inputs'])}; gives {_tensors(signature['outputs'])}"


def default_stage_name(model_name: str, taken: set[str]) -> str:
    """A stage name made from a model's name ('sentiment-preprocess' -> 'sentiment_preprocess'), unused so far."""
    base = re.sub(r"[^a-z0-9_]", "_", model_name.lower())
    if not base[:1].isalpha():
        base = f"s_{base}"
    base = base[:32]
    if base in RESERVED_STAGE_NAMES:
        base = f"{base}_stage"
    name, n = base, 2
    while name in taken:
        name = f"{base[: 32 - len(str(n)) - 1]}_{n}"
        n += 1
    return name


class StageCatalog:
    """The versions a stage may run: ready versions of models (not of pipelines)."""

    def __init__(self) -> None:
        versions = (
            ModelVersion.objects.filter(status=VersionStatus.READY, model__kind=ModelKind.MODEL)
            .exclude(framework=PIPELINE_FRAMEWORK)
            .select_related("model")
            .prefetch_related("aliases")
            .order_by("model__name", "-number")
        )
        self.by_key = {version_key(v): v for v in versions}

    def find(self, key: str) -> ModelVersion | None:
        """A version by its picker key, ready or not (the service says why one cannot be a stage)."""
        if key in self.by_key:
            return self.by_key[key]
        model, _, number = key.partition(":")
        if not number.isdigit() or len(number) > 9:
            return None
        return ModelVersion.objects.select_related("model").filter(model__name=model, number=int(number)).first()

    def choices(self, prefix: list[StagePlan], current: str) -> list[Any]:
        """Grouped <select> choices: per model, its versions that fit after `prefix`."""
        groups: dict[str, list[tuple[str, str]]] = {}
        for key, version in self.by_key.items():
            plan = StagePlan("candidate", cast(Signature, version.signature), label=str(version))
            if key == current or fits_after(prefix, plan):
                aliases = ", ".join(alias.name for alias in version.aliases.all())
                label = f"v{version.number}" + (f" ({aliases})" if aliases else "")
                groups.setdefault(version.model.name, []).append((key, label))
        found: list[Any] = [("", "Choose a version")]
        found += [(model, options) for model, options in groups.items()]
        if current and current not in self.by_key and (chosen := self.find(current)) is not None:
            found.append(("Not ready", [(current, f"{chosen} ({chosen.status})")]))
        return found


class StageForm(forms.Form):
    """One stage row; `prefix` is `stage-<index>`."""

    name = forms.CharField(
        max_length=32,
        required=False,
        label="Stage name",
        help_text="Lowercase letters, digits and _. Blank: made from the model's name.",
    )
    version = forms.CharField(
        label="Runs",
        widget=forms.Select,
        error_messages={"required": "Choose the version this stage runs."},
    )
    timeout_ms = forms.IntegerField(
        min_value=0,
        max_value=600_000,
        required=False,
        initial=0,
        label="Timeout (ms)",
        help_text="The stage's own deadline; 0: only the request's.",
    )
    inputs = forms.CharField(
        required=False,
        widget=forms.Textarea(attrs={"rows": 2, "placeholder": "x=input.x"}),
        label="Inputs",
        help_text=f"{MAPPING_HELP} A source is input.<name> (sent by the client) or <earlier stage>.<output>. "
        "Blank: each input reads the tensor of its name from the stage above (the client, for the first).",
    )

    def __init__(self, *args: Any, catalog: StageCatalog, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.catalog = catalog

    def clean_version(self) -> ModelVersion:
        version = self.catalog.find(self.cleaned_data["version"])
        if version is None:
            raise forms.ValidationError("Choose a version from the list.")
        return version

    def clean_timeout_ms(self) -> int:
        return self.cleaned_data["timeout_ms"] or 0

    def clean_inputs(self) -> dict[str, str]:
        return parse_mapping(self.cleaned_data["inputs"])


class PipelineFieldsForm(forms.Form):
    """What a pipeline version has besides its stages."""

    outputs = forms.CharField(
        required=False,
        widget=forms.Textarea(attrs={"rows": 3, "placeholder": "label=postprocess.label"}),
        help_text=f"{MAPPING_HELP} A source is <stage>.<output>. Blank: the last stage's outputs, as they are named.",
    )
    description = forms.CharField(required=False, widget=forms.Textarea(attrs={"rows": 2}))

    def clean_outputs(self) -> dict[str, str]:
        return parse_mapping(self.cleaned_data["outputs"])


class PipelineComposer:
    """The form's stage rows and other fields, from a request.

    `action` is what the posted button asked: `create` validates (bound forms), while `add`,
    `remove-<i>` and `refresh` (a picker changed) only redraw the rows (unbound, no errors).
    """

    def __init__(self, data: Mapping[str, Any] | None, action: str = "create", *, url: str) -> None:
        self.catalog = StageCatalog()
        values = self._posted_rows(data) if data is not None else [{}]
        if action == "add" and len(values) < MAX_STAGES:
            values.append({})
        elif action.startswith("remove-") and len(values) > 1 and action[7:].isdigit():
            index = int(action[7:])
            values = values[:index] + values[index + 1 :]
        bound = data is not None and action == "create"
        self.names = self._names(values)
        self.rows = []
        for index, row in enumerate(values):
            prefix = f"stage-{index}"
            if bound:
                form = StageForm(data, prefix=prefix, catalog=self.catalog)
            else:  # a redraw fills in the names it made, so that inputs can name the stages
                form = StageForm(initial={**row, "name": self.names[index]}, prefix=prefix, catalog=self.catalog)
            form.fields["name"].widget.attrs["placeholder"] = self.names[index]
            field = form.fields["version"]
            picker = cast(forms.Select, field.widget)
            picker.choices = self.catalog.choices(self._plans(values[:index]), row.get("version", ""))
            # A new choice redraws the form, so the rows below offer what fits after it.
            picker.attrs.update(
                {
                    "hx-post": url,
                    "hx-trigger": "change",
                    "hx-target": "#pipeline-form",
                    "hx-swap": "outerHTML",
                    "hx-vals": '{"action": "refresh"}',
                }
            )
            if (chosen := self.catalog.find(row.get("version", ""))) is not None and chosen.signature:
                field.help_text = f"{chosen}: {describe(cast(Signature, chosen.signature))}."
            self.rows.append(form)
        fields = {"outputs": "", "description": ""}
        if data is not None:
            fields = {name: str(data.get(name, "")) for name in fields}
        self.form = PipelineFieldsForm(data if bound else None, initial=fields)
        self.can_add = len(values) < MAX_STAGES

    @staticmethod
    def _posted_rows(data: Mapping[str, Any]) -> list[dict[str, str]]:
        count = str(data.get("stages", "1"))
        rows = min(max(int(count), 1), MAX_STAGES) if count.isdigit() and len(count) < 4 else 1
        fields = ("name", "version", "timeout_ms", "inputs")
        return [{f: str(data.get(f"stage-{i}-{f}", "")) for f in fields} for i in range(rows)]

    def _names(self, values: list[dict[str, str]]) -> list[str]:
        """Each row's stage name: as typed, or made from its model's name."""
        names: list[str] = []
        for row in values:
            typed = row.get("name", "").strip()
            version = self.catalog.find(row.get("version", ""))
            if not typed and version is not None:
                typed = default_stage_name(version.model.name, set(names))
            names.append(typed)
        return names

    def _plans(self, values: list[dict[str, str]]) -> list[StagePlan]:
        """The rows above one, as the wiring sees them, skipping those without a usable version."""
        plans = []
        for index, row in enumerate(values):
            version = self.catalog.by_key.get(row.get("version", ""))
            if version is None:
                continue
            try:
                inputs = parse_mapping(row.get("inputs", ""))
            except forms.ValidationError:
                inputs = {}
            plans.append(StagePlan(self.names[index], cast(Signature, version.signature), inputs, label=str(version)))
        return plans

    def is_valid(self) -> bool:
        return all([form.is_valid() for form in self.rows]) and self.form.is_valid()

    def specs(self) -> list[StageSpec]:
        return [
            StageSpec(name, form.cleaned_data["version"], form.cleaned_data["inputs"], form.cleaned_data["timeout_ms"])
            for name, form in zip(self.names, self.rows, strict=True)
        ]

    def refused(self, error: PipelineRefused) -> None:
        """Show the service's refusal where it belongs: the stage row it names (its inputs field
        when the tensor is mapped there), the outputs, or the form as a whole."""
        message = sentence(str(error)) + "."
        rows = [i for i, name in enumerate(self.names) if error.stage and name == error.stage]
        if about_outputs(error):
            self.form.add_error("outputs", message)
        elif rows:
            # The last row of that name: for "two stages are named", the second one.
            row = self.rows[rows[-1]]
            mapped = row.cleaned_data.get("inputs") or {}
            row.add_error("inputs" if error.tensor and error.tensor in mapped else None, message)
        else:
            self.form.add_error(None, message)
