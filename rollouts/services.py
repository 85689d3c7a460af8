"""Rollouts: starting, steering and ending canaries, A/B experiments and shadows.

Every transition is audited and tells the gateways to re-read the model's
routing (registry.events.catalog_changed), which applies within a second.
"""

from __future__ import annotations

import itertools
import logging
from dataclasses import dataclass
from typing import Any

from django.db import IntegrityError, transaction
from django.utils import timezone

from audit.services import record
from registry import services as registry
from registry.events import catalog_changed
from registry.models import ModelVersion, RegisteredModel, VersionStatus
from rollouts.models import ACTIVE, Arm, Rollout, RolloutKind, RolloutStatus
from rollouts.rewards import persist_rewards
from rollouts.safety import promotion_blocker, signature_conflict

logger = logging.getLogger(__name__)

DEFAULT_CANARY: dict[str, Any] = {
    "steps": [5, 25, 50, 100],
    "step_seconds": 600,
    "analysis_interval_seconds": 60,
    "gates": {
        "min_requests": 100,
        "max_error_rate_increase": 0.01,
        "max_p95_ratio": 1.25,
        "min_reward_ratio": None,
    },
}


class RolloutError(Exception):
    """A rollout request refused, with a message for the user; `field` names the input at
    fault, so that forms and serializers show it next to that field."""

    def __init__(self, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.field = field


# --- The rules of starting a rollout: the forms and serializers only parse, these decide. ---


def check_steps(steps: list[float]) -> list[float]:
    """A canary's traffic share at each step: percentages, increasing, ending at 100."""
    if not steps:
        raise RolloutError("give at least one step, e.g. [5, 25, 50, 100]", "steps")
    if any(not (0 < step <= 100) for step in steps):
        raise RolloutError("each step is a percentage above 0 and at most 100", "steps")
    if any(later <= earlier for earlier, later in itertools.pairwise(steps)):
        raise RolloutError("steps must increase, each larger than the one before, e.g. [5, 25, 50, 100]", "steps")
    if steps[-1] != 100:
        raise RolloutError(
            "the last step must be 100 (the canary ends with all the traffic): "
            "steps must be increasing percentages in (0, 100] ending at 100, e.g. [5, 25, 50, 100]",
            "steps",
        )
    return steps


def check_arms(arms: list[tuple[str, ModelVersion, float]], control: str | None) -> str:
    """An experiment's arms (two or more, named once each, weights that share something);
    the control arm's name."""
    if len(arms) < 2:
        raise RolloutError("an experiment needs at least two arms", "arms")
    names = [name for name, _, _ in arms]
    if len(set(names)) != len(names):
        raise RolloutError("arm names must be unique: each arm needs its own name", "arms")
    if any(weight < 0 for _, _, weight in arms) or sum(weight for _, _, weight in arms) <= 0:
        raise RolloutError("weights must be non-negative and add up to more than 0", "arms")
    control = control or names[0]
    if control not in names:
        raise RolloutError(f"'{control}' is not the name of one of the arms ({', '.join(names)})", "control")
    return control


def check_statistics(metric: str, minimum_effect: float | None, alpha: float) -> None:
    if metric not in ("binary", "numeric"):
        raise RolloutError("metric must be 'binary' (conversion) or 'numeric' (reward)", "metric")
    if minimum_effect is not None and not minimum_effect > 0:
        raise RolloutError("the minimum effect must be a positive difference, or left out", "minimum_effect")
    if not (0 < alpha < 0.5):
        raise RolloutError("alpha must be between 0 and 0.5 (exclusive), e.g. 0.05", "alpha")


def check_fraction(fraction: float) -> float:
    if not (0 < fraction <= 1):
        raise RolloutError("the mirrored share must be more than 0 and at most 1, e.g. 0.1 for a tenth", "fraction")
    return fraction


def snapshot(rollout: Rollout) -> dict[str, Any]:
    return {
        "kind": rollout.kind,
        "status": rollout.status,
        "step": rollout.step,
        "config": rollout.config,
        "arms": {arm.name: {"version": arm.version.number, "weight": arm.weight} for arm in rollout.arms.all()},
        "outcome": rollout.outcome,
    }


def _ready(model: RegisteredModel, version: ModelVersion) -> ModelVersion:
    if version.model_id != model.pk:
        raise RolloutError(f"version {version.number} belongs to another model")
    if version.status != VersionStatus.READY:
        raise RolloutError(f"version {version.number} is {version.status}; only a ready version can take traffic")
    return version


def _fits(champion: ModelVersion | None, version: ModelVersion, field: str = "version") -> ModelVersion:
    why = signature_conflict(champion, version)
    if why is not None:
        raise RolloutError(why, field)
    return version


def _champion(model: RegisteredModel) -> ModelVersion:
    champion = registry.serving_version(model)
    if champion is None:
        raise RolloutError(f"model '{model.name}' has no production version to compare against; set one first")
    return champion


def _create(
    model: RegisteredModel, kind: str, config: dict[str, Any], actor: Any, arms: list[Arm], **fields: Any
) -> Rollout:
    try:
        with transaction.atomic():
            # Lock the arms' versions (in id order) and check them again: an archive
            # that committed after the caller's checks wins, and a later one sees
            # these arms (registry.services.archive_version locks the same rows).
            versions = ModelVersion.objects.select_for_update().filter(pk__in={arm.version_id for arm in arms})
            for current in versions.order_by("pk"):
                _ready(model, current)
            rollout = Rollout.objects.create(
                model=model, kind=kind, config=config, created_by=_user(actor), step_started_at=timezone.now(), **fields
            )
            for arm in arms:
                arm.rollout = rollout
                arm.save()
            record(actor, f"rollout.{kind}_started", rollout, after=snapshot(rollout))
            catalog_changed(model.name)
    except IntegrityError:
        raise RolloutError(f"model '{model.name}' already has an active rollout; end it first") from None
    return rollout


def _user(actor: Any) -> Any:
    return actor if getattr(actor, "is_authenticated", False) else None


def start_canary(
    model: RegisteredModel, version: ModelVersion, *, actor: Any, config: dict[str, Any] | None = None, **fields: Any
) -> Rollout:
    champion = _champion(model)
    _ready(model, version)
    if version.pk == champion.pk:
        raise RolloutError(f"version {version.number} is already the production version")
    _fits(champion, version)
    merged = {**DEFAULT_CANARY, **(config or {})}
    merged["gates"] = {**DEFAULT_CANARY["gates"], **((config or {}).get("gates") or {})}
    steps = check_steps(merged["steps"])
    for name in ("step_seconds", "analysis_interval_seconds"):
        if merged[name] < 1:
            raise RolloutError(f"{name} must be at least 1 second", name)
    arms = [
        Arm(name="champion", version=champion, weight=100 - steps[0], is_control=True),
        Arm(name="canary", version=version, weight=steps[0]),
    ]
    return _create(model, RolloutKind.CANARY, merged, actor, arms, **fields)


def start_experiment(
    model: RegisteredModel,
    arms: list[tuple[str, ModelVersion, float]],
    *,
    actor: Any,
    control: str | None = None,
    metric: str = "binary",
    minimum_effect: float | None = None,
    alpha: float = 0.05,
    **fields: Any,
) -> Rollout:
    control = check_arms(arms, control)
    check_statistics(metric, minimum_effect, alpha)
    # Every arm answers the model's requests: each must fit production's signature, or
    # without a production version, the control arm's.
    reference = registry.serving_version(model) or next(version for name, version, _ in arms if name == control)
    for _, version, _ in arms:
        _fits(reference, version, "arms")
    total = sum(weight for _, _, weight in arms)
    built = [
        Arm(name=name, version=_ready(model, version), weight=100 * weight / total, is_control=name == control)
        for name, version, weight in arms
    ]
    config = {"metric": metric, "minimum_effect": minimum_effect, "alpha": alpha}
    return _create(model, RolloutKind.EXPERIMENT, config, actor, built, **fields)


def start_shadow(
    model: RegisteredModel, version: ModelVersion, *, actor: Any, fraction: float = 1.0, **fields: Any
) -> Rollout:
    champion = _champion(model)
    _ready(model, version)
    _fits(champion, version)
    check_fraction(fraction)
    arms = [
        Arm(name="champion", version=champion, weight=100, is_control=True),
        Arm(name="shadow", version=version, weight=0),
    ]
    return _create(model, RolloutKind.SHADOW, {"fraction": fraction}, actor, arms, **fields)


def _transition(
    rollout: Rollout, *, actor: Any, action: str, allowed: tuple[str, ...], status: str, **changes: Any
) -> Rollout:
    with transaction.atomic():
        locked = Rollout.objects.select_for_update().get(pk=rollout.pk)
        if locked.status not in allowed:
            state = locked.get_status_display().lower()
            article = "an" if state[0] in "aeiou" else "a"
            raise RolloutError(f"{article} {state} rollout cannot be {action.replace('_', ' ')}")
        before = snapshot(locked)
        if status not in ACTIVE:
            # Rewards live in Redis while a rollout runs; its rows keep them after.
            persist_rewards(locked)
        locked.status = status
        for field, value in changes.items():
            setattr(locked, field, value)
        if status not in ACTIVE:
            locked.ended_at = timezone.now()
        locked.save()
        record(actor, f"rollout.{action}", locked, before=before, after=snapshot(locked))
        catalog_changed(locked.model.name)
    return locked


def pause(rollout: Rollout, *, actor: Any) -> Rollout:
    return _transition(
        rollout, actor=actor, action="paused", allowed=(RolloutStatus.RUNNING,), status=RolloutStatus.PAUSED
    )


def resume(rollout: Rollout, *, actor: Any) -> Rollout:
    # The current step's clock restarts: the time paused does not count.
    return _transition(
        rollout,
        actor=actor,
        action="resumed",
        allowed=(RolloutStatus.PAUSED,),
        status=RolloutStatus.RUNNING,
        step_started_at=timezone.now(),
    )


def abort(rollout: Rollout, *, actor: Any, reason: str = "aborted by hand") -> Rollout:
    return _transition(
        rollout,
        actor=actor,
        action="aborted",
        allowed=ACTIVE,
        status=RolloutStatus.ABORTED,
        outcome={"reason": reason, "at": timezone.now().isoformat()},
    )


def rollback(rollout: Rollout, *, gate: str, figures: dict[str, Any], actor: Any = None) -> Rollout:
    """A gate failed: all traffic back to the champion at once."""
    outcome = {"reason": f"gate '{gate}' failed", "gate": gate, "figures": figures, "at": timezone.now().isoformat()}
    logger.warning("rollout %s rolled back: %s", rollout.pk, outcome)
    return _transition(
        rollout, actor=actor, action="rolled_back", allowed=ACTIVE, status=RolloutStatus.ROLLED_BACK, outcome=outcome
    )


def promote(
    rollout: Rollout,
    *,
    actor: Any,
    arm_name: str | None = None,
    figures: dict[str, Any] | None = None,
    judged: bool = False,
) -> Rollout:
    """Move `production` to the canary (or the chosen arm) and end the rollout.

    Refused when that arm fails, beyond doubt, more often than the champion (rollouts/safety.py),
    unless `judged`: the canary analysis promotes only once its own gates passed."""
    arms = {arm.name: arm for arm in rollout.arms.select_related("version")}
    if arm_name is None:
        arm_name = {"canary": "canary", "shadow": "shadow"}.get(rollout.kind, "")
    if arm_name not in arms:
        raise RolloutError(f"no arm named '{arm_name}'; arms are {sorted(arms)}")
    if not judged and rollout.is_active:
        blocker = promotion_blocker(rollout, arm_name)
        if blocker is not None:
            raise RolloutError(blocker)
    with transaction.atomic():
        locked = _transition(
            rollout,
            actor=actor,
            action="promoted",
            allowed=ACTIVE,
            status=RolloutStatus.PROMOTED,
            outcome={
                "winner": arm_name,
                "version": arms[arm_name].version.number,
                "figures": figures or {},
                "at": timezone.now().isoformat(),
            },
        )
        registry.set_alias(locked.model, registry.PRODUCTION, arms[arm_name].version, actor=actor)
    return locked


def stop_experiment(rollout: Rollout, *, actor: Any) -> Rollout:
    return _transition(
        rollout,
        actor=actor,
        action="stopped",
        allowed=ACTIVE,
        status=RolloutStatus.STOPPED,
        outcome={"reason": "stopped without promotion", "at": timezone.now().isoformat()},
    )


def set_canary_step(
    rollout: Rollout, step: int, *, actor: Any = None, figures: dict[str, Any] | None = None
) -> Rollout:
    """Move a running canary to `step` (an index into its steps); weights follow."""
    steps = rollout.config["steps"]
    if not 0 <= step < len(steps):
        raise RolloutError(f"step {step} is outside 0..{len(steps) - 1}")
    with transaction.atomic():
        locked = Rollout.objects.select_for_update().get(pk=rollout.pk)
        if locked.status != RolloutStatus.RUNNING:
            raise RolloutError("only a running canary advances")
        before = snapshot(locked)
        locked.step = step
        locked.step_started_at = timezone.now()
        locked.save()
        Arm.objects.filter(rollout=locked, name="canary").update(weight=steps[step])
        Arm.objects.filter(rollout=locked, name="champion").update(weight=100 - steps[step])
        after = snapshot(locked)
        if figures:
            after["figures"] = figures
        record(actor, "rollout.step_advanced", locked, before=before, after=after)
        catalog_changed(locked.model.name)
    return locked


def active_rollout(model: RegisteredModel) -> Rollout | None:
    return Rollout.objects.filter(model=model, status__in=ACTIVE).prefetch_related("arms__version").first()


@dataclass(frozen=True)
class RoutingArm:
    name: str
    version: int  # version number
    weight: float


@dataclass(frozen=True)
class Routing:
    """What the gateway needs to route a model's requests during a rollout."""

    rollout_id: int
    kind: str
    routing_header: str
    arms: tuple[RoutingArm, ...]
    shadow: RoutingArm | None = None
    shadow_fraction: float = 0.0
    metric: str = "numeric"  # what feedback rewards are: "binary" (0 or 1) or "numeric"


def routing_for(model: RegisteredModel) -> Routing | None:
    rollout = active_rollout(model)
    if rollout is None:
        return None
    arms = [RoutingArm(a.name, a.version.number, a.weight) for a in rollout.arms.all()]
    if rollout.kind == RolloutKind.SHADOW:
        traffic = tuple(a for a in arms if a.name != "shadow")
        shadow = next((a for a in arms if a.name == "shadow"), None)
        return Routing(
            rollout.pk,
            rollout.kind,
            rollout.routing_header.lower(),
            traffic,
            shadow,
            float(rollout.config.get("fraction", 1.0)),
        )
    # A canary's rewards are compared by their means (its min_reward_ratio gate): numeric.
    metric = str(rollout.config.get("metric", "binary")) if rollout.kind == RolloutKind.EXPERIMENT else "numeric"
    return Routing(rollout.pk, rollout.kind, rollout.routing_header.lower(), tuple(arms), metric=metric)
