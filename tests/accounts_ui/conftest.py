"""Fixtures for the account pages, the keys page, the keys admin and key authentication on /api.

Personas, besides `admin` (a superuser) and `viewer` (signed in, no grants) from tests/conftest.py:
- `outsider`: another ordinary user; owns keys of their own and must never see or change `viewer`'s.
- anonymous: a browser with no session, who can sign up, log in and reset a password.

Every user, admins included, manages only their own keys on /keys/; admins reach everyone's in the admin.
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
