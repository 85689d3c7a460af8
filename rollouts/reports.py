"""A rollout's live figures as plain data, shared by the API and the pages.

Per arm: the traffic figures since the rollout began (the dashboard's own
`Figures`); for a canary, its gates against their thresholds; for an
experiment, each arm's mean reward with a 95 % interval and its comparison
with the control; for a shadow, how often its answers agree with the champion's.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from django.utils import timezone

from rollouts.analysis import analyze_canary, experiment_report
from rollouts.figures import arm_figures
from rollouts.models import Rollout, RolloutKind, RolloutStatus


def _round(value: float | None, digits: int = 6) -> float | None:
    return None if value is None else round(value, digits)


def _interval(pair: tuple[float, float] | None) -> list[float] | None:
    return None if pair is None else [round(pair[0], 6), round(pair[1], 6)]


def _until(rollout: Rollout, now: dt.datetime | None) -> dt.datetime:
    return rollout.ended_at or now or timezone.now()


def canary_analysis(rollout: Rollout, now: dt.datetime | None = None) -> dict[str, Any] | None:
    """The gates as they stand: computed afresh while the canary runs, else its last analysis."""
    if rollout.kind != RolloutKind.CANARY:
        return None
    if rollout.status == RolloutStatus.RUNNING:
        return analyze_canary(rollout, now).as_json()
    return rollout.last_analysis


def traffic_arms(
    rollout: Rollout, now: dt.datetime | None = None, judged: dict[str, Any] | None = None
) -> list[dict[str, Any]]:
    """Each arm's figures since the rollout began (until it ended), or those a canary's gates
    judged (`judged`: the analysis's own figures), so that the page's two tables agree."""
    if judged is None:
        figures = {
            name: f.as_json() for name, f in arm_figures(rollout, rollout.started_at, _until(rollout, now)).items()
        }
    else:
        figures = judged
    return [
        {
            "name": arm.name,
            "version": arm.version.number,
            "weight": round(arm.weight, 4),
            "is_control": arm.is_control,
            "figures": figures[arm.name],
            "reward": None,
            "comparison": None,
        }
        for arm in rollout.arms.select_related("version")
    ]


def experiment_arms(rollout: Rollout, now: dt.datetime | None = None) -> list[dict[str, Any]]:
    """Each arm's figures, mean reward with its 95 % interval, and its comparison with the control."""
    reports = experiment_report(rollout, _until(rollout, now))
    control = next((r for r in reports if r.is_control), reports[0])
    arms = []
    for report in reports:
        comparison = None
        if report.comparison is not None:
            c = report.comparison
            compared = min(control.reward.n, report.reward.n)
            comparison = {
                "difference": _round(c.difference),
                "interval": _interval(c.interval),
                "p_value": _round(c.p_value),
                "significant": c.significant,
                "samples_needed": c.samples_needed,
                # The page's prediction: samples per arm at which the test reaches 80 % power.
                "samples_predicted": None if c.samples_needed is None else c.samples_needed + compared,
            }
        arms.append(
            {
                "name": report.name,
                "version": report.version,
                "weight": round(report.weight, 4),
                "is_control": report.is_control,
                "figures": report.figures.as_json(),
                "reward": {
                    "n": report.reward.n,
                    "mean": _round(report.reward.mean),
                    "interval": _interval(report.interval),
                },
                "comparison": comparison,
            }
        )
    return arms


def shadow_agreement(arms: list[dict[str, Any]]) -> dict[str, Any] | None:
    """How the shadow's answers compared with the champion's, from its figures."""
    shadow = next((arm for arm in arms if arm["name"] == "shadow"), None)
    if shadow is None:
        return None
    figures = shadow["figures"]
    return {
        "copies": figures["requests"],
        "agreement": figures.get("agreement"),
        "mean_max_difference": figures.get("mean_max_difference"),
    }


def live_report(rollout: Rollout, now: dt.datetime | None = None) -> dict[str, Any]:
    """Everything the rollout page and `GET /api/rollouts/{id}/` show beyond the row itself."""
    analysis = canary_analysis(rollout, now)
    judged = None
    if rollout.status == RolloutStatus.RUNNING and analysis is not None:
        judged = analysis["figures"]
    if rollout.kind == RolloutKind.EXPERIMENT:
        arms = experiment_arms(rollout, now)
    else:
        arms = traffic_arms(rollout, now, judged)
    return {
        "arms": arms,
        # What span the arms' figures cover: "gates" (the canary since its step began, the
        # champion since the rollout began, as the gates judge them) or "rollout" (all of it).
        "window": "gates" if judged is not None else "rollout",
        "analysis": analysis,
        "agreement": shadow_agreement(arms) if rollout.kind == RolloutKind.SHADOW else None,
    }
