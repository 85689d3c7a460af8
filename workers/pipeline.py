"""A pipeline version in a worker: its stages' sessions, run back to back on one batch
(registry/pipelines.py `execute`), each stopped at its own deadline. No Django imports.

The stages' sessions live in the worker's session pool under their own version ids, so
a version served on its own and as a stage is loaded once.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from registry.pipelines import StageDeadlineExceeded, StagePlan, StageRunner, Timed, Wiring, execute
from registry.signature import Signature
from workers.runtime import DeadlinePassed, LoadedSession


@dataclass(frozen=True)
class ServedStage:
    """One stage as a worker serves it (read from the registry)."""

    name: str
    version_id: int
    label: str
    artifact: str
    signature: dict[str, Any]
    inputs: tuple[tuple[str, str], ...]
    timeout_ms: int
    execution_provider: str
    intra_op_threads: int = 0


def wiring_of(stages: tuple[ServedStage, ...], outputs: tuple[tuple[str, str], ...], signature: Signature) -> Wiring:
    """The wiring the registry checked and stored; not checked again here."""
    plans = tuple(StagePlan(s.name, s.signature, dict(s.inputs), s.timeout_ms, s.label) for s in stages)  # type: ignore[arg-type]
    return Wiring(plans, dict(outputs), signature)


def _runner(name: str, session: LoadedSession) -> StageRunner:
    def run(feeds: dict[str, Any], deadline: float | None) -> list[Any]:
        started = time.monotonic()
        try:
            return session.run(feeds, deadline)
        except DeadlinePassed:
            budget = ((deadline or started) - started) * 1000
            raise StageDeadlineExceeded(name, budget) from None

    return run


class LoadedPipeline:
    """What the batching loop runs for a pipeline version; shaped like a LoadedSession."""

    def __init__(self, version_id: int, wiring: Wiring, sessions: dict[str, LoadedSession]) -> None:
        self.version_id = version_id
        self.wiring = wiring
        self.stage_version_ids = {session.version_id for session in sessions.values()}
        self.input_names = [spec["name"] for spec in wiring.signature["inputs"]]
        self.output_names = [spec["name"] for spec in wiring.signature["outputs"]]
        self.output_datatypes = [spec["datatype"] for spec in wiring.signature["outputs"]]
        providers = sorted({session.provider for session in sessions.values()})
        self.provider = "+".join(providers)
        self._runners = {name: _runner(name, session) for name, session in sessions.items()}

    def run_stages(self, feeds: dict[str, Any], deadline: float | None) -> tuple[list[Any], list[Timed]]:
        """The pipeline's outputs and each stage's time; StageDeadlineExceeded or StageFailed
        (from registry/pipelines.py) when a stage did not finish."""
        return execute(self.wiring, self._runners, feeds, deadline)

    def run(self, feeds: dict[str, Any], deadline: float | None = None) -> list[Any]:
        return self.run_stages(feeds, deadline)[0]

    def warm_up(self, feeds: dict[str, Any]) -> None:
        """A run without the stages' own deadlines: the first run of a session pays for lazy initialisation."""
        execute(self.wiring, self._runners, feeds, None, stage_deadlines=False)
