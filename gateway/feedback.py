"""Feedback on the inference path: the arm that answered a request is remembered while a
canary or experiment runs, and `POST /v2/models/{name}/feedback` adds the reward to that
arm's running sums, which the rollout analysis reads (rollouts/analysis.py).

The join remembers, besides the rollout and the arm, the metric the reward is checked
against and the API key that made the request: only that key may give the request's
feedback (another key gets the 404 of a request that awaits none, so request ids of
other clients cannot be probed). Without keys (`TURNOUT_REQUIRE_API_KEY=false`) the
owner is empty and anyone may give the feedback of an anonymous request.

A reward is validated before anything is counted (binary: 0 or 1; numeric: finite,
within +-TURNOUT_FEEDBACK_MAX_ABS_REWARD), then one Lua script uses the join and adds to
the sums, so two feedbacks for one request count once and the sums never half-change.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from typing import Any

import orjson
import redis.asyncio as aioredis

from dataplane.keys import RedisKeys
from gateway.protocol import ProtocolError

logger = logging.getLogger(__name__)

FEEDBACK_TTL_SECONDS = 7 * 24 * 3600
SUMS_TTL_SECONDS = 90 * 24 * 3600
METRICS = ("binary", "numeric")

# KEYS: the join, the arm's sums. ARGV: the join as read, the reward, its square, the sums' TTL.
# 0: the join was used (or changed) since it was read; -1: the sums would overflow; 1: counted.
# The checks come first: a script's writes are not undone when a later command fails.
COUNT_SCRIPT = """
if redis.call('GET', KEYS[1]) ~= ARGV[1] then
    return 0
end
local function finite(x) return x == x and x ~= math.huge and x ~= -math.huge end
local sum = tonumber(redis.call('HGET', KEYS[2], 'sum') or '0') + tonumber(ARGV[2])
local sumsq = tonumber(redis.call('HGET', KEYS[2], 'sumsq') or '0') + tonumber(ARGV[3])
if not (finite(sum) and finite(sumsq)) then
    return -1
