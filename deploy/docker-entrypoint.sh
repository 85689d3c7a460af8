#!/bin/sh
# Entrypoint of the Turnout image. One image runs every process; the first
# argument names the role, so docker-compose.yml and `docker run` stay short
# and the commands live in one place (they mirror the Procfile).
# Anything else is run as given: `docker compose run --rm web python manage.py createsuperuser`.
#
# `exec` everywhere: the server must be PID 1's direct child (or PID 1) so that
# `docker stop`'s SIGTERM reaches gunicorn / celery and they shut down gracefully.
set -eu

role="${1:-web}"
if [ "$#" -gt 0 ]; then shift; fi

# Prometheus multiprocess mode (docs/metrics.md): every process writes its
# samples to files in PROMETHEUS_MULTIPROC_DIR and /metrics sums them. Files
# left by an earlier run would be summed in too (and a new process could reuse
# a dead one's pid), so a server role starts from an empty directory. Only
# prometheus-client's own `*.db` files go: a mistyped path loses nothing else.
# The default mirrors settings.py (relative paths are taken from /app, the
# working directory).
clear_metrics_dir() {
    dir="${PROMETHEUS_MULTIPROC_DIR:-var/prometheus}"
    mkdir -p "$dir"
    find "$dir" -maxdepth 1 -type f -name '*.db' -delete
}

case "$role" in
    web|grpc|worker|beat)
        clear_metrics_dir
        ;;
esac

case "$role" in
    web)
        # --worker-tmp-dir: gunicorn's per-worker heartbeat file is touched
        # constantly; on the container's overlay filesystem that can stall
        # workers, /dev/shm is a tmpfs in every container.
        exec gunicorn controlplane.asgi:application --config deploy/gunicorn.conf.py \
            --worker-class uvicorn_worker.UvicornWorker \
            --bind 0.0.0.0:8000 \
            --workers "${WEB_CONCURRENCY:-2}" \
            --graceful-timeout 10 \
            --worker-tmp-dir /dev/shm \
            "$@"
        ;;
    grpc)
        # The Open Inference Protocol over gRPC on Triton's port; several processes share it
        # (SO_REUSEPORT). TURNOUT_GRPC_ENABLED=false makes it exit with a message.
        exec python manage.py serve_grpc \
            --bind "0.0.0.0:${TURNOUT_GRPC_PORT:-8001}" \
            --processes "${TURNOUT_GRPC_PROCESSES:-1}" \
            "$@"
        ;;
    worker)
        # %h is the container's hostname, unique per replica, so scaled
        # workers never share a Celery node name (the healthcheck relies on it).
        # Thread pool: the batching loops and the control tasks share the
        # process's onnxruntime sessions, and CUDA is never forked.
        exec celery -A controlplane worker \
            --loglevel "${LOG_LEVEL:-INFO}" \
            --pool threads \
            --concurrency 4 \
            --hostname 'worker@%h' \
            "$@"
        ;;
    beat)
        # The schedule file is scratch state: /tmp, because /app is read-only
        # for the runtime user and losing it only means recomputing due times.
        exec celery -A controlplane beat \
            --loglevel "${LOG_LEVEL:-INFO}" \
            --schedule /tmp/celerybeat-schedule \
            "$@"
        ;;
    migrate)
        exec python manage.py migrate --no-input "$@"
        ;;
    *)
        exec "$role" "$@"
        ;;
esac
