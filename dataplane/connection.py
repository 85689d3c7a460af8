"""Where Turnout's Redis is and how every process connects to it: one plain server,
a Sentinel-watched primary (failover), or a Redis Cluster (scale).

`parse_target` reads the configuration (REDIS_URL and its companions, parsed in
controlplane/settings.py) and fails loudly, naming the variable, on anything it
cannot use. `sync_client` and `async_client` are the only places that build Redis
clients: Django-side code, workers, the gateway, health probes. `celery_broker`
says what Celery's broker becomes. No Django imports.

Accepted forms (docs/operations.md, "Redis high availability"):
    redis://[[user]:password@]host[:port][/db]       one server (rediss:// with TLS, unix://)
    redis+sentinel://[[user]:password@]sentinel1:26379,sentinel2:26379/service_name[/db]
    redis+cluster://[[user]:password@]node1:6379,node2:6379
(rediss+sentinel:// and rediss+cluster:// with TLS), or REDIS_SENTINELS plus
REDIS_SENTINEL_MASTER, or REDIS_CLUSTER=true with a redis:// URL of one node.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal, cast
from urllib.parse import quote, unquote

import redis
import redis.asyncio as aioredis
from redis.asyncio.cluster import ClusterNode as AsyncClusterNode
from redis.asyncio.cluster import RedisCluster as AsyncRedisCluster
from redis.asyncio.sentinel import Sentinel as AsyncSentinel
from redis.cluster import ClusterNode, RedisCluster
from redis.sentinel import Sentinel

Mode = Literal["single", "sentinel", "cluster"]
SENTINEL_PORT = 26379
REDIS_PORT = 6379


class RedisConfigError(ValueError):
    """The Redis configuration cannot be used; the message names the variable and says why."""


@dataclass(frozen=True)
class RedisTarget:
    mode: Mode
    url: str = ""  # single: the URL as given, for redis-py's own parser
    nodes: tuple[tuple[str, int], ...] = ()  # sentinels, or a cluster's startup nodes
    service_name: str = ""  # the primary's name the sentinels watch
    db: int = 0
    username: str | None = None
    password: str | None = None
    ssl: bool = False
    sentinel_password: str | None = None

    @property
    def cluster(self) -> bool:
        return self.mode == "cluster"

    def describe(self) -> str:
        """Where it is, for messages and logs: never the password."""
        hosts = ",".join(f"{h}:{p}" for h, p in self.nodes)
        if self.mode == "sentinel":
            return f"Redis primary '{self.service_name}' (db {self.db}) watched by sentinels {hosts}"
        if self.mode == "cluster":
            return f"Redis Cluster at {hosts}"
        return f"Redis at {_without_password(self.url)}"


def _without_password(url: str) -> str:
    scheme, sep, rest = url.partition("://")
    netloc, slash, path = rest.partition("/")
    if "@" in netloc:
        netloc = "***@" + netloc.rsplit("@", 1)[1]
    return f"{scheme}{sep}{netloc}{slash}{path}"


def _hosts(text: str, default_port: int, variable: str) -> tuple[tuple[str, int], ...]:
    nodes = []
    for part in (p.strip() for p in text.split(",")):
        if not part:
            continue
        if part.startswith("["):  # [IPv6]:port
            host, _, port_text = part[1:].partition("]")
            port_text = port_text.removeprefix(":")
        else:
            host, _, port_text = part.rpartition(":") if ":" in part else (part, "", "")
        if not host:
            raise RedisConfigError(f"{variable}: '{part}' has no host name")
        try:
            port = int(port_text) if port_text else default_port
        except ValueError:
            raise RedisConfigError(f"{variable}: '{part}' has a port that is not a number") from None
        if not 0 < port < 65536:
            raise RedisConfigError(f"{variable}: '{part}' has port {port}, outside 1-65535")
        nodes.append((host, port))
    if not nodes:
        raise RedisConfigError(f"{variable} names no host")
    return tuple(nodes)


def _credentials(netloc: str) -> tuple[str | None, str | None, str]:
    if "@" not in netloc:
        return None, None, netloc
    userinfo, hosts = netloc.rsplit("@", 1)
    user, _, password = userinfo.partition(":")
    return unquote(user) or None, unquote(password) or None, hosts


def _db(text: str, variable: str) -> int:
    try:
        db = int(text)
    except ValueError:
        raise RedisConfigError(f"{variable}: database '{text}' is not a number") from None
    if db < 0:
        raise RedisConfigError(f"{variable}: database {db} is negative")
    return db


def parse_target(
    url: str,
    sentinels: str = "",
    sentinel_master: str = "",
    cluster: bool = False,
    sentinel_password: str = "",
) -> RedisTarget:
    """REDIS_URL and its companions (REDIS_SENTINELS, REDIS_SENTINEL_MASTER, REDIS_CLUSTER,
    REDIS_SENTINEL_PASSWORD) as one target; RedisConfigError when they cannot be used."""
    scheme, sep, rest = url.partition("://")
    if not sep:
        raise RedisConfigError(f"REDIS_URL={_without_password(url)!r} is not a URL; e.g. redis://127.0.0.1:6379/0")
    scheme = scheme.lower()
    base, _, variant = scheme.partition("+")
    if (
        base not in {"redis", "rediss", "unix"}
        or variant not in {"", "sentinel", "cluster"}
        or (base == "unix" and variant)
    ):
        raise RedisConfigError(
            f"REDIS_URL has scheme '{scheme}://'; use redis://, rediss://, unix://, "
            "redis+sentinel:// or redis+cluster:// (rediss+... for TLS)"
        )
    if sentinels and variant:
        raise RedisConfigError("REDIS_SENTINELS is set and REDIS_URL names its own mode: use one of the two")
    if cluster and variant == "sentinel":
        raise RedisConfigError("REDIS_CLUSTER=true with a redis+sentinel:// URL: a Redis is one or the other")
    if sentinels and cluster:
        raise RedisConfigError("REDIS_SENTINELS and REDIS_CLUSTER=true are both set: a Redis is one or the other")
    if sentinel_master and not (sentinels or variant == "sentinel"):
        raise RedisConfigError("REDIS_SENTINEL_MASTER is set without REDIS_SENTINELS")
    ssl = base == "rediss"

    if variant == "" and not sentinels and not cluster:
        return RedisTarget("single", url=url, ssl=ssl)
    if base == "unix":
        raise RedisConfigError("a unix:// REDIS_URL cannot be used with Sentinel or a cluster")

    body, _, query = rest.partition("?")
    if query and (variant or sentinels or cluster):
        raise RedisConfigError(f"REDIS_URL: options after '?' ({query}) are only read for a plain redis:// URL")
    netloc, _, path = body.partition("/")
    username, password, hosts = _credentials(netloc)
    segments = [s for s in path.split("/") if s]

    if sentinels or variant == "sentinel":
        if sentinels:
            nodes = _hosts(sentinels, SENTINEL_PORT, "REDIS_SENTINELS")
            if not sentinel_master:
                raise RedisConfigError("REDIS_SENTINELS is set: REDIS_SENTINEL_MASTER must name the primary to use")
            service = sentinel_master
            if len(segments) > 1:
                raise RedisConfigError("REDIS_URL: with REDIS_SENTINELS, its path is only the database number")
            db = _db(segments[0], "REDIS_URL") if segments else 0
        else:
            nodes = _hosts(hosts, SENTINEL_PORT, "REDIS_URL")
            if not segments or len(segments) > 2:
                raise RedisConfigError(
                    "REDIS_URL: a redis+sentinel:// URL ends with the primary's name and optionally "
                    "the database, e.g. redis+sentinel://sentinel1:26379,sentinel2:26379/mymaster/0"
                )
            service = unquote(segments[0])
            db = _db(segments[1], "REDIS_URL") if len(segments) == 2 else 0
        return RedisTarget(
            "sentinel",
            nodes=nodes,
            service_name=service,
            db=db,
            username=username,
            password=password,
            ssl=ssl,
            sentinel_password=sentinel_password or None,
        )

    nodes = _hosts(hosts, REDIS_PORT, "REDIS_URL")
    if segments and (len(segments) > 1 or _db(segments[0], "REDIS_URL") != 0):
        raise RedisConfigError("REDIS_URL: a Redis Cluster has database 0 only; drop the database from the URL")
    return RedisTarget("cluster", nodes=nodes, username=username, password=password, ssl=ssl)


def sync_client(
    target: RedisTarget,
    *,
    socket_timeout: float | None = None,
    socket_connect_timeout: float | None = 2,
    health_check_interval: int = 0,
) -> redis.Redis:
    """A client of the target's primary (or of the whole cluster). Typed as `redis.Redis`:
    a RedisCluster answers every command Turnout sends it (docs/architecture.md)."""
    options: dict[str, Any] = {
        "socket_timeout": socket_timeout,
        "socket_connect_timeout": socket_connect_timeout,
        "health_check_interval": health_check_interval,
    }
    if target.mode == "single":
        return redis.Redis.from_url(target.url, **options)
    auth: dict[str, Any] = {"username": target.username, "password": target.password, "ssl": target.ssl}
    if target.mode == "sentinel":
        sentinel = Sentinel(
            list(target.nodes),
            sentinel_kwargs={
                "password": target.sentinel_password,
                "socket_timeout": socket_timeout or 2,
                "socket_connect_timeout": socket_connect_timeout,
            },
            **options,
        )
        return sentinel.master_for(target.service_name, db=target.db, **auth)
    nodes = [ClusterNode(host, port) for host, port in target.nodes]
    options.pop("health_check_interval")
    return cast(redis.Redis, RedisCluster(startup_nodes=nodes, **auth, **options))


def async_client(
    target: RedisTarget,
    *,
    socket_timeout: float | None = None,
    socket_connect_timeout: float | None = 2,
    max_connections: int | None = None,
) -> aioredis.Redis:
    """As `sync_client`, for asyncio (the gateway and its health probes)."""
    options: dict[str, Any] = {"socket_timeout": socket_timeout, "socket_connect_timeout": socket_connect_timeout}
    if target.mode == "single":
        if max_connections is not None:
            options["max_connections"] = max_connections
        return aioredis.Redis.from_url(target.url, **options)
    auth: dict[str, Any] = {"username": target.username, "password": target.password, "ssl": target.ssl}
    if target.mode == "sentinel":
        sentinel = AsyncSentinel(
            list(target.nodes),
            sentinel_kwargs={
                "password": target.sentinel_password,
                "socket_timeout": socket_timeout or 2,
                "socket_connect_timeout": socket_connect_timeout,
            },
            **options,
        )
        if max_connections is not None:
            auth["max_connections"] = max_connections
        return sentinel.master_for(target.service_name, db=target.db, **auth)
    nodes = [AsyncClusterNode(host, port) for host, port in target.nodes]
    if max_connections is not None:
        options["max_connections"] = max_connections  # per node
    return cast(aioredis.Redis, AsyncRedisCluster(startup_nodes=nodes, **auth, **options))


def is_cluster_client(client: object) -> bool:
    return isinstance(client, RedisCluster | AsyncRedisCluster)


def celery_broker(target: RedisTarget) -> tuple[str, dict[str, Any]]:
    """Celery's broker URL and extra transport options, when CELERY_BROKER_URL is not set:
    the same Redis, through kombu's Sentinel transport for a Sentinel target. Celery's
    Redis transport cannot use a Redis Cluster (its queues are lists it moves between
    with multi-key commands), so that case is refused with what to do instead."""
    if target.mode == "single":
        return target.url, {}
    if target.mode == "cluster":
        raise RedisConfigError(
            "REDIS_URL is a Redis Cluster, which Celery cannot use as its broker: set CELERY_BROKER_URL "
            "to a plain or Sentinel Redis (a small one: only control tasks travel there)"
        )
    userinfo = ""
    if target.password:
        userinfo = f"{quote(target.username or '', safe='')}:{quote(target.password, safe='')}@"
    scheme = "sentinel"  # kombu's sentinel transport; TLS through transport options
    url = ";".join(f"{scheme}://{userinfo}{host}:{port}/{target.db}" for host, port in target.nodes)
    options: dict[str, Any] = {"master_name": target.service_name}
    if target.sentinel_password:
        options["sentinel_kwargs"] = {"password": target.sentinel_password}
    if target.ssl:
        options["ssl"] = {"ssl_cert_reqs": "required"}
    return url, options
