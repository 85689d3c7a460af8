"""What a maintainer can do next with a version, for its page: make it production, or try
it as a canary or a shadow against production (archiving is the registry's, on the page
itself); each offered only where the services would allow it, with the reason where not.
It lives here, not in the registry:
the registry imports nothing of rollouts, and its version page loads this section by htmx
(rollouts/version_views.py)."""

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


def next_steps(version: ModelVersion) -> NextSteps | None:
    """None for a version that is not ready: nothing to offer beyond what its page already
    says (wait for validation, upload again, restore)."""
    if version.status != VersionStatus.READY:
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
    )
