"""ASGI entry point: the lean V2 gateway beside Django.

Requests under `/v2` go to the gateway, a plain ASGI application: Django's
request handler costs about 1.2 ms of CPU per request on its own (see
docs/architecture.md), which the inference path cannot afford. Everything else
(dashboard, management API, admin) goes to Django, behind the body limits of
`controlplane.body_limits`.
"""

import gc
import logging
import os
from typing import Any

from django.core.asgi import get_asgi_application

from controlplane.body_limits import limit_bodies

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "controlplane.settings")

django_application = get_asgi_application()

from gateway.app import Gateway  # noqa: E402  (needs Django set up first)

# Bodies over their limit are refused while they arrive, before Django reads them.
django_behind_limits = limit_bodies(django_application)


def build_application(gateway: Gateway) -> Any:
    async def application(scope, receive, send):  # type: ignore[no-untyped-def]
        kind = scope["type"]
        if kind == "http":
            path = scope["path"]
            if path == "/v2" or path.startswith("/v2/"):
                await gateway(scope, receive, send)
            else:
                await django_behind_limits(scope, receive, send)
        elif kind == "lifespan":
            await gateway.lifespan(scope, receive, send)
        else:
            raise ValueError(f"unsupported ASGI scope type {kind!r}")

    return application


application = build_application(Gateway())

# Every inference writes a log record (the access log). In the web processes a record skips
# what no configured format prints, as the logging HOWTO's "Optimization" section shows: the
# caller's frame and the thread (gunicorn's own lines print the process id, which stays).
# And what the imports built is left out of the collector's scans.
logging._srcfile = None
logging.logThreads = False
logging.logMultiprocessing = False
gc.freeze()
