"""Key format, storage and lifecycle: hashed, checksummed, rotated, revoked, audited."""

from __future__ import annotations

import datetime as dt
import time
from typing import Any

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from accounts import keyformat, services
from accounts.models import ApiKey
from audit.models import AuditEntry


def test_a_key_has_a_scannable_prefix_and_a_valid_checksum() -> None:
    key = keyformat.compose("AbCdEf123456")

    assert key.startswith("tk_live_AbCdEf123456_")
    parsed = keyformat.parse(key)
    assert parsed is not None
    assert parsed.public_id == "AbCdEf123456"


@pytest.mark.parametrize("position", [10, 25, 40, -1])
def test_one_flipped_character_fails_the_checksum(position: int) -> None:
    key = keyformat.compose("AbCdEf123456")
    flipped = "A" if key[position] != "A" else "B"

    assert (
        keyformat.parse(key[:position] + flipped + key[position + 1 :] if position != -1 else key[:-1] + flipped)
        is None
    )


@pytest.mark.parametrize("garbage", ["", "tk_live_", "Bearer x", "tk_live_short_key", "sk_live_" + "a" * 50])
def test_garbage_is_not_a_key(garbage: str) -> None:
    assert keyformat.parse(garbage) is None


@pytest.mark.django_db
def test_only_a_digest_is_stored_and_creation_is_audited(viewer: Any) -> None:
    key, secret = services.create_key(viewer, name="ci", model_patterns=["*"], actions=["infer"])

    row = ApiKey.objects.get(pk=key.pk)
    assert secret not in str(ApiKey.objects.filter(pk=key.pk).values().get())
    assert row.digest == keyformat.digest(secret, services.pepper())
    entry = AuditEntry.objects.get(action="key.created", object_id=str(key.pk))
    assert secret not in str(entry.after)
    assert entry.after["prefix"] == key.prefix


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"name": " ", "model_patterns": ["*"], "actions": ["infer"]}, "name"),
        ({"name": "k", "model_patterns": [], "actions": ["infer"]}, "at least one model"),
        ({"name": "k", "model_patterns": ["*"], "actions": []}, "at least one action"),
        ({"name": "k", "model_patterns": ["*"], "actions": ["admin"]}, "unknown actions"),
    ],
)
def test_bad_key_requests_are_refused_and_nothing_is_stored(viewer: Any, kwargs: dict, message: str) -> None:
    with pytest.raises(services.ApiKeyError, match=message):
        services.create_key(viewer, **kwargs)

    assert not ApiKey.objects.exists()


@pytest.mark.django_db
def test_expiry_in_the_past_is_refused(viewer: Any) -> None:
    with pytest.raises(services.ApiKeyError, match="future"):
        services.create_key(
            viewer, name="k", model_patterns=["*"], actions=["infer"], expires_at=timezone.now() - dt.timedelta(1)
        )


@pytest.mark.django_db
def test_rotation_keeps_the_old_secret_for_the_grace_period_only(viewer: Any) -> None:
    key, old = services.create_key(viewer, name="k", model_patterns=["*"], actions=["infer"])
    key, new = services.rotate_key(key, actor=viewer, grace=dt.timedelta(seconds=1))
    record = services.key_record(key.public_id)
    assert record is not None
    now = time.time()

    assert record.accepts(keyformat.digest(new, services.pepper()), now)
    assert record.accepts(keyformat.digest(old, services.pepper()), now)
    assert not record.accepts(keyformat.digest(old, services.pepper()), now + 1.5)
    assert record.accepts(keyformat.digest(new, services.pepper()), now + 1.5)
    assert AuditEntry.objects.filter(action="key.rotated", object_id=str(key.pk)).exists()


@pytest.mark.django_db
def test_revoked_and_expired_keys_are_not_accepted(viewer: Any) -> None:
    key, secret = services.create_key(viewer, name="k", model_patterns=["*"], actions=["infer"])
    digest = keyformat.digest(secret, services.pepper())
    services.revoke_key(key, actor=viewer)
    record = services.key_record(key.public_id)
    assert record is not None
    assert not record.accepts(digest, time.time())

    soon = timezone.now() + dt.timedelta(seconds=60)
    other, other_secret = services.create_key(
        viewer, name="e", model_patterns=["*"], actions=["infer"], expires_at=soon
    )
    other_record = services.key_record(other.public_id)
    assert other_record is not None
    other_digest = keyformat.digest(other_secret, services.pepper())
    assert other_record.accepts(other_digest, time.time())
    assert not other_record.accepts(other_digest, soon.timestamp() + 1)
    with pytest.raises(services.ApiKeyError, match="revoked key cannot be rotated"):
        services.rotate_key(key, actor=viewer)


@pytest.mark.django_db
def test_limits_come_from_the_plan_unless_overridden(viewer: Any) -> None:
    key, _ = services.create_key(viewer, name="k", model_patterns=["*"], actions=["infer"])
    plan = services.default_plan()
    assert services.effective_policy(key).limit == plan.requests_per_window

    key = services.set_limits(key, actor=viewer, requests_per_window=7, window_seconds=60, burst=7, daily_quota=100)

    policy = services.effective_policy(key)
    assert (policy.limit, policy.window_seconds, policy.burst, policy.daily_quota) == (7, 60, 7, 100)
    assert AuditEntry.objects.get(action="key.limits_changed").after["requests_per_window"] == 7
    with pytest.raises(services.ApiKeyError, match="at least 1"):
        services.set_limits(key, actor=viewer, burst=0)


@pytest.mark.django_db
def test_a_malformed_key_is_rejected_without_any_database_query(keyed_gateway_client: Any, viewer: Any) -> None:
    _, secret = services.create_key(viewer, name="k", model_patterns=["*"], actions=["infer"])
    flipped = secret[:-1] + ("A" if secret[-1] != "A" else "B")

    with CaptureQueriesContext(connection) as queries:
        response = keyed_gateway_client.get("/v2/models/anything", headers={"authorization": f"Bearer {flipped}"})

    assert response.status == 401
    assert len(queries) == 0
    assert keyed_gateway_client.gateway.keys._records == {}  # no look-up was even attempted
