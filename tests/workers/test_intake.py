"""How a batching loop takes requests off a version's priority levels' streams: the
highest non-empty level first, never more than asked in one take, a blocking read
that wakes on any level, and reclaim, group recovery and acknowledgement per stream
(entry ids are unique per stream only). Real Redis, no worker process."""

from __future__ import annotations

import threading
import time

import pytest
import redis
from django.conf import settings

from dataplane import scripts
from dataplane.priority import HIGH, LOW, NORMAL
from workers.intake import Intake, by_stream, read_entries, taken_entries

STREAMS = ["s:high", "s:normal", "s:low"]


def test_taken_entries_are_ordered_by_level_then_arrival() -> None:
    taken = [[3, [[b"1-0", [b"k", b"low"]]]], [1, [[b"5-0", [b"k", b"high1"]], [b"6-0", [b"k", b"high2"]]]]]

    entries = taken_entries(STREAMS, taken)

    assert entries == [
        ("s:high", b"5-0", {b"k": b"high1"}),
        ("s:high", b"6-0", {b"k": b"high2"}),
        ("s:low", b"1-0", {b"k": b"low"}),
    ]


def test_a_multi_stream_read_is_ordered_by_level_whatever_order_redis_answers_in() -> None:
    response = [[b"s:low", [(b"1-0", {b"k": b"l"})]], [b"s:high", [(b"1-0", {b"k": b"h"})]]]

    assert read_entries(STREAMS, response) == [("s:high", b"1-0", {b"k": b"h"}), ("s:low", b"1-0", {b"k": b"l"})]
    assert read_entries(STREAMS, None) == []


def test_the_same_id_on_two_streams_is_acknowledged_on_each() -> None:
    assert by_stream([("s:high", b"1-0"), ("s:low", b"1-0"), ("s:high", b"2-0")]) == {
        "s:high": [b"1-0", b"2-0"],
        "s:low": [b"1-0"],
    }


@pytest.fixture
def streams(redis_client: redis.Redis) -> list[str]:
    prefix = settings.TURNOUT["REDIS_PREFIX"]
    return [f"{prefix}:intake:{level}" for level in (HIGH, NORMAL, LOW)]


@pytest.fixture
def intake(redis_client: redis.Redis, streams: list[str]) -> Intake:
    taker = Intake(redis_client, streams, "w1")
    taker.ensure_groups()
    return taker


def add(client: redis.Redis, stream: str, tag: str) -> bytes:
    return client.xadd(stream, {"tag": tag})  # type: ignore[return-value]


def tags(entries: list[tuple[str, bytes, dict[bytes, bytes]]]) -> list[str]:
    return [fields[b"tag"].decode() for _, _, fields in entries]


def test_a_batch_is_filled_from_the_highest_non_empty_level_first(
    redis_client: redis.Redis, streams: list[str], intake: Intake
) -> None:
    high, normal, low = streams
    for i in range(3):
        add(redis_client, low, f"low{i}")
    add(redis_client, normal, "normal0")
    add(redis_client, high, "high0")

    first = intake.next(3, 10)
    second = intake.next(3, 10)

    assert tags(first) == ["high0", "normal0", "low0"]
    assert tags(second) == ["low1", "low2"]
    assert intake.next(3, 10) == []
    pending = [redis_client.xpending(s, scripts.GROUP)["pending"] for s in streams]
    assert pending == [1, 1, 3]  # taken, not yet acknowledged


def test_an_idle_intake_wakes_on_a_request_at_any_level(
    redis_client: redis.Redis, streams: list[str], intake: Intake
) -> None:
    for stream in (streams[2], streams[0]):
        timer = threading.Timer(0.05, add, (redis_client, stream, stream))
        timer.start()
        started = time.monotonic()
        entries = intake.next(4, 5000)
        timer.join()

        assert tags(entries) == [stream]
        assert time.monotonic() - started < 2  # woken by the entry, not by the 5 s block


def test_acknowledged_entries_leave_their_own_stream_only(
    redis_client: redis.Redis, streams: list[str], intake: Intake
) -> None:
    add(redis_client, streams[0], "high")
    add(redis_client, streams[2], "low")
    entries = intake.next(4, 10)

    pipe = redis_client.pipeline(transaction=False)
    for command in intake.acknowledgements([(entries[0][0], entries[0][1])]):
        pipe.execute_command(*command)
    pipe.execute()

    assert [redis_client.xlen(s) for s in streams] == [0, 0, 1]
    assert redis_client.xpending(streams[2], scripts.GROUP)["pending"] == 1


def test_a_dead_consumers_entries_are_reclaimed_on_every_level(
    redis_client: redis.Redis, streams: list[str], intake: Intake
) -> None:
    add(redis_client, streams[2], "low")
    add(redis_client, streams[0], "high")
    assert len(Intake(redis_client, streams, "dead").next(4, 10)) == 2
    time.sleep(0.02)

    reclaimed = intake.reclaim(idle_ms=10, count=8)

    assert tags(reclaimed) == ["high", "low"]
    assert [redis_client.xpending(s, scripts.GROUP)["pending"] for s in streams] == [1, 0, 1]


def test_a_lost_stream_raises_nogroup_and_its_groups_can_be_made_again(
    redis_client: redis.Redis, streams: list[str], intake: Intake
) -> None:
    redis_client.delete(streams[1])

    with pytest.raises(redis.ResponseError, match="NOGROUP"):
        intake.next(4, 10)
    intake.ensure_groups()
    add(redis_client, streams[1], "normal")

    assert tags(intake.next(4, 10)) == ["normal"]


def test_after_a_short_read_whatever_arrived_comes_back_highest_level_first(
    redis_client: redis.Redis, streams: list[str], intake: Intake
) -> None:
    assert intake.next(4, 10) == []  # drained: the next read blocks on every stream
    add(redis_client, streams[2], "low")
    add(redis_client, streams[1], "normal")
    add(redis_client, streams[0], "high")

    assert tags(intake.next(4, 5000)) == ["high", "normal", "low"]


def test_entries_of_two_reads_are_put_in_level_order(streams: list[str], intake: Intake) -> None:
    high, normal, low = streams
    entries = [(low, b"1-0", {}), (normal, b"1-0", {}), (high, b"2-0", {}), (low, b"2-0", {})]

    assert intake.ordered(entries) == [(high, b"2-0", {}), (normal, b"1-0", {}), (low, b"1-0", {}), (low, b"2-0", {})]
