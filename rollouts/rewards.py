"""Rewards joined to rollout arms: running sums in Redis while a rollout runs (the gateway
adds to them, gateway/feedback.py), copied into the arm rows when it ends."""

from __future__ import annotations

from controlplane.redis_client import get_redis, redis_keys
from rollouts.models import Arm, Rollout
from rollouts.statistics import Moments


def rewards(rollout: Rollout) -> dict[str, Moments]:
    """Each arm's reward sums: live from Redis while the rollout runs, from the arm rows once it ended."""
    arms = list(rollout.arms.all())
    if not rollout.is_active:
        return {a.name: Moments(a.reward_n, a.reward_sum, a.reward_sum_sq) for a in arms}
    pipe = get_redis().pipeline(transaction=False)
    for arm in arms:
        pipe.hgetall(redis_keys().reward_moments(rollout.pk, arm.name))
    result = {}
    for arm, raw in zip(arms, pipe.execute(), strict=True):
        values = {k.decode(): float(v) for k, v in raw.items()}
        result[arm.name] = Moments(int(values.get("n", 0)), values.get("sum", 0.0), values.get("sumsq", 0.0))
    return result


def persist_rewards(rollout: Rollout) -> None:
    """Copy the live reward sums into the arm rows (when a rollout ends)."""
    for name, moments in rewards(rollout).items():
        Arm.objects.filter(rollout=rollout, name=name).update(
            reward_n=moments.n, reward_sum=moments.total, reward_sum_sq=moments.total_sq
        )
