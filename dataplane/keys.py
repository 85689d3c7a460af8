"""Every Redis key and channel name Turnout uses, built from the configured prefix.

Processes share these names: gateways write streams that workers read, workers
write liveness that the dashboard reads, the gateway counts feedback that the
analysis reads. One method per name, so a rename is one change here. No Django
imports: Django-side code gets the configured instance from
`controlplane.redis_client.redis_keys()`.

On a Redis Cluster (`cluster=True`) the names that one script or transaction
touches together carry one hash tag, `{...}`, so that they live in one slot:
a version's streams and served-by hash `{<prefix>:v<id>}`; a key's rate state,
daily quota and last use `{<prefix>:key:<public id>}`; the response cache, the
feedback joins and sums, and the latency histograms each one tag of their own
(`{<prefix>:cache}`, `{<prefix>:fb}`, `{<prefix>:obs}`), which puts each of those
on one shard (docs/operations.md, "Redis high availability", says what that
costs). Without `cluster` the names are the ones every earlier release used, so
an upgrade of a plain or Sentinel deployment loses no queued request.
"""

from __future__ import annotations

from dataclasses import dataclass

from dataplane.priority import LEVELS


@dataclass(frozen=True)
class RedisKeys:
    prefix: str
    cluster: bool = False

    def _group(self, name: str) -> str:
        """What the names of one group start with: a hash tag on a cluster."""
        return f"{{{self.prefix}:{name}}}" if self.cluster else f"{self.prefix}:{name}"

    # --- inference: gateway <-> workers ----------------------------------
    def request_stream(self, version_id: int, level: str) -> str:
        """A version's queue at one priority level (dataplane/priority.py): one stream
        entry per request (wire.encode_request). The normal level keeps the name the
        single queue had before levels existed, so a rolling upgrade loses nothing."""
        if level == "normal":
            return f"{self._group(f'v{version_id}')}:requests"
        return f"{self._group(f'v{version_id}')}:requests:{level}"

    def request_streams(self, version_id: int) -> list[str]:
        """A version's queues, highest level first."""
        return [self.request_stream(version_id, level) for level in LEVELS]

    def reply_list(self, gateway_id: str) -> str:
        """One web process's replies: workers push, its listener pops."""
        return f"{self.prefix}:replies:{gateway_id}"

    def served_by(self, version_id: int) -> str:
        """Hash: worker name -> execution provider, for the workers serving a version."""
        return f"{self._group(f'v{version_id}')}:served_by"

    def workers(self) -> str:
        """Sorted set: worker name scored by the time of its last heartbeat."""
        return f"{self.prefix}:workers"

    def worker_info(self, name: str) -> str:
        """What a worker's last heartbeat said about itself (JSON)."""
        return f"{self.prefix}:worker:{name}"

    def beat(self) -> str:
        """The beat process's last heartbeat (JSON, expires when it stops)."""
        return f"{self.prefix}:beat"

    # --- response cache and fallback answers (gateway/response_cache.py) --
    def response_cache(self, version_id: int, digest: str) -> str:
        """A version's stored answer to one canonical request (the digest): wire.encode_reply bytes."""
        return f"{self._group('cache')}:v{version_id}:{digest}"

    def fallback_answer(self, model: str, digest: str) -> str:
        """The last good answer a served name gave to one canonical request, for its cache fallback."""
        return f"{self._group('cache')}:fb:{model}:{digest}"

    def cache_index(self) -> str:
        """Sorted set: every stored answer's key, scored by its expiry (ms): eviction's order."""
        return f"{self._group('cache')}:index"

    def cache_sizes(self) -> str:
        """Hash: stored answer's key -> its size in bytes."""
        return f"{self._group('cache')}:sizes"

    def cache_bytes(self) -> str:
        """The total size of the stored answers, held under the memory cap."""
        return f"{self._group('cache')}:bytes"

    # --- change notices (pub/sub channels) -------------------------------
    def catalog_channel(self) -> str:
        """A registry change: the model's name; gateways and workers re-read it."""
        return f"{self.prefix}:catalog"

    def control_stream(self) -> str:
        """Stream: load and unload commands; every worker reads every entry (control.py)."""
        return f"{self.prefix}:control"

    def keys_channel(self) -> str:
        """An API key change: its public id; gateways drop their cached record."""
        return f"{self.prefix}:keys"

    # --- API keys: rate limits and use -----------------------------------
    def rate_state(self, public_id: str) -> str:
        """The GCRA state of a key's rate limit."""
        if self.cluster:
            return f"{self._group(f'key:{public_id}')}:rl"
        return f"{self.prefix}:rl:{public_id}"

    def quota_prefix(self, public_id: str) -> str:
        """A key's daily quota counters (the script appends the day)."""
        if self.cluster:
            return f"{self._group(f'key:{public_id}')}:quota"
        return f"{self.prefix}:quota:{public_id}"

    def keys_last_used(self) -> str:
        """Hash: public id -> last use (ms), written by the rate-limit script, flushed to the
        database by beat (on a cluster, one such hash per key: `key_last_used`)."""
        return f"{self.prefix}:keys:last_used"

    def key_last_used(self, public_id: str) -> str:
        """The hash that records one key's last use: `keys_last_used()`, except on a cluster,
        where it is the key's own, beside its rate state (one script writes both)."""
        if self.cluster:
            return f"{self._group(f'key:{public_id}')}:last_used"
        return self.keys_last_used()

    # --- account pages' throttles ----------------------------------------
    def login_failures(self, ident: str) -> str:
        return f"{self.prefix}:login-failures:{ident}"

    def account_requests(self, kind: str, ident: str) -> str:
        return f"{self.prefix}:account-requests:{kind}:{ident}"

    # --- rollouts: feedback ----------------------------------------------
    def feedback_arm(self, model: str, request_id: str) -> str:
        """Which rollout arm answered a request, until its feedback arrives."""
        if self.cluster:
            return f"{self._group('fb')}:map:{model}:{request_id}"
        return f"{self.prefix}:fbmap:{model}:{request_id}"

    def reward_moments(self, rollout_id: int, arm: str) -> str:
        """Running sums (n, sum, sumsq) of the rewards joined to one arm."""
        return f"{self._group('fb')}:{rollout_id}:{arm}"

    # --- latency histograms per minute -----------------------------------
    def obs_head(self) -> str:
        """What every per-minute histogram name (and claim) starts with."""
        return f"{self._group('obs')}:"

    def obs_minute(self, minute: int, model: str, version: str, arm: str) -> str:
        return f"{self.obs_head()}{minute}:{model}:{version}:{arm}"

    def obs_index(self, minute: int) -> str:
        """Set: the histogram names written in one minute."""
        return f"{self.obs_head()}index:{minute}"

    def obs_index_head(self) -> str:
        return f"{self.obs_head()}index:"

    def obs_claim(self, token: str, minute: int, model: str, version: str, arm: str) -> str:
        """A minute's histogram renamed by the rollup that claimed it."""
        return f"{self.obs_head()}claim:{token}:{minute}:{model}:{version}:{arm}"
