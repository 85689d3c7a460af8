"""Pipelines as data: the wiring of stages, checked before anything runs, and the one
loop that runs them. No Django imports: the registry, the validation child and the
workers all use this module.

A pipeline version is a list of stages; each stage is a ready version of another model
with a mapping from its input names to sources. A source is `input.<name>`, a tensor the
client sends, or `<stage>.<output>`, an output of an earlier stage. The pipeline's own
outputs map names to `<stage>.<output>` sources the same way.
"""

from __future__ import annotations

import contextlib
import re
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from registry.signature import Signature, TensorSpec

CLIENT = "input"  # the source prefix of the tensors a client sends
MAX_STAGES = 16
STAGE_NAME = re.compile(r"^[a-z][a-z0-9_]{0,31}$")
# Taken by the gateway's own stage figures (Server-Timing, the stage histogram) and by
# the source prefix of client inputs.
RESERVED_STAGE_NAMES = frozenset({CLIENT, "validation", "queue", "compute", "total", "cache", "wait"})


class WiringError(ValueError):
    """A pipeline that does not fit together; names the stage and the tensor."""

    def __init__(self, message: str, stage: str = "", tensor: str = "") -> None:
        super().__init__(message)
        self.stage = stage
        self.tensor = tensor


@dataclass(frozen=True)
class StagePlan:
    """A stage as the wiring sees it: its name, the signature of its version, its inputs' sources."""

    name: str
    signature: Signature
    inputs: Mapping[str, str] = field(default_factory=dict)
    timeout_ms: int = 0
    label: str = ""  # "<model> v<number>", for messages


@dataclass(frozen=True)
class Wiring:
    """A checked pipeline: every stage's inputs explicit, the outputs explicit, the signature it serves."""

    stages: tuple[StagePlan, ...]
    outputs: dict[str, str]
    signature: Signature


def _describe(spec: TensorSpec) -> str:
    return f"{spec['datatype']} {spec['shape']}"


def _merge_shapes(wanted: list[int], given: list[int]) -> list[int] | str:
    """The shape both describe, or why they cannot be the same tensor."""
    if len(wanted) != len(given):
        return f"rank {len(wanted)} there, {len(given)} here"
    merged = []
    for index, (a, b) in enumerate(zip(wanted, given, strict=True)):
        if a != -1 and b != -1 and a != b:
            return f"dimension {index} is {a} there, {b} here"
        merged.append(a if a != -1 else b)
    return merged


def _source(raw: Any, stage: str, tensor: str) -> tuple[str, str]:
    if not isinstance(raw, str) or raw.count(".") != 1 or not all(raw.split(".")):
        raise WiringError(
            f"stage '{stage}' input '{tensor}': source {raw!r} is not 'input.<name>' or '<stage>.<output>'",
            stage,
            tensor,
        )
    owner, name = raw.split(".")
    return owner, name