end
redis.call('DEL', KEYS[1])
redis.call('HINCRBY', KEYS[2], 'n', 1)
redis.call('HINCRBYFLOAT', KEYS[2], 'sum', ARGV[2])
redis.call('HINCRBYFLOAT', KEYS[2], 'sumsq', ARGV[3])
redis.call('EXPIRE', KEYS[2], ARGV[4])
return 1
"""


@dataclass(frozen=True)
class Join:
    """What the gateway remembered about a request, for its feedback."""

    rollout_id: int
    arm: str
    metric: str  # "binary" or "numeric"; "" for a join written before metrics were kept
    owner: str | None  # the key's public id; "" for an anonymous request; None: not recorded

    def encode(self) -> str:
        return orjson.dumps({"r": self.rollout_id, "a": self.arm, "m": self.metric, "k": self.owner}).decode()

    @classmethod
    def decode(cls, raw: bytes | str) -> Join | None:
        text = raw.decode() if isinstance(raw, bytes) else str(raw)
        if not text.startswith("{"):
            # "<rollout id>:<arm>", written by releases before this one (and kept 7 days): no
            # owner or metric, so such a request's feedback is checked against the range only.
            rollout_id, _, arm = text.partition(":")
            return cls(int(rollout_id), arm, "", None) if rollout_id.isdigit() and arm else None
        try:
            fields = orjson.loads(text)
            return cls(int(fields["r"]), str(fields["a"]), str(fields["m"]), fields["k"])
        except (orjson.JSONDecodeError, KeyError, TypeError, ValueError):
            return None


async def remember_arm(
    client: aioredis.Redis,
    keys: RedisKeys,
    model: str,
    ids: list[str],
    rollout_id: int,
    arm: str,
    *,
    metric: str,
    owner: str,
) -> None:
    """Let feedback from `owner` (a key's public id, "" when anonymous) for these request ids
    find the arm that answered them."""
    value = Join(rollout_id, arm, metric, owner).encode()
    try:
        pipe = client.pipeline(transaction=False)
        for request_id in ids:
            pipe.set(keys.feedback_arm(model, request_id), value, ex=FEEDBACK_TTL_SECONDS)
        await pipe.execute()
    except (aioredis.RedisError, OSError):
        logger.warning("could not record the arm of request(s) %s for feedback", ids)


def check_reward(reward: float, metric: str, max_abs: float) -> None:
    """400 unless the reward fits the metric: binary 0 or 1; numeric (or not recorded) within +-max_abs."""
    if metric == "binary":
        if reward not in (0.0, 1.0):
            raise ProtocolError(
                400,
                "this experiment's metric is binary (a conversion): "
                f"'reward' must be 0 or 1, or false/true, not {reward!r}",
            )
    elif not -max_abs <= reward <= max_abs:
        raise ProtocolError(400, f"'reward' must be within -{max_abs:g} and {max_abs:g}, not {reward!r}")


def _not_awaiting(request_id: str, model: str) -> ProtocolError:
    return ProtocolError(
        404,
        f"no request '{request_id}' of model '{model}' awaits feedback: feedback is joined to requests "
        "served during a canary or an experiment, for 7 days, once, and given with the API key that made the request",
    )


class Feedback:
    """`POST /v2/models/{name}/feedback` for one web process."""

    def __init__(self, client: aioredis.Redis, keys: RedisKeys, max_abs_reward: float) -> None:
        self._redis = client
        self._keys = keys
        self._max_abs = max_abs_reward
        self._count = client.register_script(COUNT_SCRIPT)

    async def record(self, model: str, body: bytes, caller: str) -> dict[str, Any]:
        """Count the reward in `body` for the request it names; `caller` is the key's public id ("" without one)."""
        request_id, reward = parse(body)
        mapping_key = self._keys.feedback_arm(model, request_id)
        try:
            raw = await self._redis.get(mapping_key)
            if raw is None:
                raise _not_awaiting(request_id, model)
            join = Join.decode(raw)
            if join is None or (join.owner is not None and join.owner != caller):
                raise _not_awaiting(request_id, model)
            check_reward(reward, join.metric, self._max_abs)
            if not math.isfinite(reward * reward):
                raise ProtocolError(400, "this reward would make the arm's sums overflow; it was not counted")
            counted = await self._count(
                keys=[mapping_key, self._keys.reward_moments(join.rollout_id, join.arm)],
                args=[raw, repr(reward), repr(reward * reward), SUMS_TTL_SECONDS],
            )
        except (aioredis.RedisError, OSError) as exc:
            raise ProtocolError(503, f"feedback cannot be recorded now: {exc}", [(b"retry-after", b"1")]) from None
        if counted == 0:
            # Another feedback for the same request was counted between the read and the script.
            raise ProtocolError(409, f"feedback for request '{request_id}' was already recorded")
        if counted == -1:
            raise ProtocolError(400, "this reward would make the arm's sums overflow; it was not counted")
        return {"id": request_id, "arm": join.arm, "rollout": join.rollout_id, "recorded": True}


def parse(body: bytes) -> tuple[str, float]:
    try:
        payload = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise ProtocolError(400, f"the feedback body is not valid JSON: {exc}") from None
    if not isinstance(payload, dict):
        raise ProtocolError(400, 'feedback must be an object: {"id": "<request id>", "reward": <number or bool>}')
    request_id, reward = payload.get("id"), payload.get("reward")
    if not isinstance(request_id, str) or not request_id:
        raise ProtocolError(400, "feedback needs the 'id' of the inference request (its id or X-Request-ID)")
    if isinstance(reward, bool):
        reward = 1.0 if reward else 0.0
    if not isinstance(reward, int | float) or not math.isfinite(reward):
        raise ProtocolError(400, "'reward' must be a finite number, or true/false for a conversion")
    return request_id, float(reward)
