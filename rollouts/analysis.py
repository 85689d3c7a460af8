"""Canary analysis and experiment reports, from the same per-arm figures the
dashboard shows (observability.queries) and the rewards joined by
the feedback endpoint."""

from __future__ import annotations

import datetime as dt
import logging
from dataclasses import dataclass, field
from typing import Any

from django.utils import timezone

from observability.queries import Figures
from rollouts import safety, services
from rollouts.figures import arm_figures
from rollouts.models import Arm, Rollout, RolloutKind, RolloutStatus
from rollouts.rewards import rewards
from rollouts.statistics import Comparison, Moments, compare

logger = logging.getLogger(__name__)


@dataclass
class Gate:
    name: str
    passed: bool | None  # None: not enough data yet
    value: float | None
    threshold: float | None
    detail: str = ""


@dataclass
class CanaryAnalysis:
    action: str  # wait, advance, promote, rollback
    gates: list[Gate] = field(default_factory=list)
    figures: dict[str, Any] = field(default_factory=dict)
    at: str = ""

    def as_json(self) -> dict[str, Any]:
        return {
            "action": self.action,
            "at": self.at,
            "gates": [g.__dict__ for g in self.gates],
            "figures": self.figures,
        }


def early_abort_gate(canary: Figures, champion: Figures, margin: float) -> Gate:
    """Before min_requests: failed once the canary's failure rate is above the champion's plus
    `margin` by the always-valid one-sided test (rollouts/statistics.py, failure_excess), which
    may be repeated at every analysis without a healthy canary being stopped by chance more
    often than alpha; waiting (None) otherwise, never passed (the full gates judge that)."""
    minimum, alpha = safety.early_abort_settings()
    test = safety.excess(canary, champion, margin)
    return Gate(
        "early_abort",
        False if test.decided else None,
        test.difference,
        margin,
        f"before min_requests: canary error rate minus champion's, rolled back from {minimum} requests when "
        f"above the margin beyond doubt (always-valid p = {test.p_value:.2g}, alpha {alpha:g})",
    )


def analyze_canary(rollout: Rollout, now: dt.datetime | None = None) -> CanaryAnalysis:
    """Gates of the current step: the canary since the step began against the champion
    over the whole rollout (at 100 % the champion gets no more traffic)."""
    now = now or timezone.now()
    config = rollout.config
    gates_config = config["gates"]
    step_started = rollout.step_started_at or rollout.started_at
    canary = arm_figures(rollout, step_started, now)["canary"]
    champion = arm_figures(rollout, rollout.started_at, now)["champion"]
    figures = {"canary": canary.as_json(), "champion": champion.as_json()}
    gates: list[Gate] = []

    minimum = int(gates_config.get("min_requests") or 0)
    enough = canary.requests >= minimum and champion.requests > 0
    # Not enough requests yet is waiting, never a failure.
    gates.append(
        Gate("min_requests", True if enough else None, canary.requests, minimum, "canary requests in this step")
    )

    limit = gates_config.get("max_error_rate_increase")
    if limit is not None and not enough:
        gates.append(early_abort_gate(canary, champion, float(limit)))
    if limit is not None:
        increase = None
        # Answers a fallback gave count as failures: a canary that only succeeds through its
        # model's fallbacks (gateway/fallbacks.py) is not healthy, whatever its clients saw.
        if canary.failure_rate is not None and champion.failure_rate is not None:
            increase = canary.failure_rate - champion.failure_rate
        gates.append(
            Gate(
                "error_rate_increase",
                None if not enough or increase is None else increase <= limit,
                increase,
                limit,
                "canary error rate minus champion error rate (answers through fallbacks count as errors)",
            )
        )

    ratio_limit = gates_config.get("max_p95_ratio")
    if ratio_limit is not None:
        ratio = canary.p95 / champion.p95 if canary.p95 and champion.p95 else None
        gates.append(
            Gate(
                "p95_ratio",
                None if not enough or ratio is None else ratio <= ratio_limit,
                ratio,
                ratio_limit,
                "canary p95 / champion p95",
            )
        )

    reward_limit = gates_config.get("min_reward_ratio")
    if reward_limit is not None:
        moments = rewards(rollout)
        c, k = moments.get("champion"), moments.get("canary")
        ratio = None
        if c and k and c.mean and k.mean is not None and k.n >= minimum:
            ratio = k.mean / c.mean
        gates.append(
            Gate(
                "reward_ratio",
                None if ratio is None else ratio >= reward_limit,
                ratio,
                reward_limit,
                "canary mean reward / champion mean reward",
            )
        )
        figures["rewards"] = {name: {"n": m.n, "mean": m.mean} for name, m in moments.items()}

    failed = next((g for g in gates if g.passed is False), None)
    at = now.isoformat()
    if failed is not None:
        return CanaryAnalysis("rollback", gates, figures, at)
    if any(g.passed is not True for g in gates):
        return CanaryAnalysis("wait", gates, figures, at)
    if (now - step_started).total_seconds() < config["step_seconds"]:
        return CanaryAnalysis("wait", gates, figures, at)
    last = rollout.step >= len(config["steps"]) - 1
    return CanaryAnalysis("promote" if last else "advance", gates, figures, at)


