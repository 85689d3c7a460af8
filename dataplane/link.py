"""A hot path's own Redis connection: a worker's batching loop reads its next requests and
sends its replies and acknowledgements on one (`Link`), a gateway's script batchers and reply
listener each on one (`AsyncLink`).

Sent straight on a connection of the client's pool that the loop keeps, without redis-py's
per-command machinery (the pool's fork check and lock, the retry wrapper, argument filtering,
response callbacks): about 60 µs less CPU per batch in a worker, measured in
docs/benchmarks.md. Errors are redis-py's own. A Redis error reply is raised as
`ResponseError` and the connection stays. A dropped or timed-out connection is replaced and
the exchange sent once more, as redis-py's client retries those errors (a connection that Redis
closed while it sat idle, after a restart, fails on first use); a second failure is raised, for
the caller's own handling (wait, retry). Sentinel pools work unchanged (their connections find
the primary and drop on a demoted one); a Cluster client has no single connection and keeps
the client's path (`link_for` answers None). No Django imports.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import redis
import redis.asyncio as aioredis
from redis.exceptions import NoScriptError, ResponseError

from dataplane.connection import is_cluster_client

Command = Sequence[Any]
# What redis-py's client retries by default: the connection, not the command, failed.
RETRIED = (redis.ConnectionError, redis.TimeoutError)


def link_for(client: redis.Redis) -> Link | None:
    """A link over `client`'s pool, or None for a Redis Cluster client."""
    return None if is_cluster_client(client) else Link(client.connection_pool)


class Link:
    """One thread's connection; not thread-safe (one batching loop owns it)."""

    def __init__(self, pool: redis.ConnectionPool) -> None:
        self._pool = pool
        self._connection: Any = None

    def call(self, *command: Any) -> Any:
        """One command's answer."""
        (answer,) = self._exchange([command])
        if isinstance(answer, ResponseError):
            raise answer
        return answer

    def pipeline(self, commands: Sequence[Command]) -> list[Any]:
        """The commands in one write, their answers in order. Every answer is read before an
        error reply is raised (the first one), so the connection stays in step."""
        if not commands:
            return []
        answers = self._exchange(commands)
        for answer in answers:
            if isinstance(answer, ResponseError):
                raise answer
        return answers

    def _exchange(self, commands: Sequence[Command]) -> list[Any]:
        """The answers, error replies among them; sent once more on a new connection if the
        connection failed."""
        for attempt in (1, 2):
            if self._connection is None:
                self._connection = self._pool.get_connection()
            connection = self._connection
            try:
                connection.send_packed_command(connection.pack_commands(commands))
                answers: list[Any] = []
                for _ in commands:
                    try:
                        answers.append(connection.read_response())
                    except ResponseError as exc:
                        answers.append(exc)
                return answers
            except RETRIED:
                self._drop()
                if attempt == 2:
                    raise
            except BaseException:
                self._drop()
                raise
        raise AssertionError("unreachable")

    def evalsha(self, sha: str, source: str, keys: Sequence[Any], args: Sequence[Any]) -> Any:
        """A script by its SHA1, loaded first if Redis does not have it (a restart, a flush)."""
        try:
            return self.call("EVALSHA", sha, len(keys), *keys, *args)
        except NoScriptError:
            loaded = self.call("SCRIPT", "LOAD", source)
            return self.call("EVALSHA", loaded, len(keys), *keys, *args)

    def close(self) -> None:
        self._drop()

    def _drop(self) -> None:
        """Disconnect and give the connection back: its state is unknown after an error."""
        connection, self._connection = self._connection, None
        if connection is not None:
            connection.disconnect()
            self._pool.release(connection)


def async_link_for(client: aioredis.Redis) -> AsyncLink | None:
    """As `link_for`, for an asyncio client (the gateway)."""
    return None if is_cluster_client(client) else AsyncLink(client.connection_pool)


class AsyncLink:
    """As `Link`, for one task at a time on an event loop (a script batcher's groups, the
    reply listener's pops): the caller awaits each call before the next."""

    def __init__(self, pool: aioredis.ConnectionPool) -> None:
        self._pool = pool
        self._connection: Any = None

    async def call(self, *command: Any) -> Any:
        """One command's answer; as `Link.call`."""
        for attempt in (1, 2):
            if self._connection is None:
                self._connection = await self._pool.get_connection()
            connection = self._connection
            try:
                await connection.send_command(*command)
                return await connection.read_response()
            except ResponseError:
                raise
            except RETRIED:
                await self._drop()
                if attempt == 2:
                    raise
            except BaseException:
                await self._drop()
                raise
        raise AssertionError("unreachable")

    async def evalsha(self, sha: str, source: str, keys: Sequence[Any], args: Sequence[Any]) -> Any:
        try:
            return await self.call("EVALSHA", sha, len(keys), *keys, *args)
        except NoScriptError:
            loaded = await self.call("SCRIPT", "LOAD", source)
            return await self.call("EVALSHA", loaded, len(keys), *keys, *args)

    async def close(self) -> None:
        await self._drop()

    async def _drop(self) -> None:
        connection, self._connection = self._connection, None
        if connection is not None:
            await connection.disconnect()
            await self._pool.release(connection)
