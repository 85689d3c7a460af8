"""Hooks into Django's User model, which is not ours (a signal is the only way in):
a user deactivated, reactivated or deleted, by whatever path (the admin, a script,
the shell), changes whether their API keys work, at once on every web process.

A `QuerySet.update(is_active=...)` sends no signal: it reaches the gateways only when
their cached key records expire (five minutes). Deactivate users with `save()`.
"""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.db.models.signals import post_save, pre_delete, pre_save
from django.dispatch import receiver

from accounts import services

_WAS_ACTIVE = "_turnout_was_active"


@receiver(pre_save, sender=settings.AUTH_USER_MODEL, dispatch_uid="accounts.remember_activity")
def remember_activity(sender: Any, instance: Any, raw: bool = False, update_fields: Any = None, **kwargs: Any) -> None:
    was: bool | None = None
    # A log-in saves only last_login: no read for it.
    if not raw and instance.pk is not None and (update_fields is None or "is_active" in update_fields):
        was = sender._default_manager.filter(pk=instance.pk).values_list("is_active", flat=True).first()
    setattr(instance, _WAS_ACTIVE, was)


@receiver(post_save, sender=settings.AUTH_USER_MODEL, dispatch_uid="accounts.activity_changed")
def activity_changed(sender: Any, instance: Any, created: bool, raw: bool = False, **kwargs: Any) -> None:
    was = instance.__dict__.pop(_WAS_ACTIVE, None)
    if not created and not raw and was is not None and was != instance.is_active:
        services.owner_activity_changed(instance, active=instance.is_active)


@receiver(pre_delete, sender=settings.AUTH_USER_MODEL, dispatch_uid="accounts.owner_deleted")
def owner_deleted(sender: Any, instance: Any, **kwargs: Any) -> None:
    # Before the cascade: the keys, and so their ids, still exist.
    services.owner_deleted(instance)