def apply(rollout: Rollout, analysis: CanaryAnalysis) -> Rollout:
    Rollout.objects.filter(pk=rollout.pk).update(last_analysis=analysis.as_json())
    payload = analysis.as_json()
    if analysis.action == "rollback":
        failed = next(g for g in analysis.gates if g.passed is False)
        return services.rollback(rollout, gate=failed.name, figures=payload)
    if analysis.action == "advance":
        return services.set_canary_step(rollout, rollout.step + 1, figures=payload)
    if analysis.action == "promote":
        return services.promote(rollout, actor=None, figures=payload, judged=True)
    return rollout


def run_due_analyses(now: dt.datetime | None = None) -> int:
    """Analyse every running canary whose analysis interval has passed (beat calls this often)."""
    now = now or timezone.now()
    done = 0
    for rollout in Rollout.objects.filter(kind=RolloutKind.CANARY, status=RolloutStatus.RUNNING).select_related(
        "model"
    ):
        last = (rollout.last_analysis or {}).get("at")
        interval = rollout.config.get("analysis_interval_seconds", 60)
        if last and (now - dt.datetime.fromisoformat(last)).total_seconds() < interval:
            continue
        try:
            apply(rollout, analyze_canary(rollout, now))
            done += 1
        except services.RolloutError:
            logger.info("rollout %s changed while being analysed; skipped", rollout.pk)
    return done


def update_experiment_p_values() -> int:
    """Keep each running experiment arm's always-valid p-value: a running minimum over every
    look, so it must be taken often, not only when someone opens the report (which only
    reads it). Beat runs this with the canary analyses; the number of arms lowered."""
    lowered = 0
    for rollout in Rollout.objects.filter(kind=RolloutKind.EXPERIMENT, status=RolloutStatus.RUNNING):
        moments = rewards(rollout)
        arms = list(rollout.arms.all())
        control = next((a for a in arms if a.is_control), arms[0])
        for arm in arms:
            if arm.pk == control.pk:
                continue
            comparison = compare(
                moments[control.name],
                moments[arm.name],
                alpha=float(rollout.config.get("alpha", 0.05)),
                minimum_effect=rollout.config.get("minimum_effect"),
                previous_p=arm.p_value,
            )
            # Conditional: a concurrent run that stored a lower value keeps it.
            lowered += Arm.objects.filter(pk=arm.pk, p_value__gt=comparison.p_value).update(p_value=comparison.p_value)
    return lowered


@dataclass
class ArmReport:
    name: str
    version: int
    weight: float
    is_control: bool
    figures: Figures
    reward: Moments
    interval: tuple[float, float] | None
    comparison: Comparison | None


def experiment_report(rollout: Rollout, now: dt.datetime | None = None) -> list[ArmReport]:
    """Per arm: traffic figures, mean reward with a 95 % CI, and the comparison against the control."""
    figures = arm_figures(rollout, rollout.started_at, now or rollout.ended_at or timezone.now())
    moments = rewards(rollout)
    arms = list(rollout.arms.select_related("version"))
    control = next((a for a in arms if a.is_control), arms[0])
    config = rollout.config
    reports = []
    for arm in arms:
        comparison = None
        if arm.pk != control.pk:
            comparison = compare(
                moments[control.name],
                moments[arm.name],
                alpha=float(config.get("alpha", 0.05)),
                minimum_effect=config.get("minimum_effect"),
                previous_p=arm.p_value,  # the running minimum kept by update_experiment_p_values
            )
        reports.append(
            ArmReport(
                arm.name,
                arm.version.number,
                arm.weight,
                arm.is_control,
                figures[arm.name],
                moments[arm.name],
                moments[arm.name].interval(),
                comparison,
            )
        )
    return reports
