# Turnout: one image for every process (web, worker, beat, migrate); the
# entrypoint's first argument picks the role (see deploy/docker-entrypoint.sh).
#
#   docker build -t turnout:cpu .
#   docker build -t turnout:gpu --build-arg RUNTIME=gpu .
#
# RUNTIME chooses the lock file: cpu.lock installs `onnxruntime`, gpu.lock
# installs `onnxruntime-gpu`. Both ship the same `onnxruntime` module and
# overwrite each other, so an image only ever gets one of them.
# The base image has no CUDA: the NVIDIA runtime injects only the driver, so
# the CUDA runtime, cuBLAS and cuDNN libraries must come from gpu.lock itself
# (onnxruntime-gpu's `cuda` and `cudnn` extras); without them onnxruntime
# falls back to the CPU provider.
#
# Deliberately plain Dockerfile syntax (no RUN --mount, COPY --chmod, syntax
# directive): it builds with BuildKit, the legacy builder docker-compose v1
# falls back to, and Podman alike.

ARG PYTHON_IMAGE=python:3.11-slim-bookworm

# --- builder: resolve nothing, just install the lock into /opt/venv ----------
FROM ${PYTHON_IMAGE} AS builder

ARG RUNTIME=cpu
# Same version as the Makefile, so the image and `make setup` install alike.
ARG UV_VERSION=0.13.9

# Bytecode is compiled here because the runtime user cannot write into
# /opt/venv; without it every process start recompiles Django in memory.
# UV_PYTHON_DOWNLOADS=never: the venv must use the base image's interpreter,
# the one the runtime stage has at the same path.
ENV UV_COMPILE_BYTECODE=1 \
    UV_PYTHON_DOWNLOADS=never \
    UV_NO_CACHE=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1

RUN case "$RUNTIME" in \
        cpu|gpu) ;; \
        *) echo "RUNTIME must be cpu or gpu, got '$RUNTIME'" >&2; exit 1 ;; \
    esac \
    && pip install "uv==${UV_VERSION}" \
    && uv venv /opt/venv --python /usr/local/bin/python3.11

# Only the lock file first: the dependency layer is rebuilt when the lock
# changes, not on every code change.
COPY requirements/${RUNTIME}.lock /tmp/requirements.lock

# `sync`, not `install`: the venv holds exactly the lock, nothing more.
# --no-build: every pinned package ships a manylinux wheel, so this stage has
# no compiler; a future sdist-only dependency fails here loudly instead of
# half-building.
RUN uv pip sync --python /opt/venv/bin/python --no-build /tmp/requirements.lock

# --- runtime ------------------------------------------------------------------
FROM ${PYTHON_IMAGE} AS runtime

ARG RUNTIME=cpu
LABEL org.opencontainers.image.title="turnout" \
      org.opencontainers.image.description="Turnout control plane for serving ONNX models (web, worker, beat)" \
      org.opencontainers.image.licenses="Apache-2.0" \
      io.turnout.runtime="${RUNTIME}"

# libgomp1: onnxruntime's wheels link against OpenMP and slim does not ship it.
# libpq is not needed: psycopg[binary] bundles its own.
RUN apt-get update \
    && apt-get install -y --no-install-recommends libgomp1 \
    && rm -rf /var/lib/apt/lists/*

# A real home directory for the runtime user (tools expect one; gunicorn's
# control socket goes to the temp directory, see deploy/gunicorn.conf.py).
RUN groupadd --system --gid 10001 turnout \
    && useradd --system --uid 10001 --gid turnout --create-home --home-dir /home/turnout \
        --shell /usr/sbin/nologin turnout

# TURNOUT_SKIP_DOTENV: a container takes its configuration from its
# environment only, never from a `.env` that found its way into /app (a
# developer's .env turns DEBUG on). .dockerignore keeps it out as well.
ENV PATH=/opt/venv/bin:$PATH \
    VIRTUAL_ENV=/opt/venv \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    DJANGO_SETTINGS_MODULE=controlplane.settings \
    TURNOUT_SKIP_DOTENV=1 \
    STATIC_ROOT=/app/var/staticfiles \
    ARTIFACT_ROOT=/data/artifacts

COPY --from=builder /opt/venv /opt/venv

WORKDIR /app
# Code stays owned by root: the runtime user can read it, not change it.
COPY . /app

# collectstatic imports the settings, which refuse a weak or missing
# SECRET_KEY when DEBUG is off. The key below exists for this one RUN only: not
# an ENV, so no container ever sees it (it is visible in `docker history`,
# which is fine for a placeholder nothing signs with). No database or Redis is
# touched.
# DEBUG=false so the manifest storage WhiteNoise serves in production is used.
#
# /app/var stays writable for one-off commands (bootstrap_demo writes its
# credentials there); its staticfiles stay root-owned.
#
# /data/artifacts is created owned by the runtime user because Docker seeds an
# empty named volume with the mount point's ownership: that is what makes the
# artifacts volume writable without running as root. No VOLUME instruction:
# it would give every container (beat, migrate, one-off runs) a stray
# anonymous volume; docker-compose.yml mounts the named one where needed.
RUN SECRET_KEY="collectstatic-only-build-key-never-used-at-runtime-0123456789abcdefXYZ" \
        DEBUG=false \
        python manage.py collectstatic --no-input \
    && python -m compileall -q /app \
    && chown turnout:turnout /app/var \
    && mkdir -p /data/artifacts \
    && chown turnout:turnout /data/artifacts

USER turnout:turnout

EXPOSE 8000

# No HEALTHCHECK here: the right check differs per role (HTTP for web, a
# Celery ping for workers); docker-compose.yml sets one per service.
# Run through sh so the entrypoint does not depend on its executable bit
# surviving a checkout.
ENTRYPOINT ["/bin/sh", "/app/deploy/docker-entrypoint.sh"]
CMD ["web"]
