"""Why the KEDA example scales on the stream's length: on a real Redis, a request stream
that lost entries to deadlines (the gateway XDELs a request it gave up on) has no
computable consumer-group lag, while XLEN still counts exactly what is owed."""

from __future__ import annotations

import redis

from controlplane.redis_client import redis_keys
from dataplane.priority import NORMAL
from dataplane.scripts import GROUP


def test_under_overload_the_stream_length_stays_true_and_the_group_lag_does_not(redis_client: redis.Redis) -> None:
    stream = redis_keys().request_stream(999_999, NORMAL)
    redis_client.xgroup_create(stream, GROUP, id="0", mkstream=True)
    entries = [redis_client.xadd(stream, {"h": b"{}"}) for _ in range(10)]
    redis_client.xreadgroup(GROUP, "worker-a", {stream: ">"}, count=2)  # a worker runs two
    # Overload: three requests reach their deadline before any worker reads them, and
    # the gateway deletes them so they never run late.
    redis_client.xdel(stream, *entries[4:7])

    [group] = redis_client.xinfo_groups(stream)

    assert redis_client.xlen(stream) == 7  # 2 running + 5 waiting: what the workers still owe
    assert group["lag"] is None  # what a lag-based trigger would read now
