"""A key works only while its owner's account does: deactivating or deleting a user
stops every one of their keys on /v2 at once, and reactivating brings them back.

The gateway authenticates before it looks the model up, so a request for a model
that does not exist answers 404 with a good key and 401 with a refused one: no
model needs to be registered here.
"""

from __future__ import annotations

import time
from typing import Any

import pytest

from accounts import services
from tests.support.asgi import AsgiClient
from tests.support.processes import wait_for

# The gateway reads keys on its own connections: the data must be committed.
pytestmark = pytest.mark.django_db(transaction=True)

PATH = "/v2/models/nobody-here"


def status(client: AsgiClient, secret: str) -> int:
    return client.get(PATH, headers={"authorization": f"Bearer {secret}"}).status


def cached(client: AsgiClient, secret: str) -> int:
    """The key's answer once the gateway hears change notices (only then does it cache
    key records); its notice subscription runs on the loop the requests drive."""
    gateway = client.gateway  # type: ignore[attr-defined]
    assert wait_for(lambda: status(client, secret) > 0 and gateway.notices.connected, timeout=5)
    return status(client, secret)


def test_a_deactivated_users_keys_are_refused_within_one_second(
    keyed_gateway_client: AsgiClient, viewer: Any, redis_client: Any
) -> None:
    _, first = services.create_key(viewer, name="one", model_patterns=["*"], actions=["read"])
    _, second = services.create_key(viewer, name="two", model_patterns=["*"], actions=["read"])
    # Given both records in the gateway's cache
    assert (cached(keyed_gateway_client, first), cached(keyed_gateway_client, second)) == (404, 404)

    # When the owner is deactivated (as the admin, a script or the shell does it: a save)
    viewer.is_active = False
    viewer.save()
    deactivated = time.monotonic()

    # Then both keys are refused within a second, as any bad key is
    assert wait_for(lambda: status(keyed_gateway_client, first) == 401, timeout=1.0, interval=0.02)
    assert status(keyed_gateway_client, second) == 401
    assert time.monotonic() - deactivated < 1.0
    assert viewer.api_keys.filter(revoked_at__isnull=True).count() == 2  # not revoked: only unusable

    # And reactivating the owner brings them back
    viewer.is_active = True
    viewer.save()
    assert wait_for(lambda: status(keyed_gateway_client, first) == 404, timeout=1.0, interval=0.02)
    assert status(keyed_gateway_client, second) == 404


def test_a_deleted_users_keys_are_refused_within_one_second(
    keyed_gateway_client: AsgiClient, django_user_model: Any, redis_client: Any
) -> None:
    leaving = django_user_model.objects.create_user("lea", "lea@example.com", "correct horse battery")
    key, secret = services.create_key(leaving, name="one", model_patterns=["*"], actions=["read"])
    assert cached(keyed_gateway_client, secret) == 404

    leaving.delete()

    assert wait_for(lambda: status(keyed_gateway_client, secret) == 401, timeout=1.0, interval=0.02)
    assert not type(key).objects.filter(pk=key.pk).exists()
