"""Forged keys on the management API: well-formed keys with made-up public ids cost a
bounded number of database queries, as on /v2 (tests/gateway/test_forged_keys.py): an
id that matched no key is refused from memory, and past
TURNOUT_UNKNOWN_KEY_LOOKUPS_PER_MINUTE look-ups that found nothing an address gets 429
with Retry-After and no query."""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Iterator
from typing import Any

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from rest_framework.test import APIClient

from accounts import api, keyformat, services
from accounts.models import ApiKey

pytestmark = pytest.mark.django_db

LIMIT = 20


def forged() -> str:
    body = f"tk_live_{keyformat.new_public_id()}_{'A' * keyformat.SECRET_LENGTH}"
    return body + keyformat.checksum(body)


@pytest.fixture(autouse=True)
def fresh_guard(settings: Any, redis_client: Any) -> Iterator[None]:
    settings.TURNOUT = {**settings.TURNOUT, "UNKNOWN_KEY_LOOKUPS_PER_MINUTE": LIMIT}
    api.UNKNOWN_KEYS = api.UnknownKeyGuard()
    yield
    api.UNKNOWN_KEYS = api.UnknownKeyGuard()


def get(key: str, address: str = "203.0.113.7") -> Any:
    return APIClient().get("/api/models/", HTTP_AUTHORIZATION=f"Bearer {key}", REMOTE_ADDR=address)


def test_a_burst_of_1000_forged_keys_costs_a_bounded_number_of_queries(owner: Any) -> None:
    _, good = services.create_key(owner, name="ci", model_patterns=["*"], actions=["manage"])

    started = time.monotonic()
    with CaptureQueriesContext(connection) as queries:
        answers = Counter(get(forged()).status_code for _ in range(1_000))
    # The budget refills at LIMIT per minute while the burst runs (seconds on a quiet machine, more on a busy one).
    allowed = LIMIT + 1 + int((time.monotonic() - started) * LIMIT / 60)

    assert answers[401] <= allowed  # looked up, matched nothing
    assert answers[429] == 1_000 - answers[401]
    assert len(queries) <= 2 * allowed  # a look-up is one query; the rest cost none
    limited = get(forged())
    assert limited.status_code == 429
    assert int(limited["Retry-After"]) >= 1
    assert get(good, address="198.51.100.1").status_code == 200  # another address is not affected


def test_a_forged_key_sent_again_is_refused_without_a_query() -> None:
    key = forged()
    assert get(key).status_code == 401

    with CaptureQueriesContext(connection) as queries:
        again = get(key)

    assert again.status_code == 401
    assert len(queries) == 0
    parsed = keyformat.parse(key)
    assert parsed is not None
    assert not ApiKey.objects.filter(public_id=parsed.public_id).exists()


def test_look_ups_that_find_a_key_do_not_spend_the_budget(owner: Any) -> None:
    _, good = services.create_key(owner, name="ci", model_patterns=["*"], actions=["manage"])

    answers = Counter(get(good).status_code for _ in range(3 * LIMIT))

    assert answers == Counter({200: 3 * LIMIT})
