"""The gunicorn worker class of Turnout's web processes: uvicorn's, with uvloop and the
protocol that writes an answer's head and body together (controlplane/web_protocol.py)."""

from __future__ import annotations

from typing import Any

from uvicorn_worker import UvicornWorker


class TurnoutUvicornWorker(UvicornWorker):
    CONFIG_KWARGS: dict[str, Any] = {"loop": "auto", "http": "controlplane.web_protocol:CoalescingHttpToolsProtocol"}
