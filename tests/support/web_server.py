"""A web process for the integration tests, as production's gunicorn worker runs it
(controlplane/web_worker.py): uvicorn with Turnout's HTTP protocol. uvicorn's command line
only takes its own protocols' names.

    python -m tests.support.web_server PORT   (from the repository's root)
"""

from __future__ import annotations

import sys

import uvicorn

if __name__ == "__main__":
    uvicorn.run(
        "controlplane.asgi:application",
        host="127.0.0.1",
        port=int(sys.argv[1]),
        http="controlplane.web_protocol:CoalescingHttpToolsProtocol",
        access_log=False,
        lifespan="on",
    )
