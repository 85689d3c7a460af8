"""Turnout's Python client and the `turnout` command (turnout_client.cli.main)."""

from turnout_client.client import Client
from turnout_client.errors import (
    ApiError,
    JobFailed,
    NotFoundOrDenied,
    Refused,
    RolloutNotPromoted,
    TurnoutError,
    Unreachable,
    WaitTimeout,
)

__all__ = [
    "ApiError",
    "Client",
    "JobFailed",
    "NotFoundOrDenied",
    "Refused",
    "RolloutNotPromoted",
    "TurnoutError",
    "Unreachable",
    "WaitTimeout",
]
