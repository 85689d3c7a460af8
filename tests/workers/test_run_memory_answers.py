"""What a request that ran out of inference memory is told: 400 when it alone needs
more than the limit, 503 (retry) when other runs in flight held the memory.

The end-to-end behaviour with a real worker is tests/integration/test_inference_memory.py;
here the decision itself, on the consumer of a version, without a worker process.
"""

from __future__ import annotations

import threading

import redis
from django.conf import settings

from dataplane.keys import RedisKeys
from dataplane.wire import WireRequest
from workers.consumer import ServedVersion, VersionConsumer
from workers.runtime import RunMemoryExceeded, _RunsInFlight

MiB = 1024**2


def consumer() -> VersionConsumer:
    version = ServedVersion(1, "m", 1, {}, "a", 8, 0.0, (), "cpu", False)
    return VersionConsumer(version, redis.Redis.from_url(settings.REDIS_URL), RedisKeys("t"), "w", lambda v: None, 1000)  # type: ignore[arg-type,return-value]


def request() -> WireRequest:
    return WireRequest("r1", "replies", 0, {}, {})


def test_a_run_that_needs_more_than_the_limit_alone_is_a_400_even_beside_others() -> None:
    alone = RunMemoryExceeded(800 * MiB, 200 * MiB, 256 * MiB, overlapped=False)
    beside_others = RunMemoryExceeded(800 * MiB, 10 * MiB, 256 * MiB, overlapped=True)

    for exc in (alone, beside_others):
        reply = consumer()._failure(request(), exc)
        assert reply.status == 400
        assert reply.error.startswith("the model could not run on this input: it needs more memory")
        assert f"a buffer of {800 * MiB} bytes; the limit of {256 * MiB} bytes applies" in reply.error


def test_a_run_that_fits_the_limit_but_found_it_taken_is_a_503() -> None:
    exc = RunMemoryExceeded(100 * MiB, 10 * MiB, 256 * MiB, overlapped=True)

    reply = consumer()._failure(request(), exc)

    assert reply.status == 503
    assert reply.error == (
        "the worker's memory for inference is in use by other requests "
        f"(a buffer of {100 * MiB} bytes did not fit); retry"
    )


def test_a_run_knows_whether_another_overlapped_it() -> None:
    runs = _RunsInFlight()
    first = runs.start()
    assert runs.finish(first) is False  # alone

    a = runs.start()
    b = runs.start()  # starts while a runs
    assert runs.finish(b) is True
    c = runs.start()
    assert runs.finish(a) is True
    assert runs.finish(c) is True  # a was still running when c started


def test_runs_in_flight_are_counted_across_threads() -> None:
    runs = _RunsInFlight()
    held = runs.start()
    seen: list[bool] = []
    thread = threading.Thread(target=lambda: seen.append(runs.finish(runs.start())))
    thread.start()
    thread.join()

    assert seen == [True]
    assert runs.finish(held) is True
