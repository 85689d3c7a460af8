"""A model's fallback policy: which failures trigger a fallback and the chain that answers.

Stored as JSON on `RegisteredModel.fallback` and read by the gateway (gateway/fallbacks.py).
Pure: parsing and checking the policy's shape, and whether a version's signature can answer
for another's. Which versions exist is checked by registry/fallback_services.py.

    {"on": ["timeout", "model_error", "overload"],
     "chain": [{"kind": "cache", "ttl_seconds": 86400},
               {"kind": "version", "version": 2},
               {"kind": "version", "model": "fraud-small", "version": 1},
               {"kind": "human_review", "status": 200}],
     "reserve_ms": 100}
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

TRIGGERS = ("timeout", "model_error", "overload")
KINDS = ("cache", "version", "human_review")
HUMAN_REVIEW_STATUSES = (200, 202)
MAX_STEPS = 5
DEFAULT_CACHE_TTL_SECONDS = 24 * 3600
MAX_CACHE_TTL_SECONDS = 7 * 24 * 3600
DEFAULT_RESERVE_MS = 100
MAX_RESERVE_MS = 10_000
# The least time a fallback version gets, even when less of the request's deadline is left
# (only possible with a reserve below it): an enqueue and a small model's run.
FLOOR_MS = 25


class PolicyError(ValueError):
    """What is wrong with a policy, naming the field."""


@dataclass(frozen=True)
class FallbackStep:
    kind: str
    ttl_seconds: int = 0  # cache: how long a good answer stays available
    model: str | None = None  # version: another model's version (None: this model's)
    version: int = 0
    status: int = 200  # human_review: the answer's HTTP status

    def as_json(self) -> dict[str, Any]:
        if self.kind == "cache":
            return {"kind": "cache", "ttl_seconds": self.ttl_seconds}
        if self.kind == "version":
            found: dict[str, Any] = {"kind": "version", "version": self.version}
            if self.model is not None:
                found["model"] = self.model
            return found
        return {"kind": "human_review", "status": self.status}

    def describe(self, served: str) -> str:
        if self.kind == "cache":
            return f"the last good answer to the same input (kept {self.ttl_seconds} s)"
        if self.kind == "version":
            return f"{self.model or served} v{self.version}"
        return f"human review ({self.status}, no outputs)"


@dataclass(frozen=True)
class FallbackPolicy:
    on: frozenset[str]
    chain: tuple[FallbackStep, ...]
    reserve_ms: int = DEFAULT_RESERVE_MS

    @property
    def triggers(self) -> list[str]:
        """`on` in its documented order (a frozenset's order changes from process to process)."""
        return [trigger for trigger in TRIGGERS if trigger in self.on]

    @property
    def caches_answers(self) -> FallbackStep | None:
        """The cache step, when there is one: good answers must then be kept."""
        return next((step for step in self.chain if step.kind == "cache"), None)

    def reserve_s(self, timeout_s: float) -> float:
        """Time held back from the serving version for the chain, when a timeout triggers it:
        the reserve, at most half the request's timeout."""
        if "timeout" not in self.on:
            return 0.0
        return min(self.reserve_ms / 1000, timeout_s / 2)

    def as_json(self) -> dict[str, Any]:
        return {
            "on": self.triggers,
            "chain": [step.as_json() for step in self.chain],
            "reserve_ms": self.reserve_ms,
        }


def _integer(value: Any, where: str, low: int, high: int) -> int:
    if type(value) is not int or not low <= value <= high:
        raise PolicyError(f"{where} must be an integer from {low} to {high}, not {value!r}")
    return value


def _only(data: Mapping[str, Any], allowed: Sequence[str], where: str) -> None:
    unknown = sorted(set(data) - set(allowed))
    if unknown:
        raise PolicyError(f"{where}: unknown field(s) {', '.join(unknown)}; allowed: {', '.join(allowed)}")


def _step(data: Any, index: int) -> FallbackStep:
    where = f"chain[{index}]"
    if not isinstance(data, Mapping):
        raise PolicyError(f"{where} must be an object with a 'kind' ({', '.join(KINDS)})")
    kind = data.get("kind")
    if kind not in KINDS:
        raise PolicyError(f"{where}.kind must be one of {', '.join(KINDS)}, not {kind!r}")
    if kind == "cache":
        _only(data, ("kind", "ttl_seconds"), where)
        ttl = data.get("ttl_seconds", DEFAULT_CACHE_TTL_SECONDS)
        return FallbackStep("cache", ttl_seconds=_integer(ttl, f"{where}.ttl_seconds", 1, MAX_CACHE_TTL_SECONDS))
    if kind == "version":
        _only(data, ("kind", "version", "model"), where)
        if "version" not in data:
            raise PolicyError(f"{where}.version is required: the number of the version that answers")
        number = _integer(data["version"], f"{where}.version", 1, 2**31 - 1)
        model = data.get("model")
        if model is not None and (not isinstance(model, str) or not model):
            raise PolicyError(f"{where}.model must be a model name, or left out for this model's versions")
        return FallbackStep("version", model=model, version=number)
    _only(data, ("kind", "status"), where)
    status = data.get("status", 200)
    if status not in HUMAN_REVIEW_STATUSES or type(status) is not int:
        allowed = " or ".join(map(str, HUMAN_REVIEW_STATUSES))
        raise PolicyError(f"{where}.status must be {allowed}, not {status!r}")
    return FallbackStep("human_review", status=status)


def parse(data: Any) -> FallbackPolicy:
    """A policy from its JSON; PolicyError naming the first thing wrong."""
    if not isinstance(data, Mapping):
        raise PolicyError("the fallback must be an object with 'chain' (and optionally 'on' and 'reserve_ms'), or null")
    _only(data, ("on", "chain", "reserve_ms"), "fallback")
    on = data.get("on", list(TRIGGERS))
    if not isinstance(on, list) or not on:
        raise PolicyError(f"on must be a non-empty list of: {', '.join(TRIGGERS)}")
    for trigger in on:
        if trigger not in TRIGGERS:
            raise PolicyError(f"on: {trigger!r} is not a failure a fallback can take; use {', '.join(TRIGGERS)}")
    if len(set(on)) != len(on):
        raise PolicyError("on lists a failure twice")
    chain = data.get("chain")
    if not isinstance(chain, list) or not chain:
        raise PolicyError("chain must be a non-empty list of steps: cache, version, human_review")
    if len(chain) > MAX_STEPS:
        raise PolicyError(f"chain has {len(chain)} steps; at most {MAX_STEPS}")
    steps = tuple(_step(item, index) for index, item in enumerate(chain))
    kinds = [step.kind for step in steps]
    for once in ("cache", "human_review"):
        if kinds.count(once) > 1:
            raise PolicyError(f"chain has more than one '{once}' step")
    if "human_review" in kinds and kinds[-1] != "human_review":
        raise PolicyError("human_review always answers: it must be the chain's last step")
    targets = [(step.model, step.version) for step in steps if step.kind == "version"]
    if len(set(targets)) != len(targets):
        raise PolicyError("chain names the same fallback version twice")
    reserve = _integer(data.get("reserve_ms", DEFAULT_RESERVE_MS), "reserve_ms", 0, MAX_RESERVE_MS)
    return FallbackPolicy(frozenset(on), steps, reserve)
