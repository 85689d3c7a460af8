"""REDIS_URL and its companions are read by one parser that fails loudly, naming the
variable; every accepted form becomes the target its clients are built from."""

from __future__ import annotations

import pytest

from dataplane.connection import RedisConfigError, RedisTarget, celery_broker, parse_target


@pytest.mark.parametrize(
    ("url", "extra", "says"),
    [
        ("127.0.0.1:6379", {}, "is not a URL"),
        ("http://127.0.0.1:6379/0", {}, "scheme 'http://'"),
        ("redis+cluster+sentinel://h:1", {}, "scheme"),
        ("unix+sentinel:///tmp/redis.sock", {}, "scheme"),
        ("redis+sentinel://h1:26379,h2:26379", {}, "ends with the primary's name"),
        ("redis+sentinel://h1:26379/mymaster/0/extra", {}, "ends with the primary's name"),
        ("redis+sentinel://h1:26379/mymaster/zero", {}, "database 'zero' is not a number"),
        ("redis+sentinel://h1:port/mymaster", {}, "port that is not a number"),
        ("redis+sentinel://h1:70000/mymaster", {}, "outside 1-65535"),
        ("redis+sentinel:///mymaster", {}, "names no host"),
        ("redis+cluster://h1:6379/3", {}, "database 0 only"),
        ("redis+cluster://h1:6379?timeout=1", {}, "only read for a plain redis:// URL"),
        ("redis://h:6379/0", {"sentinels": "s1:26379"}, "REDIS_SENTINEL_MASTER must name"),
        ("redis://h:6379/0", {"sentinel_master": "mymaster"}, "without REDIS_SENTINELS"),
        ("redis+cluster://h:6379", {"sentinels": "s1:26379", "sentinel_master": "m"}, "use one of the two"),
        ("redis+sentinel://s:26379/m", {"cluster": True}, "one or the other"),
        ("redis://h:6379/0", {"sentinels": "s1", "sentinel_master": "m", "cluster": True}, "one or the other"),
        ("unix:///tmp/redis.sock", {"cluster": True}, "unix:// REDIS_URL cannot"),
    ],
)
def test_an_unusable_configuration_is_refused_with_what_is_wrong(url: str, extra: dict, says: str) -> None:
    with pytest.raises(RedisConfigError, match=says):
        parse_target(url, **extra)


def test_a_plain_url_is_kept_as_given_for_redis_pys_own_parser() -> None:
    url = "rediss://:secret@cache.example.com:6380/2?ssl_cert_reqs=required"
    target = parse_target(url)
    assert target == RedisTarget("single", url=url, ssl=True)
    assert "secret" not in target.describe()


def test_a_sentinel_url_names_the_sentinels_the_primary_and_the_database() -> None:
    target = parse_target("rediss+sentinel://app:p%40ss@s1:26379,[::1]:26380,s3/mymaster/2")
    assert target.mode == "sentinel"
    assert target.nodes == (("s1", 26379), ("::1", 26380), ("s3", 26379))
    assert (target.service_name, target.db, target.username, target.password, target.ssl) == (
        "mymaster",
        2,
        "app",
        "p@ss",
        True,
    )
    assert "p@ss" not in target.describe()


def test_sentinels_may_come_from_their_own_variables() -> None:
    target = parse_target(
        "redis://:pw@ignored:6379/1", sentinels="s1:26379, s2", sentinel_master="m", sentinel_password="sp"
    )
    assert (target.mode, target.nodes, target.service_name, target.db) == (
        "sentinel",
        (("s1", 26379), ("s2", 26379)),
        "m",
        1,
    )
    assert (target.password, target.sentinel_password) == ("pw", "sp")


def test_a_cluster_comes_from_its_scheme_or_from_redis_cluster() -> None:
    by_scheme = parse_target("redis+cluster://:pw@n1:7000,n2:7001")
    by_flag = parse_target("redis://:pw@n1:7000/0", cluster=True)
    assert by_scheme.nodes == (("n1", 7000), ("n2", 7001))
    assert by_flag.nodes == (("n1", 7000),)
    assert by_scheme.cluster
    assert by_flag.cluster
    assert by_flag.password == "pw"


def test_celery_uses_the_same_redis_through_kombus_sentinel_transport_and_refuses_a_cluster() -> None:
    assert celery_broker(parse_target("redis://h:6379/3")) == ("redis://h:6379/3", {})
    url, options = celery_broker(parse_target("redis+sentinel://:pw@s1:26379,s2:26380/mymaster/4"))
    assert url == "sentinel://:pw@s1:26379/4;sentinel://:pw@s2:26380/4"
    assert options == {"master_name": "mymaster"}
    with pytest.raises(RedisConfigError, match="set CELERY_BROKER_URL"):
        celery_broker(parse_target("redis+cluster://n1:7000"))
