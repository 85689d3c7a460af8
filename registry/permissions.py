"""Who may do what in the registry.

- Admins (staff or superusers) do everything.
- Maintainers upload versions, move aliases and change serving settings on the
  models they own or were granted (`RegisteredModel.maintainers`); members of
  the `maintainers` group (or anyone with `registry.add_registeredmodel`) may
  create models, becoming their owner.
- Every other signed-in user is a viewer: they read.
"""

from __future__ import annotations

from typing import Any

from registry.models import RegisteredModel


def is_admin(user: Any) -> bool:
    return bool(user.is_authenticated and user.is_active and (user.is_superuser or user.is_staff))


def can_create_models(user: Any) -> bool:
    return is_admin(user) or bool(user.is_authenticated and user.has_perm("registry.add_registeredmodel"))


def can_maintain(user: Any, model: RegisteredModel) -> bool:
    if is_admin(user):
        return True
    if not user.is_authenticated:
        return False
    return model.owner_id == user.pk or model.maintainers.filter(pk=user.pk).exists()


def maintainers_group() -> Any:
    """The `maintainers` group (created by migration; recreated here if it was removed)."""
    from django.contrib.auth.models import Group, Permission

    group, created = Group.objects.get_or_create(name="maintainers")
    if created:
        group.permissions.add(
            Permission.objects.get(content_type__app_label="registry", codename="add_registeredmodel")
        )
    return group