def wire(stages: Sequence[StagePlan], outputs: Mapping[str, str] | None = None) -> Wiring:
    """Check that `stages` fit together and derive what the pipeline serves.

    An input left out of a stage's mapping is taken from the tensor of the same name:
    the previous stage's output, or for the first stage the client's input. Without
    `outputs`, the pipeline answers the last stage's outputs under their own names.
    """
    if not stages:
        raise WiringError("a pipeline needs at least one stage")
    if len(stages) > MAX_STAGES:
        raise WiringError(f"a pipeline has at most {MAX_STAGES} stages; this one has {len(stages)}")
    produced: dict[str, dict[str, TensorSpec]] = {}  # stage -> its outputs
    client: dict[str, TensorSpec] = {}  # the pipeline's inputs, in order of first use
    checked: list[StagePlan] = []
    for position, stage in enumerate(stages):
        if not STAGE_NAME.match(stage.name):
            raise WiringError(
                f"stage {position + 1}: name {stage.name!r} must be 1-32 lowercase letters, digits or '_', "
                "starting with a letter",
                stage.name,
            )
        if stage.name in RESERVED_STAGE_NAMES:
            raise WiringError(f"stage name '{stage.name}' is reserved; choose another", stage.name)
        if stage.name in produced:
            raise WiringError(f"two stages are named '{stage.name}'", stage.name)
        if stage.timeout_ms < 0:
            raise WiringError(f"stage '{stage.name}': timeout_ms must not be negative", stage.name)
        own = {spec["name"]: spec for spec in stage.signature["inputs"]}
        unknown = sorted(set(stage.inputs) - set(own))
        if unknown:
            raise WiringError(
                f"stage '{stage.name}' ({stage.label or 'its version'}) has no input '{unknown[0]}'; "
                f"its inputs are {', '.join(own) or 'none'}",
                stage.name,
                unknown[0],
            )
        previous = checked[-1].name if checked else CLIENT
        explicit: dict[str, str] = {}
        for name, spec in own.items():
            raw = stage.inputs.get(name)
            if raw is None:
                if previous != CLIENT and name not in produced[previous]:
                    raise WiringError(
                        f"stage '{stage.name}' input '{name}' is not wired, and stage '{previous}' has no output "
                        f"of that name (its outputs are {', '.join(produced[previous])}): "
                        f'map it to one, e.g. "{name}": "{previous}.{next(iter(produced[previous]))}"',
                        stage.name,
                        name,
                    )
                raw = f"{previous}.{name}"
            owner, tensor = _source(raw, stage.name, name)
            if owner == CLIENT:
                known = client.get(tensor)
                if known is not None:
                    if known["datatype"] != spec["datatype"]:
                        raise WiringError(
                            f"stage '{stage.name}' input '{name}' ({_describe(spec)}) reads the pipeline input "
                            f"'{tensor}', which an earlier stage reads as {_describe(known)}",
                            stage.name,
                            name,
                        )
                    merged = _merge_shapes(known["shape"], spec["shape"])
                    if isinstance(merged, str):
                        raise WiringError(
                            f"stage '{stage.name}' input '{name}' ({_describe(spec)}) reads the pipeline input "
                            f"'{tensor}', which an earlier stage reads as {_describe(known)}: {merged}",
                            stage.name,
                            name,
                        )
                    client[tensor] = {"name": tensor, "datatype": spec["datatype"], "shape": merged}
                else:
                    client[tensor] = {"name": tensor, "datatype": spec["datatype"], "shape": list(spec["shape"])}
            else:
                if owner not in produced:
                    later = owner in {s.name for s in stages[position:]}
                    why = "runs later; a stage reads only earlier stages" if later else "is not a stage"
                    raise WiringError(
                        f"stage '{stage.name}' input '{name}' reads '{raw}', but '{owner}' {why}",
                        stage.name,
                        name,
                    )
                source = produced[owner].get(tensor)
                if source is None:
                    raise WiringError(
                        f"stage '{stage.name}' input '{name}' reads '{raw}', but stage '{owner}' has no output "
                        f"'{tensor}'; its outputs are {', '.join(produced[owner])}",
                        stage.name,
                        name,
                    )
                if source["datatype"] != spec["datatype"]:
                    raise WiringError(
                        f"stage '{stage.name}' input '{name}' ({_describe(spec)}) cannot take '{raw}' "
                        f"({_describe(source)}): the datatypes differ",
                        stage.name,
                        name,
                    )
                merged = _merge_shapes(spec["shape"], source["shape"])
                if isinstance(merged, str):
                    raise WiringError(
                        f"stage '{stage.name}' input '{name}' ({_describe(spec)}) cannot take '{raw}' "
                        f"({_describe(source)}): {merged}",
                        stage.name,
                        name,
                    )
            explicit[name] = f"{owner}.{tensor}"
        produced[stage.name] = {spec["name"]: spec for spec in stage.signature["outputs"]}
        checked.append(StagePlan(stage.name, stage.signature, explicit, stage.timeout_ms, stage.label))

    last = checked[-1].name
    wanted = dict(outputs) if outputs else {name: f"{last}.{name}" for name in produced[last]}
    served: list[TensorSpec] = []
    explicit_outputs: dict[str, str] = {}
    for name, raw in wanted.items():
        if not isinstance(name, str) or not re.match(r"^[A-Za-z_][A-Za-z0-9_.:/-]{0,63}$", name):
            raise WiringError(f"pipeline output name {name!r} is not a valid tensor name", "", str(name))
        owner, tensor = _source(raw, "outputs", name)
        source = produced.get(owner, {}).get(tensor)
        if owner == CLIENT or source is None:
            raise WiringError(
                f"pipeline output '{name}' reads '{raw}', which no stage produces",
                owner if owner in produced else "",
                name,
            )
        served.append({"name": name, "datatype": source["datatype"], "shape": list(source["shape"])})
        explicit_outputs[name] = f"{owner}.{tensor}"
    if not served:
        raise WiringError("the pipeline has no outputs")
    inputs = list(client.values())
    if not inputs:
        raise WiringError("no stage reads a client input: map at least one input to 'input.<name>'")
    batch_dim = all(stage.signature["batch_dim"] for stage in checked) and all(
        spec["shape"] and spec["shape"][0] == -1 for spec in inputs + served
    )
    signature: Signature = {"inputs": inputs, "outputs": served, "batch_dim": batch_dim}
    return Wiring(tuple(checked), explicit_outputs, signature)


