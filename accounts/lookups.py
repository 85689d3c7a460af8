"""What unknown API keys may cost the database. No Django imports.

A well-formed key (right shape, right checksum) with a made-up public id passes
every check that needs no I/O, so each new one would cost a database look-up:
a new connection and a query, about 6.6 ms of PostgreSQL against 0.5 ms for a
cached key (measured on the 2-core development machine). Two bounds:

- `UnknownIds` remembers ids that matched no key, for a while and up to a
  number of entries, so a forged key sent again costs nothing;
- `LookupBudget` lets each client address cause only so many look-ups of keys
  the process has not cached (a token bucket per address, refilled per minute);
  look-ups that find a key are given back, so only unknown ids spend it.
"""

from __future__ import annotations

import ipaddress
import math
import time
from collections import OrderedDict
from collections.abc import Callable

Clock = Callable[[], float]

UNKNOWN_TTL_SECONDS = 60.0
UNKNOWN_ENTRIES = 10_000
ADDRESSES = 10_000


class UnknownIds:
    """Public ids that matched no key: a bounded set whose entries expire."""

    def __init__(
        self,
        ttl_seconds: float = UNKNOWN_TTL_SECONDS,
        max_entries: int = UNKNOWN_ENTRIES,
        clock: Clock = time.monotonic,
    ) -> None:
        self._ttl = ttl_seconds
        self._max = max_entries
        self._clock = clock
        self._expiry: OrderedDict[str, float] = OrderedDict()  # oldest first

    def __len__(self) -> int:
        return len(self._expiry)

    def __contains__(self, public_id: str) -> bool:
        expiry = self._expiry.get(public_id)
        if expiry is None:
            return False
        if self._clock() >= expiry:
            del self._expiry[public_id]
            return False
        return True

    def add(self, public_id: str) -> None:
        self._expiry.pop(public_id, None)
        self._expiry[public_id] = self._clock() + self._ttl
        while len(self._expiry) > self._max:
            self._expiry.popitem(last=False)

    def discard(self, public_id: str) -> None:
        self._expiry.pop(public_id, None)

    def clear(self) -> None:
        self._expiry.clear()


def client_group(address: str | None) -> str:
    """Whom a budget belongs to: the IPv4 address, or the /64 of an IPv6 one (a single
    host usually holds a whole /64, so one address each would be no bound at all)."""
    if not address:
        return ""
    try:
        parsed = ipaddress.ip_address(address)
    except ValueError:
        return address
    if isinstance(parsed, ipaddress.IPv6Address):
        if parsed.ipv4_mapped is not None:
            return str(parsed.ipv4_mapped)
        return str(ipaddress.ip_network(f"{parsed}/64", strict=False))
    return str(parsed)


class LookupBudget:
    """Look-ups of uncached keys allowed per client address: a token bucket of
    `per_minute` tokens, refilled at `per_minute` a minute, for each of the
    `max_addresses` most recently seen addresses."""

    def __init__(self, per_minute: int, max_addresses: int = ADDRESSES, clock: Clock = time.monotonic) -> None:
        self._capacity = float(per_minute)
        self._rate = per_minute / 60.0  # tokens per second
        self._max = max_addresses
        self._clock = clock
        self._buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()  # group -> (tokens, at)

    def __len__(self) -> int:
        return len(self._buckets)

    def _tokens(self, group: str, now: float) -> float:
        tokens, at = self._buckets.get(group, (self._capacity, now))
        return min(self._capacity, tokens + (now - at) * self._rate)

    def take(self, address: str | None) -> float:
        """Spend one look-up: 0.0 if allowed, else the seconds until one is."""
        group = client_group(address)
        now = self._clock()
        tokens = self._tokens(group, now)
        if tokens < 1.0:
            self._store(group, tokens, now)
            return (1.0 - tokens) / self._rate
        self._store(group, tokens - 1.0, now)
        return 0.0

    def give_back(self, address: str | None) -> None:
        """A look-up that found a key: it does not count."""
        group = client_group(address)
        now = self._clock()
        self._store(group, min(self._capacity, self._tokens(group, now) + 1.0), now)

    def _store(self, group: str, tokens: float, now: float) -> None:
        self._buckets.pop(group, None)
        if tokens >= self._capacity:
            return  # a full bucket is the default: nothing to keep
        self._buckets[group] = (tokens, now)
        while len(self._buckets) > self._max:
            self._buckets.popitem(last=False)


def retry_after(seconds: float) -> int:
    return max(1, math.ceil(seconds))
