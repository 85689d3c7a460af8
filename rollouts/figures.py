"""Each arm's traffic figures over a span of a rollout, from the dashboard's own per-minute
series (observability.queries): the one source of the gates, the live page's arms table and
the promotion check."""

from __future__ import annotations

import datetime as dt

from django.utils import timezone

from observability.queries import MINUTE, Figures, Window, collect, merged
from rollouts.models import Rollout


def arm_figures(rollout: Rollout, since: dt.datetime, now: dt.datetime | None = None) -> dict[str, Figures]:
    now = now or timezone.now()
    start = int(since.timestamp() // MINUTE) * MINUTE
    win = Window("rollout", now, start, MINUTE)
    data = collect(win, rollout.model.name)
    figures = {}
    for arm in rollout.arms.select_related("version"):
        selected = [
            bins for (_, version, name), bins in data.items() if name == arm.name and version == str(arm.version.number)
        ]
        figures[arm.name] = Figures.of(merged(selected), win.seconds)
    return figures


def failures(figures: Figures) -> int:
    """Requests the version itself did not answer: errors and fallback answers (Figures.failure_rate)."""
    return round((figures.failure_rate or 0.0) * figures.requests)
