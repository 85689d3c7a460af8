"""What a maintainer can do next with a version, for its page: make it production, try it
as a canary or a shadow against production, or archive it; each offered only where the
services would allow it, with the reason where not."""

from __future__ import annotations

from dataclasses import dataclass

from registry import services
from registry.models import ModelVersion, VersionStatus
from rollouts.models import Rollout
from rollouts.safety import signature_conflict
from rollouts.services import active_rollout


@dataclass(frozen=True)
class NextSteps:
    production: ModelVersion | None
    is_production: bool
    set_production: bool  # offer "make it production"
    try_out: bool  # offer "start a canary" and "start a shadow"
    active: Rollout | None  # the model's running rollout, which blocks another
    conflict: str | None  # why it cannot take production's traffic
    archive: bool  # offer "archive" (a version with aliases must lose them first)


def next_steps(version: ModelVersion) -> NextSteps | None:
    """None for a version still validating, failed-and-archived or archived: nothing to offer
    beyond what its page already says (restore, or upload again)."""
    if version.status not in (VersionStatus.READY, VersionStatus.FAILED):
        return None
    production = services.serving_version(version.model)
    is_production = production is not None and production.pk == version.pk
    ready = version.status == VersionStatus.READY
    conflict = signature_conflict(production, version) if ready else None
    active = active_rollout(version.model) if ready else None
    return NextSteps(
        production=production,
        is_production=is_production,
        set_production=ready and not is_production,
        try_out=ready and production is not None and not is_production and conflict is None and active is None,
        active=active,
        conflict=conflict,
        archive=not version.aliases.exists(),
    )
