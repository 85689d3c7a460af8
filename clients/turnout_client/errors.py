"""What can go wrong, each with the exit status the `turnout` command ends with.

The statuses are part of the command's interface (docs/cli.md): scripts and CI
branch on them, so a number never changes meaning.
"""

from __future__ import annotations

from typing import Any

OK = 0
FAILURE = 1  # anything unexpected
USAGE = 2  # a bad command line or configuration (click uses 2 for usage errors too)
REFUSED = 3  # the API refused the request (400, 409, 413, 415, 429)
NOT_FOUND_OR_AUTH = 4  # 401, 403, 404
ROLLED_BACK = 5  # a watched rollout ended without promoting (rolled back, aborted or stopped)
TIMEOUT = 6  # a wait or a watch ran out of time
UNREACHABLE = 7  # no answer from the server, or a 5xx
JOB_FAILED = 8  # a version failed validation; a quantization, comparison or capacity run failed


class TurnoutError(Exception):
    """Base class; `exit_code` is what the command exits with."""

    exit_code = FAILURE

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def as_dict(self) -> dict[str, Any]:
        return {"error": self.message, "exit_code": self.exit_code}


class ConfigError(TurnoutError):
    """No URL, an unreadable profile file, an unknown profile."""

    exit_code = USAGE


class ApiError(TurnoutError):
    """The API answered with an error status; `body` is its JSON (or text)."""

    exit_code = REFUSED

    def __init__(self, status: int, message: str, body: Any = None) -> None:
        super().__init__(message)
        self.status = status
        self.body = body

    def as_dict(self) -> dict[str, Any]:
        return {**super().as_dict(), "status": self.status, "body": self.body}


class Refused(ApiError):
    exit_code = REFUSED


class NotFoundOrDenied(ApiError):
    exit_code = NOT_FOUND_OR_AUTH


class ServerError(ApiError):
    exit_code = UNREACHABLE


class Unreachable(TurnoutError):
    exit_code = UNREACHABLE


class WaitTimeout(TurnoutError):
    exit_code = TIMEOUT


class JobFailed(TurnoutError):
    """A version failed validation, or a background job failed; `detail` is the last state read."""

    exit_code = JOB_FAILED

    def __init__(self, message: str, detail: Any = None) -> None:
        super().__init__(message)
        self.detail = detail

    def as_dict(self) -> dict[str, Any]:
        return {**super().as_dict(), "detail": self.detail}


class RolloutNotPromoted(JobFailed):
    """A watched rollout ended rolled back, aborted or stopped."""

    exit_code = ROLLED_BACK


def error_for(status: int, body: Any) -> ApiError:
    """The error for an answer of this status, its message taken from DRF's or V2's error shape."""
    message = describe(body) or f"HTTP {status}"
    if status in (401, 403, 404):
        return NotFoundOrDenied(status, message, body)
    if status >= 500:
        return ServerError(status, message, body)
    return Refused(status, message, body)


def describe(body: Any) -> str:
    """One readable line from `{"detail": ...}`, `{"error": ...}` or `{"field": ["..."]}`."""
    if isinstance(body, str):
        text = body.strip()
        return "" if text.startswith("<") else text[:500]  # an HTML error page says nothing useful in a terminal
    if not isinstance(body, dict):
        return ""
    for key in ("detail", "error"):
        if isinstance(body.get(key), str):
            return str(body[key])
    parts = []
    for field, messages in body.items():
        parts.append(f"{field}: {_flatten(messages)}")
    return "; ".join(parts)


def _flatten(messages: Any) -> str:
    if isinstance(messages, list):
        return " ".join(_flatten(m) for m in messages)
    if isinstance(messages, dict):
        return "; ".join(f"{k}: {_flatten(v)}" for k, v in messages.items())
    return str(messages)
