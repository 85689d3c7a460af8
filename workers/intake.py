"""How a version's batching loop takes requests off its priority levels' streams
(dataplane/priority.py): the highest non-empty level first, one round trip per
batch while requests wait, and a blocking read over every level's stream while
none does, so an idle worker wakes at once whichever level a request arrives on.

Everything that names a stream lives here: reading, reclaiming a dead worker's
entries (XAUTOCLAIM), recreating lost consumer groups, acknowledging. An entry is
(stream, entry id, fields): ids are unique per stream only. No Django imports.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import redis

from dataplane import scripts
from dataplane.link import Command, link_for

Entry = tuple[str, bytes, dict[bytes, bytes]]


def _fields(raw: Any) -> dict[bytes, bytes]:
    """A stream entry's fields: a flat [name, value, ...] list from a script, a dict from redis-py."""
    if isinstance(raw, dict):
        return raw
    return dict(zip(raw[::2], raw[1::2], strict=True))


def taken_entries(streams: Sequence[str], taken: Iterable[Any]) -> list[Entry]:
    """The take script's answer ({level index (1-based), entries} per level) as entries,
    highest level first and in arrival order within a level."""
    ordered: list[Entry] = []
    for index, entries in sorted(taken, key=lambda pair: int(pair[0])):
        stream = streams[int(index) - 1]
        ordered += [(stream, entry_id, _fields(raw)) for entry_id, raw in entries]
    return ordered


def read_entries(streams: Sequence[str], response: Any) -> list[Entry]:
    """A multi-stream XREADGROUP's answer as entries, highest level first."""
    rank = {stream: i for i, stream in enumerate(streams)}
    by_level: list[tuple[int, Any]] = []
    if isinstance(response, dict):  # RESP3 answers a map
        response = response.items()
    for stream, entries in response or []:
        name = stream.decode() if isinstance(stream, bytes) else stream
        by_level.append((rank[name] + 1, entries))
    return taken_entries(streams, by_level)


def by_stream(entries: Iterable[tuple[str, bytes]]) -> dict[str, list[bytes]]:
    """Entry ids grouped by their stream, for per-stream XACK and XDEL."""
    grouped: dict[str, list[bytes]] = {}
    for stream, entry_id in entries:
        grouped.setdefault(stream, []).append(entry_id)
    return grouped


class Intake:
    """One version's streams, as one consumer (a worker) of their group reads them."""

    def __init__(self, client: redis.Redis, streams: Sequence[str], consumer: str) -> None:
        self.redis = client
        self.streams = list(streams)
        self.consumer = consumer
        self._take = client.register_script(scripts.TAKE_SCRIPT)
        self._drained = False  # the last read found fewer entries than it asked for
        # The reads and the acknowledgements of every batch go over the loop's own connection
        # (dataplane/link.py); None on a Redis Cluster, where the client routes each command.
        self.link = link_for(client)
        self._read_args = ("GROUP", scripts.GROUP, consumer)
        self._read_streams = ("STREAMS", *self.streams, *(">" for _ in self.streams))

    def ensure_groups(self) -> None:
        for stream in self.streams:
            try:
                self.redis.xgroup_create(stream, scripts.GROUP, id="0", mkstream=True)
            except redis.ResponseError as exc:
                if "BUSYGROUP" not in str(exc):
                    raise

    def next(self, count: int, block_ms: int) -> list[Entry]:
        """Up to `count` new entries, highest level first; waits up to `block_ms` for one
        when none waits.

        While requests wait (the last read filled its count), the take script fills the
        batch in strict level order. Once a read came back short, every stream was empty a
        moment ago, so the blocking read goes first: an idle worker then costs what one
        stream cost (one blocking round trip per request), and the read returns at once if
        anything arrived meanwhile, up to `count` from each level that has some, highest
        first (the batch planner cuts what exceeds a batch)."""
        link = self.link
        if not self._drained:
            take_args: list[Any] = [scripts.GROUP, self.consumer, count]
            if link is not None:
                taken = link.evalsha(self._take.sha, scripts.TAKE_SCRIPT, self.streams, take_args)
            else:
                taken = self._take(keys=self.streams, args=take_args)
            entries = taken_entries(self.streams, taken)
            if entries:
                self._drained = len(entries) < count
                return entries
        response: Any
        if link is not None:
            response = link.call("XREADGROUP", *self._read_args, "COUNT", count, "BLOCK", block_ms, *self._read_streams)
        else:
            response = self.redis.xreadgroup(
                scripts.GROUP, self.consumer, dict.fromkeys(self.streams, ">"), count=count, block=block_ms
            )
        entries = read_entries(self.streams, response)
        self._drained = len(entries) < count
        return entries

    def ordered(self, entries: list[Entry]) -> list[Entry]:
        """Entries of several reads, highest level first, in arrival order within a level."""
        rank = {stream: i for i, stream in enumerate(self.streams)}
        return sorted(entries, key=lambda entry: rank[entry[0]])

    def reclaim(self, idle_ms: int, count: int) -> list[Entry]:
        """Entries another consumer read but never answered (it died), highest level first;
        entries deleted meanwhile are acknowledged so they leave the pending list."""
        pipe = self.redis.pipeline(transaction=False)
        for stream in self.streams:
            pipe.xautoclaim(stream, scripts.GROUP, self.consumer, idle_ms, "0-0", count=count)
        live: list[Entry] = []
        gone: dict[str, list[bytes]] = {}
        for stream, (_, claimed, deleted) in zip(self.streams, pipe.execute(), strict=True):
            if deleted:
                gone[stream] = deleted
            live += [(stream, entry_id, fields) for entry_id, fields in claimed if fields]
        if gone:
            pipe = self.redis.pipeline(transaction=False)
            for stream, ids in gone.items():
                pipe.xack(stream, scripts.GROUP, *ids)
            pipe.execute()
        return live

    def acknowledgements(self, entries: Iterable[tuple[str, bytes]]) -> list[Command]:
        """The XACK and XDEL commands of answered entries, per stream."""
        commands: list[Command] = []
        for stream, ids in by_stream(entries).items():
            commands.append(("XACK", stream, scripts.GROUP, *ids))
            commands.append(("XDEL", stream, *ids))
        return commands

    def close(self) -> None:
        if self.link is not None:
            self.link.close()
