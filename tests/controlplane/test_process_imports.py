"""onnxruntime stays in the workers: a web process (the ASGI application with every URL)
and a beat process (the Celery app with every task module) never import it, so they
neither pay for it at start nor hold its memory."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

PROBE = """
import os, sys
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "controlplane.settings")
import django
django.setup()
from controlplane.celery import app
app.loader.import_default_modules()  # what a beat (or any Celery) process imports: every tasks module
list(app.tasks)
if sys.argv[1] == "web":
    import controlplane.asgi  # the gateway beside Django
    from django.urls import get_resolver
    def walk(patterns):
        for pattern in patterns:
            walk(getattr(pattern, "url_patterns", []))
    walk(get_resolver().url_patterns)  # every view module
print(sorted(m for m in sys.modules if m.split(".")[0] in ("onnxruntime", "workers") and m != "workers.apps"))
"""


def imported(kind: str) -> str:
    probe = subprocess.run(
        [sys.executable, "-c", PROBE, kind], cwd=ROOT, env=dict(os.environ), capture_output=True, text=True, timeout=120
    )
    assert probe.returncode == 0, probe.stderr
    return probe.stdout.strip().splitlines()[-1]


def test_a_web_process_never_imports_onnxruntime_or_the_workers_code() -> None:
    assert imported("web") == "['workers']"


def test_a_beat_process_never_imports_onnxruntime_or_the_workers_code() -> None:
    assert imported("beat") == "['workers']"
