"""Control messages from the control plane to every worker, by Celery task name.

The workers define these tasks (workers/tasks.py); the registry sends them by name
(`celery_app.signature(LOAD_VERSION, args=[version_id]).delay()`), so the web side
never imports the workers' code (nor onnxruntime through it).
"""

LOAD_VERSION = "workers.load_version"  # load (and warm up) a version now instead of on its first request
UNLOAD_VERSION = "workers.unload_version"  # free a version's session
WARMUP_VERSION = "workers.warmup_version"  # run warm-up inferences, loading first if needed
