"""Priority levels' queue caps: under overload low is refused first, then normal, and
high may fill the whole queue; every level gets at least one place."""

from __future__ import annotations

import pytest

from dataplane import priority
from dataplane.keys import RedisKeys


def test_lower_levels_are_capped_earlier_and_high_fills_the_queue() -> None:
    caps = [priority.queue_cap(1024, level) for level in priority.LEVELS]

    assert caps == [1024, 819, 512]


@pytest.mark.parametrize("max_queue_size", [1, 2, 3])
def test_a_tiny_queue_still_admits_one_request_at_every_level(max_queue_size: int) -> None:
    caps = [priority.queue_cap(max_queue_size, level) for level in priority.LEVELS]

    assert all(1 <= cap <= max_queue_size for cap in caps)
    assert caps == sorted(caps, reverse=True)


def test_each_level_has_its_own_stream_and_normal_keeps_the_single_queues_name() -> None:
    keys = RedisKeys("t")

    assert keys.request_streams(7) == ["t:v7:requests:high", "t:v7:requests", "t:v7:requests:low"]
    assert keys.request_stream(7, priority.NORMAL) == "t:v7:requests"


def test_shadows_yield_to_clients_and_unplanned_requests_are_normal() -> None:
    assert priority.LEVELS[-1] == priority.SHADOW_LEVEL
    assert priority.DEFAULT_LEVEL == priority.NORMAL
