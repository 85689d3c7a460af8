"""Key names: unchanged on a plain or Sentinel Redis (an upgrade keeps every queued
request), and on a Redis Cluster, every set of keys that one script or transaction
touches together hashes to one slot."""

from __future__ import annotations

from redis.crc import key_slot

from accounts import ratelimit
from dataplane.keys import RedisKeys
from dataplane.priority import LEVELS

PLAIN = RedisKeys("turnout")
CLUSTER = RedisKeys("turnout", cluster=True)


def slots(*names: str) -> set[int]:
    return {key_slot(name.encode()) for name in names}


def test_names_without_a_cluster_are_the_ones_earlier_releases_used() -> None:
    assert PLAIN.request_streams(42) == [
        "turnout:v42:requests:high",
        "turnout:v42:requests",
        "turnout:v42:requests:low",
    ]
    assert PLAIN.served_by(42) == "turnout:v42:served_by"
    assert ratelimit.redis_keys(PLAIN, "abc") == ["turnout:rl:abc", "turnout:quota:abc", "turnout:keys:last_used"]
    assert PLAIN.response_cache(42, "d") == "turnout:cache:v42:d"
    assert PLAIN.fallback_answer("m", "d") == "turnout:cache:fb:m:d"
    assert [PLAIN.cache_index(), PLAIN.cache_sizes(), PLAIN.cache_bytes()] == [
        "turnout:cache:index",
        "turnout:cache:sizes",
        "turnout:cache:bytes",
    ]
    assert PLAIN.feedback_arm("m", "r") == "turnout:fbmap:m:r"
    assert PLAIN.reward_moments(7, "canary") == "turnout:fb:7:canary"
    assert PLAIN.obs_minute(5, "m", "1", "champion") == "turnout:obs:5:m:1:champion"
    assert PLAIN.obs_index(5) == "turnout:obs:index:5"
    assert PLAIN.obs_claim("t", 5, "m", "1", "a") == "turnout:obs:claim:t:5:m:1:a"


def test_a_versions_streams_share_a_slot_for_the_enqueue_and_take_scripts() -> None:
    for version in (1, 42, 99_999):
        assert len(slots(*CLUSTER.request_streams(version), CLUSTER.served_by(version))) == 1
    assert len(slots(*(CLUSTER.request_streams(v)[0] for v in range(1, 50)))) > 1  # versions spread


def test_a_keys_rate_state_quota_and_last_use_share_a_slot_for_the_rate_limit_script() -> None:
    names = ratelimit.redis_keys(CLUSTER, "Ab3")
    day = names[1] + ":20428"  # the script appends the day to the quota prefix
    assert len(slots(*names, day)) == 1
    assert slots(*ratelimit.redis_keys(CLUSTER, "x")) != slots(*names)  # keys spread


def test_the_response_cache_feedback_and_histogram_scripts_each_touch_one_slot() -> None:
    cache = [CLUSTER.response_cache(3, "d"), CLUSTER.cache_index(), CLUSTER.cache_sizes(), CLUSTER.cache_bytes()]
    assert len(slots(*cache, CLUSTER.fallback_answer("m", "d"))) == 1
    assert len(slots(CLUSTER.feedback_arm("m", "r"), CLUSTER.reward_moments(7, "canary"))) == 1
    minute = [CLUSTER.obs_minute(5, "m", "1", "a"), CLUSTER.obs_claim("t", 5, "m", "1", "a"), CLUSTER.obs_index(5)]
    assert len(slots(*minute)) == 1
    assert all(name.startswith(CLUSTER.obs_head()) for name in minute)


def test_every_level_is_tagged() -> None:
    assert all(s.startswith("{turnout:v42}:requests") for s in CLUSTER.request_streams(42))
    assert len(CLUSTER.request_streams(42)) == len(LEVELS)
