"""Names of the Redis keys the gateway and the workers share. No Django imports:
callers pass the configured prefix."""

from __future__ import annotations

GROUP = "workers"


def request_stream(prefix: str, version_id: int) -> str:
    return f"{prefix}:v{version_id}:requests"


def reply_list(prefix: str, gateway_id: str) -> str:
    return f"{prefix}:replies:{gateway_id}"


# Appends a request unless the stream already holds max_queue_size entries.
# Workers XDEL what they have answered, so XLEN is what waits plus what runs.
ENQUEUE_SCRIPT = """
if redis.call('XLEN', KEYS[1]) >= tonumber(ARGV[1]) then
    return false
end
return redis.call('XADD', KEYS[1], '*', unpack(ARGV, 2))
"""
