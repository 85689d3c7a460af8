"""Setting a model's fallback policy (registry/fallback_policy.py), the rules about which
versions may answer for it, and what the rest of the registry must respect (an archived
version cannot stay a fallback)."""

from __future__ import annotations

from typing import Any

from django.db import transaction

from audit.services import record
from registry.events import catalog_changed
from registry.fallback_policy import FallbackPolicy, PolicyError, parse
from registry.models import Alias, ModelVersion, RegisteredModel, VersionStatus
from registry.services import PRODUCTION, RegistryError
from registry.signature import incompatibility


def _reference_signature(model: RegisteredModel) -> tuple[str, dict[str, Any]] | None:
    """The signature fallback versions must answer for: the production version's, else the newest ready one's."""
    alias = Alias.objects.select_related("version").filter(model=model, name=PRODUCTION).first()
    version = alias.version if alias else None
    if version is None or version.signature is None:
        version = (
            ModelVersion.objects.filter(model=model, status=VersionStatus.READY, signature__isnull=False)
            .order_by("-number")
            .first()
        )
    if version is None or version.signature is None:
        return None
    return f"version {version.number}", version.signature


def check_targets(model: RegisteredModel, policy: FallbackPolicy) -> None:
    """Every fallback version exists, is ready, and can answer this model's requests."""
    reference = _reference_signature(model)
    for index, step in enumerate(policy.chain):
        if step.kind != "version":
            continue
        where = f"chain[{index}]"
        owner = model if step.model in (None, model.name) else RegisteredModel.objects.filter(name=step.model).first()
        if owner is None:
            raise RegistryError(f"{where}: there is no model '{step.model}'")
        version = ModelVersion.objects.filter(model=owner, number=step.version).first()
        label = f"{owner.name} v{step.version}"
        if version is None:
            raise RegistryError(f"{where}: {owner.name} has no version {step.version}")
        if version.status != VersionStatus.READY or version.signature is None:
            raise RegistryError(f"{where}: {label} is {version.status}; only a ready version can be a fallback")
        if reference is not None:
            name, signature = reference
            why = incompatibility(signature, version.signature)
            if why is not None:
                raise RegistryError(f"{where}: {label} cannot answer for {model.name} ({name}): {why}")


def set_fallback(model: RegisteredModel, data: Any, *, actor: Any) -> RegisteredModel:
    """Set (or with None, remove) what answers when the model's serving version fails."""
    stored = None
    if data is not None:
        try:
            policy = parse(data)
        except PolicyError as exc:
            raise RegistryError(str(exc)) from None
        check_targets(model, policy)
        stored = policy.as_json()
    with transaction.atomic():
        locked = RegisteredModel.objects.select_for_update().get(pk=model.pk)
        before = locked.fallback
        locked.fallback = stored
        locked.save(update_fields=["fallback", "updated_at"])
        record(actor, "model.fallback_set", locked, before={"fallback": before}, after={"fallback": stored})
        catalog_changed(locked.name)
    model.fallback = stored
    return model