def fits_after(prefix: Sequence[StagePlan], candidate: StagePlan) -> bool:
    """Whether a stage picker offers `candidate` as the stage after `prefix` (the dashboard's
    "new pipeline version" form). Only a hint: `wire` still decides when the version is created.

    Offered when either
    - `prefix` followed by `candidate` wires as it is, the candidate's inputs taken by name
      (from the stage before it, or from the client for a first stage: so every first stage
      is offered), or
    - every input of `candidate` can be fed by a tensor before it of the same datatype and a
      compatible shape (-1 matches any size): an output of any stage of `prefix`, or a
      pipeline input that the stages of `prefix` read. The user then maps the inputs.
    """
    names = {stage.name for stage in prefix}
    name = next(f"candidate{n}" for n in range(len(prefix) + 1) if f"candidate{n}" not in names)
    try:
        wire([*prefix, StagePlan(name, candidate.signature, label=candidate.label)])
        return True
    except WiringError:
        if not prefix:
            return False
    available = [spec for stage in prefix for spec in stage.signature["outputs"]]
    # A prefix that does not wire yet has no known pipeline inputs; its outputs still count.
    with contextlib.suppress(WiringError):
        available += wire(prefix).signature["inputs"]

    def feeds(source: TensorSpec, spec: TensorSpec) -> bool:
        same_type = source["datatype"] == spec["datatype"]
        return same_type and isinstance(_merge_shapes(spec["shape"], source["shape"]), list)

    return all(any(feeds(source, spec) for source in available) for spec in candidate.signature["inputs"])


class StageDeadlineExceeded(Exception):
    """A stage ran past its deadline (its own, or the requests', whichever came first)."""

    def __init__(self, stage: str, budget_ms: float) -> None:
        if budget_ms > 0:
            message = f"stage '{stage}' passed its deadline of {budget_ms:.0f} ms"
        else:
            message = f"the deadline passed before stage '{stage}' could start"
        super().__init__(message)
        self.stage = stage
        self.budget_ms = budget_ms


class StageFailed(Exception):
    """A stage raised; `__cause__` is the error."""

    def __init__(self, stage: str, error: BaseException) -> None:
        super().__init__(f"stage '{stage}' failed: {error}")
        self.stage = stage
        self.error = error


# run(feeds, deadline as time.monotonic() or None) -> outputs in the stage's output order
StageRunner = Callable[[dict[str, Any], float | None], Sequence[Any]]


@dataclass(frozen=True)
class Timed:
    stage: str
    ms: float


def execute(
    wiring: Wiring,
    runners: Mapping[str, StageRunner],
    feeds: Mapping[str, Any],
    deadline: float | None = None,
    stage_deadlines: bool = True,
) -> tuple[list[Any], list[Timed]]:
    """Run the stages back to back on `feeds` (the client's tensors by name); the pipeline's
    outputs in signature order, and each stage's time.

    Each stage gets until its own timeout or `deadline` (time.monotonic()), the earlier;
    a runner that passes it raises, and so does one with no time left to start. Without
    `stage_deadlines` (a warm-up, whose first runs pay for lazy initialisation) only
    `deadline` applies."""
    values: dict[str, Any] = {f"{CLIENT}.{name}": array for name, array in feeds.items()}
    timings: list[Timed] = []
    for stage in wiring.stages:
        started = time.monotonic()
        stage_deadline = deadline
        if stage.timeout_ms and stage_deadlines:
            own = started + stage.timeout_ms / 1000
            stage_deadline = own if deadline is None else min(own, deadline)
        if stage_deadline is not None and stage_deadline <= started:
            raise StageDeadlineExceeded(stage.name, 0.0)
        try:
            outputs = runners[stage.name](
                {name: values[source] for name, source in stage.inputs.items()}, stage_deadline
            )
        except StageDeadlineExceeded:
            raise
        except Exception as exc:
            raise StageFailed(stage.name, exc) from exc
        timings.append(Timed(stage.name, (time.monotonic() - started) * 1000))
        for spec, array in zip(stage.signature["outputs"], outputs, strict=True):
            values[f"{stage.name}.{spec['name']}"] = array
    return [values[wiring.outputs[spec["name"]]] for spec in wiring.signature["outputs"]], timings
