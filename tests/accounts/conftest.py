"""Fixtures for accounts: the key format and services, sign-up, the throttled login, password
reset, the keys page, a key's lifecycle against the in-process gateway, the keys admin, and
API-key authentication on /api.

The personas are tests/conftest.py's: `viewer` (vic) owns `viewer_key`; `outsider` (otto),
another ordinary user, owns keys of his own and must never see or change `viewer`'s; `admin`
(ada) reaches everyone's keys in the admin but, like everyone, only their own on /keys/;
anonymous can sign up, log in and reset a password. Browser-like steps are in steps.py.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import redis

from accounts import services
from accounts.models import ApiKey
from controlplane.redis_client import redis_keys


@pytest.fixture
def viewer_key(viewer: Any) -> tuple[ApiKey, str]:
    """A key `viewer` created for inference, with its secret."""
    return services.create_key(viewer, name="scoring job", model_patterns=["*"], actions=["infer", "read"])


@pytest.fixture
def key_notices(redis_client: redis.Redis) -> Iterator[redis.client.PubSub]:
    """A subscription to the key change notices the gateways listen to."""
    pubsub = redis_client.pubsub(ignore_subscribe_messages=True)
    pubsub.subscribe(redis_keys().keys_channel())
    pubsub.get_message(timeout=1.0)  # the subscription confirmation
    yield pubsub
    pubsub.close()
