"""What keeps a rollout from hurting production, as rules the services apply (the API, the
pages and beat all go through rollouts.services):

- a version whose signature does not fit production's takes none of its traffic, as a canary,
  an experiment arm or a shadow (the rule itself: registry.signature.incompatibility, the one
  the fallback versions follow);
- an arm whose failure rate is, beyond doubt, above its control's is not promoted by hand
  (the same always-valid test as the canary's early abort, rollouts/statistics.py).
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Iterable
from typing import Any

import redis
from django.conf import settings
from django.db import DatabaseError

from registry.models import ModelVersion
from registry.signature import incompatibility
from rollouts.figures import arm_figures, failures
from rollouts.models import Rollout
from rollouts.statistics import FailureExcess, failure_excess

logger = logging.getLogger(__name__)

# The error margin when a rollout has no error gate of its own (an experiment, a shadow).
DEFAULT_MARGIN = 0.01


def signature_conflict(reference: ModelVersion | None, version: ModelVersion) -> str | None:
    """Why `version` cannot answer the requests made for `reference` (production), or None."""
    if reference is None or reference.pk == version.pk:
        return None
    if reference.signature is None or version.signature is None:
        return None
    why = incompatibility(
        reference.signature,
        version.signature,
        here=f"in production (v{reference.number})",
        there=f"in v{version.number}",
    )
    if why is None:
        return None
    return f"version {version.number} cannot take production's traffic (v{reference.number}): {why}"


def signature_conflicts(reference: ModelVersion | None, versions: Iterable[ModelVersion]) -> dict[int, str]:
    """Version number -> why it cannot take `reference`'s traffic, for those that cannot."""
    found = {}
    for version in versions:
        why = signature_conflict(reference, version)
        if why is not None:
            found[version.number] = why
    return found


def early_abort_settings() -> tuple[int, float]:
    return int(settings.TURNOUT["CANARY_EARLY_ABORT_MIN_REQUESTS"]), float(settings.TURNOUT["CANARY_EARLY_ABORT_ALPHA"])


def excess(candidate: Any, reference: Any, margin: float) -> FailureExcess:
    """The early-abort test of two arms' Figures."""
    minimum, alpha = early_abort_settings()
    return failure_excess(
        failures(candidate),
        candidate.requests,
        failures(reference),
        reference.requests,
        margin=margin,
        alpha=alpha,
        min_requests=minimum,
    )


def promotion_blocker(rollout: Rollout, arm_name: str, now: dt.datetime | None = None) -> str | None:
    """Why promoting `arm_name` by hand would put a failing version in production, or None.

    Over the whole rollout, the arm against the control (the champion): refused when its
    failure rate is above the control's plus the margin by the early-abort test. Without
    figures (Redis or PostgreSQL unreachable) nothing is refused: the check cannot see.
    """
    arms = {arm.name: arm for arm in rollout.arms.select_related("version")}
    control = next((arm for arm in arms.values() if arm.is_control), None)
    if control is None or arm_name not in arms or arm_name == control.name:
        return None
    try:
        figures = arm_figures(rollout, rollout.started_at, now)
    except (redis.RedisError, DatabaseError):
        logger.warning("rollout %s: no figures to check the promotion of %s against", rollout.pk, arm_name)
        return None
    candidate, reference = figures[arm_name], figures[control.name]
    margin = (rollout.config.get("gates") or {}).get("max_error_rate_increase")
    test = excess(candidate, reference, DEFAULT_MARGIN if margin is None else float(margin))
    if not test.decided:
        return None
    return (
        f"{arm_name} (v{arms[arm_name].version.number}) failed {100 * (candidate.failure_rate or 0):.1f} % of its "
        f"{candidate.requests} requests against {100 * (reference.failure_rate or 0):.1f} % for {control.name} "
        f"(v{control.version.number}); promoting it would make production fail as often. Abort the rollout instead"
    )
