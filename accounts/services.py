"""API keys and plans: every path that changes a key goes through here, is
audited, and tells the web processes to drop their cached copy."""

from __future__ import annotations

import contextlib
import datetime as dt
import fnmatch
import functools
import hashlib
import hmac
import logging
from collections.abc import Iterable, Iterator
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any

import redis
from django.apps import apps
from django.conf import settings
from django.db import transaction
from django.utils import timezone

from accounts import keyformat
from accounts.models import ApiKey, KeyAction, Plan
from accounts.ratelimit import RatePolicy
from audit.services import record
from controlplane.redis_client import get_redis, redis_keys
from dataplane.connection import is_cluster_client
from dataplane.priority import DEFAULT_LEVEL

logger = logging.getLogger(__name__)

ACTIONS = frozenset(KeyAction.values)
DEFAULT_PLAN = {"name": "default", "requests_per_window": 100, "window_seconds": 1, "burst": 200}


class ApiKeyError(Exception):
    """A key request the service refuses, with a message for the user; `field` names the
    input at fault, so that the page shows it next to that field."""

    def __init__(self, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.field = field


def pepper() -> bytes:
    configured = settings.TURNOUT["API_KEY_PEPPER"]
    if configured:
        return str(configured).encode()
    # Derived, so that a database dump alone (without the settings) cannot verify keys.
    return hmac.new(settings.SECRET_KEY.encode(), b"turnout-api-key-pepper", hashlib.sha256).digest()


def keys_changed(public_ids: Iterable[str]) -> None:
    """After commit, tell every web process to drop these keys' cached records (one round trip)."""
    ids = list(public_ids)
    if not ids:
        return

    def publish() -> None:
        try:
            client = get_redis()
            channel = redis_keys().keys_channel()
            if is_cluster_client(client):
                # redis-py refuses PUBLISH in a cluster pipeline: one by one (each reaches every node).
                for public_id in ids:
                    client.publish(channel, public_id)
                return
            pipe = client.pipeline(transaction=False)
            for public_id in ids:
                pipe.publish(channel, public_id)
            pipe.execute()
        except redis.RedisError:
            # Web processes re-read every key from the database while they cannot hear these notices.
            logger.warning("could not publish a change of %d key(s): %s", len(ids), ", ".join(ids[:10]))

    transaction.on_commit(publish)


def _key_changed(public_id: str) -> None:
    keys_changed([public_id])


# --- Owners: a key works only while its user is active. -----------------------------
# Users are Django's model, changed by its admin, scripts and the shell, so these are
# called from signals (accounts/signals.py). The admin names who acts (`acting_as`);
# elsewhere the audit entry says "system".

_acting: ContextVar[Any] = ContextVar("turnout_acting_user", default=None)


@contextlib.contextmanager
def acting_as(user: Any) -> Iterator[None]:
    """Changes to users made inside this block are audited as `user`'s."""
    token = _acting.set(user)
    try:
        yield
    finally:
        _acting.reset(token)


def _owned_key_ids(user: Any) -> list[str]:
    return list(ApiKey.objects.filter(user=user.pk).order_by("pk").values_list("public_id", flat=True))


def owner_activity_changed(user: Any, *, active: bool) -> None:
    """A user was deactivated or reactivated: audited, and every web process re-reads their keys."""
    ids = _owned_key_ids(user)
    action = "user.reactivated" if active else "user.deactivated"
    record(_acting.get(), action, user, before={"is_active": not active}, after={"is_active": active, "keys": ids})
    keys_changed(ids)


def owner_deleted(user: Any) -> None:
    """A user is being deleted, their keys with them: audited, and every web process forgets the keys."""
    ids = _owned_key_ids(user)
    record(_acting.get(), "user.deleted", user, before={"username": user.get_username(), "keys": ids})
    keys_changed(ids)


def snapshot(key: ApiKey) -> dict[str, Any]:
    return {
        "name": key.name,
        "prefix": key.prefix,
        "model_patterns": key.model_patterns,
        "actions": key.actions,
        "expires_at": key.expires_at.isoformat() if key.expires_at else None,
        "status": key.status,
        "plan": key.plan.name if key.plan else None,
        "requests_per_window": key.requests_per_window,
        "window_seconds": key.window_seconds,
        "burst": key.burst,
        "daily_quota": key.daily_quota,
    }


def _clean_scopes(
    model_patterns: list[str], actions: list[str], *, future_models: bool = False
) -> tuple[list[str], list[str]]:
    patterns = [p.strip() for p in model_patterns if p and p.strip()]
    if not patterns:
        raise ApiKeyError("give at least one model name or pattern (use * for every model)")
    unknown = sorted(set(actions) - ACTIONS)
    if unknown:
        raise ApiKeyError(f"unknown actions {unknown}; choose from {sorted(ACTIONS)}")
    if not actions:
        raise ApiKeyError(f"give at least one action: {sorted(ACTIONS)}")
    # A manage key may create the models its patterns name; other keys reach only existing ones.
    if not future_models and KeyAction.MANAGE not in actions:
        check_patterns_match(patterns)
    return patterns, sorted(set(actions))


def check_patterns_match(patterns: list[str]) -> None:
    """Every pattern but * matches at least one registered model: a typo ("frod") would make a
    key that reaches nothing, and its requests fail with 404 long after it was made."""
    registered = apps.get_model("registry", "RegisteredModel")._default_manager
    names = list(registered.order_by("name").values_list("name", flat=True))
    unmatched = [p for p in patterns if p != "*" and not any(fnmatch.fnmatchcase(n, p) for n in names)]
    if not unmatched:
        return
    shown = ", ".join(names[:10]) + (f" and {len(names) - 10} more" if len(names) > 10 else "")
    which = ", ".join(f"'{p}'" for p in unmatched)
    raise ApiKeyError(
        f"{which} {'matches' if len(unmatched) == 1 else 'match'} no model "
        f"({'models are: ' + shown if names else 'there is no model yet'}); check the spelling, "
        "or allow models not created yet if the key is meant for them",
        "model_patterns",
    )


def create_key(
    user: Any,
    *,
    name: str,
    model_patterns: list[str],
    actions: list[str],
    expires_at: dt.datetime | None = None,
    actor: Any = None,
    future_models: bool = False,
) -> tuple[ApiKey, str]:
    """A new key and its secret; the secret is returned here and never again.

    Each model pattern must match a registered model (check_patterns_match) unless the key
    may manage models, or `future_models` says it is meant for models not created yet."""
    if not name.strip():
        raise ApiKeyError("give the key a name")
    if expires_at is not None and expires_at <= timezone.now():
        raise ApiKeyError("the expiry must be in the future")
    patterns, actions = _clean_scopes(model_patterns, actions, future_models=future_models)
    public_id = keyformat.new_public_id()
    secret = keyformat.compose(public_id)
    with transaction.atomic():
        key = ApiKey.objects.create(
            user=user,
            name=name.strip(),
            public_id=public_id,
            digest=keyformat.digest(secret, pepper()),
            model_patterns=patterns,
            actions=actions,
            expires_at=expires_at,
        )
        record(actor or user, "key.created", key, after=snapshot(key))
    return key, secret


def revoke_key(key: ApiKey, *, actor: Any) -> ApiKey:
    with transaction.atomic():
        locked = ApiKey.objects.select_for_update().get(pk=key.pk)
        if locked.revoked_at is None:
            before = snapshot(locked)
            locked.revoked_at = timezone.now()
            locked.previous_digest = ""
            locked.previous_valid_until = None
            locked.save()
            record(actor, "key.revoked", locked, before=before, after=snapshot(locked))
            _key_changed(locked.public_id)
    return locked


def rotate_key(key: ApiKey, *, actor: Any, grace: dt.timedelta | None = None) -> tuple[ApiKey, str]:
    """A new secret for the same key; the old one keeps working for `grace`."""
    if grace is None:
        grace = dt.timedelta(hours=float(settings.TURNOUT["KEY_ROTATION_GRACE_HOURS"]))
    if grace < dt.timedelta(0) or grace > dt.timedelta(days=30):
        raise ApiKeyError("the grace period must be between 0 and 30 days")
    with transaction.atomic():
        locked = ApiKey.objects.select_for_update().get(pk=key.pk)
        if locked.status != "active":
            raise ApiKeyError(f"a {locked.status} key cannot be rotated; create a new one")
        secret = keyformat.compose(locked.public_id, locked.environment)
        locked.previous_digest = locked.digest if grace > dt.timedelta(0) else ""
        locked.previous_valid_until = timezone.now() + grace if grace > dt.timedelta(0) else None
        locked.digest = keyformat.digest(secret, pepper())
        locked.save()
        record(actor, "key.rotated", locked, after={**snapshot(locked), "grace_seconds": int(grace.total_seconds())})
        _key_changed(locked.public_id)
    return locked, secret


def set_limits(key: ApiKey, *, actor: Any, plan: Plan | None = None, **overrides: int | None) -> ApiKey:
    allowed = {"requests_per_window", "window_seconds", "burst", "daily_quota"}
    if set(overrides) - allowed:
        raise ApiKeyError(f"unknown limits {sorted(set(overrides) - allowed)}")
    for name, value in overrides.items():
        if value is not None and value < 1:
            raise ApiKeyError(f"{name} must be at least 1")
    with transaction.atomic():
        locked = ApiKey.objects.select_for_update().get(pk=key.pk)
        before = snapshot(locked)
        locked.plan = plan
        for name, value in overrides.items():
            setattr(locked, name, value)
        locked.save()
        record(actor, "key.limits_changed", locked, before=before, after=snapshot(locked))
        _key_changed(locked.public_id)
    return locked


def default_plan() -> Plan:
    plan = Plan.objects.filter(is_default=True).first()
    if plan is None:
        plan, _ = Plan.objects.get_or_create(name=DEFAULT_PLAN["name"], defaults={**DEFAULT_PLAN, "is_default": True})
    return plan


def effective_policy(key: ApiKey, plan: Plan | None = None) -> RatePolicy:
    """The key's limits: its overrides, else its plan's (`plan`, when the caller has it already)."""
    plan = plan or key.plan or default_plan()
    return RatePolicy(
        limit=key.requests_per_window or plan.requests_per_window,
        window_seconds=key.window_seconds or plan.window_seconds,
        burst=key.burst or plan.burst,
        daily_quota=key.daily_quota or plan.daily_quota,
    )


@dataclass(frozen=True)
class KeyRecord:
    """What a web process caches about a key to authenticate without the database."""

    public_id: str
    user_id: int
    owner_active: bool  # a deactivated user's keys are refused, never revoked
    digest: str
    previous_digest: str
    previous_valid_until: float | None  # epoch seconds
    expires_at: float | None
    revoked: bool
    model_patterns: tuple[str, ...]
    actions: frozenset[str]
    policy: RatePolicy
    priority: str = DEFAULT_LEVEL  # its plan's level (dataplane/priority.py)

    def accepts(self, digest: str, now: float) -> bool:
        if not self.owner_active or self.revoked or (self.expires_at is not None and now >= self.expires_at):
            return False
        if hmac.compare_digest(digest, self.digest):
            return True
        return bool(
            self.previous_digest
            and self.previous_valid_until is not None
            and now < self.previous_valid_until
            and hmac.compare_digest(digest, self.previous_digest)
        )

    def allows_model(self, model: str) -> bool:
        return _patterns_match(model, self.model_patterns)


@functools.lru_cache(maxsize=8192)
def _patterns_match(model: str, patterns: tuple[str, ...]) -> bool:
    # Asked on every request with the same few (model, patterns) pairs: fnmatch costs more.
    return any(fnmatch.fnmatchcase(model, pattern) for pattern in patterns)


def key_record(public_id: str) -> KeyRecord | None:
    key = ApiKey.objects.select_related("plan", "user").filter(public_id=public_id).first()
    if key is None:
        return None
    plan = key.plan or default_plan()
    return KeyRecord(
        public_id=key.public_id,
        user_id=key.user_id,
        owner_active=key.user.is_active,
        digest=key.digest,
        previous_digest=key.previous_digest,
        previous_valid_until=key.previous_valid_until.timestamp() if key.previous_valid_until else None,
        expires_at=key.expires_at.timestamp() if key.expires_at else None,
        revoked=key.revoked_at is not None,
        model_patterns=tuple(key.model_patterns),
        actions=frozenset(key.actions),
        policy=effective_policy(key, plan),
        priority=plan.priority,
    )


def flush_last_used() -> int:
    """Copy last-use times the gateway recorded in Redis to the database (run by beat)."""
    client = get_redis()
    keys = redis_keys()
    if keys.cluster:
        raw = _take_last_used_per_key(client, keys)
    else:
        pipe = client.pipeline()
        pipe.hgetall(keys.keys_last_used())
        pipe.delete(keys.keys_last_used())
        raw, _ = pipe.execute()
    updated = 0
    for public_id, stamp in raw.items():
        when = dt.datetime.fromtimestamp(float(stamp) / 1000, tz=dt.UTC)
        updated += ApiKey.objects.filter(public_id=public_id.decode()).update(last_used_at=when)
    return updated


def _take_last_used_per_key(client: Any, keys: Any, chunk: int = 500) -> dict[bytes, bytes]:
    """On a Redis Cluster every key records its last use beside its rate state (dataplane/keys.py):
    read and delete each usable key's record, a chunk of keys per pipeline. Not atomic per key as
    the single hash's MULTI is: a use recorded between the read and the delete is not copied, and
    the key's next use records it again."""
    found: dict[bytes, bytes] = {}
    ids = list(ApiKey.objects.filter(revoked_at__isnull=True).values_list("public_id", flat=True))
    for start in range(0, len(ids), chunk):
        pipe = client.pipeline(transaction=False)
        for public_id in ids[start : start + chunk]:
            pipe.hgetall(keys.key_last_used(public_id))
            pipe.delete(keys.key_last_used(public_id))
        results = pipe.execute()
        for used in results[::2]:
            found.update(used)
    return found
