"""Turnout settings.

Every setting that varies between deployments comes from the environment, and
this is the only module that reads it. Each variable is documented in
`.env.example`. The parsers are deliberately tiny and fail loudly: a typo in a
deployment should stop the process at start-up, not surface as odd behaviour.
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path
from typing import Any

import dj_database_url
from django.core.exceptions import ImproperlyConfigured

from dataplane.connection import RedisConfigError, celery_broker, parse_target

BASE_DIR = Path(__file__).resolve().parent.parent


def _load_dotenv(path: Path) -> None:
    """Fill os.environ from a `.env` file; real environment variables win."""
    if not path.is_file():
        return
    for lineno, raw in enumerate(path.read_text().splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        key, sep, value = line.partition("=")
        if not sep:
            raise ImproperlyConfigured(f"{path}:{lineno}: expected KEY=VALUE, got {raw!r}")
        value = value.strip()
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "\"'":
            value = value[1:-1]
        os.environ.setdefault(key.strip(), value)


if os.environ.get("TURNOUT_SKIP_DOTENV", "") not in ("1", "true"):
    _load_dotenv(BASE_DIR / ".env")


def env_str(name: str, default: str) -> str:
    return os.environ.get(name, default)


def env_bool(name: str, default: bool) -> bool:
    raw = os.environ.get(name)
    if raw is None or raw == "":
        return default
    value = raw.strip().lower()
    if value in ("1", "true", "yes", "on"):
        return True
    if value in ("0", "false", "no", "off"):
        return False
    raise ImproperlyConfigured(f"{name}={raw!r} is not a boolean; use true or false")


def env_int(name: str, default: int, minimum: int = 0) -> int:
    raw = os.environ.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ImproperlyConfigured(f"{name}={raw!r} is not an integer") from None
    if value < minimum:
        raise ImproperlyConfigured(f"{name}={value} must be at least {minimum}")
    return value


def env_float(name: str, default: float, minimum: float = 0.0, maximum: float | None = None) -> float:
    raw = os.environ.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = float(raw)
    except ValueError:
        raise ImproperlyConfigured(f"{name}={raw!r} is not a number") from None
    if value != value:  # NaN passes every comparison below
        raise ImproperlyConfigured(f"{name}={raw!r} is not a number")
    if value < minimum:
        raise ImproperlyConfigured(f"{name}={value} must be at least {minimum}")
    if maximum is not None and value > maximum:
        raise ImproperlyConfigured(f"{name}={value} must be at most {maximum}")
    return value


def env_url(name: str, default: str) -> str:
    """An http(s) URL with a host."""
    value = os.environ.get(name) or default
    scheme, sep, rest = value.partition("://")
    if scheme not in ("http", "https") or not sep or not rest.split("/")[0]:
        raise ImproperlyConfigured(f"{name}={value!r} is not an http:// or https:// URL")
    return value


def env_path(name: str, default: Path) -> Path:
    """A filesystem path; relative paths are taken from the project root, not the cwd."""
    raw = os.environ.get(name, "")
    path = Path(raw) if raw else default
    return path if path.is_absolute() else (BASE_DIR / path).resolve()


def env_list(name: str, default: str) -> list[str]:
    return [item.strip() for item in os.environ.get(name, default).split(",") if item.strip()]


DEBUG = env_bool("DEBUG", False)


def host_memory_bytes() -> int:
    """This host's memory: the physical total, or the container's cgroup limit when lower."""
    total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    for limit in ("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory/memory.limit_in_bytes"):
        try:
            raw = Path(limit).read_text().strip()
        except OSError:
            continue
        if raw.isdigit():
            total = min(total, int(raw))
    return int(total)


def validation_memory_bytes(host_bytes: int, concurrency: int) -> int:
    """Default address-space limit of one validation child: together the children may use a
    quarter of the host (the rest is for serving), at most 8 GiB each, at least 512 MiB."""
    return max(512 * 1024**2, min(8 * 1024**3, host_bytes // 4 // max(1, concurrency)))


# WhiteNoise serves static files with a synchronous iterator; under ASGI Django
# warns on every file. The files are small and cached by browsers.
warnings.filterwarnings("ignore", message="StreamingHttpResponse must consume synchronous iterators")

_INSECURE_KEY_PREFIX = "django-insecure-"


def _secret_key() -> str:
    key = os.environ.get("SECRET_KEY", "")
    weak = len(key) < 50 or len(set(key)) < 5 or key.startswith(_INSECURE_KEY_PREFIX)
    if not weak:
        return key
    if DEBUG:
        # Local development only: a stable, obviously insecure key.
        return key or _INSECURE_KEY_PREFIX + "turnout-local-development-key-not-for-production"
    problem = (
        "is not set" if not key else "is too weak (need 50+ characters, 5+ distinct, no 'django-insecure-' prefix)"
    )
    raise ImproperlyConfigured(
        f"SECRET_KEY {problem}. With DEBUG off Turnout refuses to start without a strong key. "
        'Generate one with: python -c "import secrets; print(secrets.token_urlsafe(50))"'
    )


SECRET_KEY = _secret_key()
ALLOWED_HOSTS = env_list("ALLOWED_HOSTS", "localhost,127.0.0.1,[::1]")
CSRF_TRUSTED_ORIGINS = env_list("CSRF_TRUSTED_ORIGINS", "")

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "whitenoise.runserver_nostatic",
    "django.contrib.staticfiles",
    "rest_framework",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "django_htmx",
    "ops",
    "accounts",
    "observability",
    "audit",
    "dashboard",
    "gateway",
    "registry",
    "rollouts",
    "variants",
    "workers",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "django_htmx.middleware.HtmxMiddleware",
    # The management API's RateLimit headers, noted by its key throttle.
    "accounts.middleware.ratelimit_headers",
    # 400 for a NUL character in a URL, query parameter or form field (PostgreSQL cannot store one).
    "controlplane.middleware.RefuseNullCharacters",
]

ROOT_URLCONF = "controlplane.urls"
WSGI_APPLICATION = "controlplane.wsgi.application"
ASGI_APPLICATION = "controlplane.asgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
                "accounts.context_processors.accounts",
            ],
        },
    },
]

DATABASE_URL = env_str("DATABASE_URL", "postgres://postgres@127.0.0.1:5432/turnout")
DATABASES = {
    "default": dj_database_url.parse(
        DATABASE_URL,
        conn_max_age=env_int("DATABASE_CONN_MAX_AGE", 0),
        conn_health_checks=True,
    )
}
if DATABASES["default"]["ENGINE"] != "django.db.backends.postgresql":
    raise ImproperlyConfigured(f"DATABASE_URL must point at PostgreSQL, got engine {DATABASES['default']['ENGINE']}")
DATABASES["default"].setdefault("OPTIONS", {})["connect_timeout"] = env_int("DATABASE_CONNECT_TIMEOUT", 5, 1)
DATABASES["default"]["TEST"] = {"NAME": env_str("DATABASE_TEST_NAME", "test_turnout")}
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

REDIS_URL = env_str("REDIS_URL", "redis://127.0.0.1:6379/0")
# Sentinel (failover) and Redis Cluster (scale): dataplane/connection.py reads these with
# REDIS_URL, and every client is built there (controlplane/redis_client.py).
REDIS_SENTINELS = env_str("REDIS_SENTINELS", "")
REDIS_SENTINEL_MASTER = env_str("REDIS_SENTINEL_MASTER", "")
REDIS_SENTINEL_PASSWORD = env_str("REDIS_SENTINEL_PASSWORD", "")
REDIS_CLUSTER = env_bool("REDIS_CLUSTER", False)
try:
    REDIS_TARGET = parse_target(
        REDIS_URL, REDIS_SENTINELS, REDIS_SENTINEL_MASTER, REDIS_CLUSTER, REDIS_SENTINEL_PASSWORD
    )
except RedisConfigError as exc:
    raise ImproperlyConfigured(str(exc)) from None

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]
LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "dashboard:home"
LOGOUT_REDIRECT_URL = "login"

# Email: password reset links. The console backend prints them in the web process's log.
# EMAIL_BACKEND is "console", "smtp" or the dotted path of any Django email backend.
_EMAIL_BACKENDS = {
    "console": "django.core.mail.backends.console.EmailBackend",
    "smtp": "django.core.mail.backends.smtp.EmailBackend",
}
_email_backend = env_str("EMAIL_BACKEND", "console")
EMAIL_BACKEND = _EMAIL_BACKENDS.get(_email_backend, _email_backend)  # a short name or a dotted path
EMAIL_HOST = env_str("EMAIL_HOST", "localhost")
EMAIL_PORT = env_int("EMAIL_PORT", 25, 1)
EMAIL_HOST_USER = env_str("EMAIL_HOST_USER", "")
EMAIL_HOST_PASSWORD = env_str("EMAIL_HOST_PASSWORD", "")
EMAIL_USE_TLS = env_bool("EMAIL_USE_TLS", False)
DEFAULT_FROM_EMAIL = env_str("DEFAULT_FROM_EMAIL", "turnout@localhost")

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = env_path("STATIC_ROOT", BASE_DIR / "var" / "staticfiles")
STATICFILES_DIRS = [BASE_DIR / "static"]

# Artifacts (uploaded ONNX files) go through Django's storage API: the local
# filesystem by default, any S3-compatible store when ARTIFACT_STORAGE=s3.
ARTIFACT_STORAGE = env_str("ARTIFACT_STORAGE", "local")
ARTIFACT_ROOT = env_path("ARTIFACT_ROOT", BASE_DIR / "var" / "artifacts")
MEDIA_ROOT = ARTIFACT_ROOT
if ARTIFACT_STORAGE == "local":
    _artifact_backend: dict[str, Any] = {
        "BACKEND": "django.core.files.storage.FileSystemStorage",
        "OPTIONS": {"location": str(ARTIFACT_ROOT), "base_url": None},
    }
elif ARTIFACT_STORAGE == "s3":
    _artifact_backend = {
        "BACKEND": "storages.backends.s3.S3Storage",
        "OPTIONS": {
            "bucket_name": env_str("ARTIFACT_S3_BUCKET", ""),
            "endpoint_url": env_str("ARTIFACT_S3_ENDPOINT_URL", "") or None,
            "region_name": env_str("ARTIFACT_S3_REGION", "") or None,
            "access_key": env_str("ARTIFACT_S3_ACCESS_KEY_ID", "") or None,
            "secret_key": env_str("ARTIFACT_S3_SECRET_ACCESS_KEY", "") or None,
            "location": env_str("ARTIFACT_S3_PREFIX", "artifacts"),
            "file_overwrite": False,
            "default_acl": None,
            "querystring_auth": True,
        },
    }
    if not _artifact_backend["OPTIONS"]["bucket_name"]:
        raise ImproperlyConfigured("ARTIFACT_STORAGE=s3 needs ARTIFACT_S3_BUCKET")
else:
    raise ImproperlyConfigured(f"ARTIFACT_STORAGE={ARTIFACT_STORAGE!r}: use 'local' or 's3'")

STORAGES = {
    "default": _artifact_backend,
    "artifacts": _artifact_backend,
    "staticfiles": {
        "BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"
        if DEBUG
        else "whitenoise.storage.CompressedManifestStaticFilesStorage"
    },
}

# --- Security: strict unless DEBUG. TLS is normally terminated by a proxy in
# front of Turnout; SECURE_PROXY_SSL_HEADER trusts its X-Forwarded-Proto.
SECURE_SSL_REDIRECT = env_bool("SECURE_SSL_REDIRECT", not DEBUG)
SECURE_REDIRECT_EXEMPT = [r"^v2/", r"^metrics$"]
if env_bool("SECURE_PROXY_SSL_HEADER", False):
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
SESSION_COOKIE_SECURE = env_bool("SESSION_COOKIE_SECURE", not DEBUG)
CSRF_COOKIE_SECURE = env_bool("CSRF_COOKIE_SECURE", not DEBUG)
SECURE_HSTS_SECONDS = env_int("SECURE_HSTS_SECONDS", 0 if DEBUG else 31536000)
SECURE_HSTS_INCLUDE_SUBDOMAINS = env_bool("SECURE_HSTS_INCLUDE_SUBDOMAINS", not DEBUG)
SECURE_HSTS_PRELOAD = env_bool("SECURE_HSTS_PRELOAD", not DEBUG)
SECURE_CONTENT_TYPE_NOSNIFF = True
SECURE_REFERRER_POLICY = "same-origin"
X_FRAME_OPTIONS = "DENY"
SESSION_COOKIE_HTTPONLY = True

REST_FRAMEWORK = {
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "rest_framework.authentication.SessionAuthentication",
        # Scripts: an API key with the manage action (Authorization: Bearer / X-API-Key).
        "accounts.api.ApiKeyAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    # Requests made with an API key spend its rate limit and daily quota, as inference does.
    "DEFAULT_THROTTLE_CLASSES": ["accounts.api.ApiKeyRateThrottle"],
    # Bodies PostgreSQL cannot store (NUL characters) or nested too deep: 400, not 500.
    "DEFAULT_PARSER_CLASSES": [
        "controlplane.rest.JSONParser",
        "controlplane.rest.FormParser",
        "controlplane.rest.MultiPartParser",
    ],
    # ?limit=&offset=, 50 by default, at most controlplane.rest.MAX_PAGE_SIZE.
    "DEFAULT_PAGINATION_CLASS": "controlplane.rest.Pagination",
    "PAGE_SIZE": 50,
}
SPECTACULAR_SETTINGS = {
    "TITLE": "Turnout management API",
    "DESCRIPTION": "Registry, rollouts and keys. Inference is the Open Inference Protocol under /v2.",
    "VERSION": "0.1.0",
    "SERVE_INCLUDE_SCHEMA": False,
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    "COMPONENT_SPLIT_REQUEST": True,
    "ENUM_NAME_OVERRIDES": {
        "VersionStatusEnum": "registry.models.VersionStatus",
        "JobStatusEnum": "registry.models.JobStatus",
        "ExecutionProviderEnum": "registry.models.ExecutionProvider",
        # Models and rollouts both have a `kind`: each set named, the rollouts' as it was before.
        "ModelKindEnum": "registry.models.ModelKind",
        "KindEnum": "rollouts.models.RolloutKind",
    },
}

# --- Celery: Redis is the broker. Results are not stored: jobs write their
# outcome to PostgreSQL rows, and inference replies travel on Redis lists.
# CELERY_BROKER_URL takes the forms REDIS_URL does, but a Redis Cluster (Celery cannot use one).
try:
    _broker = env_str("CELERY_BROKER_URL", "")
    CELERY_BROKER_URL, _broker_options = celery_broker(parse_target(_broker) if _broker else REDIS_TARGET)
except RedisConfigError as exc:
    raise ImproperlyConfigured(f"Celery's broker: {exc}") from None
CELERY_RESULT_BACKEND = None
CELERY_TASK_IGNORE_RESULT = True
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_TASK_SERIALIZER = "json"
CELERY_ACCEPT_CONTENT = ["json"]
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
CELERY_BROKER_TRANSPORT_OPTIONS = {"visibility_timeout": 3600, **_broker_options}
CELERY_WORKER_HIJACK_ROOT_LOGGER = False
CELERY_TASK_ALWAYS_EAGER = env_bool("CELERY_TASK_ALWAYS_EAGER", False)
# Beat writes a heartbeat every turn of its loop; the loop turns at least this often.
CELERY_BEAT_SCHEDULER = "controlplane.beat:HeartbeatScheduler"
CELERY_BEAT_MAX_LOOP_INTERVAL = 2
# Turnouts sharing one Redis give each its own queue (tests, the benchmark and the drill do).
CELERY_TASK_DEFAULT_QUEUE = env_str("CELERY_TASK_DEFAULT_QUEUE", "celery")
# Worker control (load, unload) is not a Celery task: kombu's Redis fanout never
# delivered it (dataplane/control.py says why and what replaced it).
CELERY_BEAT_SCHEDULE = {
    "flush-key-last-used": {"task": "accounts.flush_last_used", "schedule": 60.0},
    # How often beat looks for canaries whose analysis interval has passed: a canary's
    # `analysis_interval_seconds` below this is effectively this (tests shorten it).
    "analyze-canaries": {
        "task": "rollouts.analyze",
        "schedule": env_float("TURNOUT_CANARY_ANALYSIS_TICK_SECONDS", 10.0, 0.5),
    },
    # Latency figures: a tick's message expires before the next one, so a backlog
    # behind stopped workers does not run the same rollup many times over.
    "observability-roll-up-minutes": {
        "task": "observability.roll_up_minutes",
        "schedule": 30.0,
        "options": {"expires": 30},
    },
    "observability-roll-up-hours": {
        "task": "observability.roll_up_hours",
        "schedule": 600.0,
        "options": {"expires": 600},
    },
    "observability-prune": {"task": "observability.prune", "schedule": 3600.0, "options": {"expires": 3600}},
}

# --- Turnout's own tunables, all in one place.
TURNOUT: dict[str, Any] = {
    # Redis key prefix for everything Turnout keeps there (streams, heartbeats, caches).
    "REDIS_PREFIX": env_str("TURNOUT_REDIS_PREFIX", "turnout"),
    # A worker refreshes its heartbeat this often; it counts as alive for WORKER_TTL seconds.
    "WORKER_HEARTBEAT_SECONDS": env_float("TURNOUT_WORKER_HEARTBEAT_SECONDS", 2.0, 0.1),
    "WORKER_TTL_SECONDS": env_float("TURNOUT_WORKER_TTL_SECONDS", 10.0, 0.5),
    # Beat's heartbeat (controlplane/beat.py): how often, and how long a silent beat still counts as alive.
    "BEAT_HEARTBEAT_SECONDS": env_float("TURNOUT_BEAT_HEARTBEAT_SECONDS", 2.0, 0.1),
    "BEAT_TTL_SECONDS": env_float("TURNOUT_BEAT_TTL_SECONDS", 15.0, 0.5),
    # Longest database statement in a worker or beat process (0: no limit); see controlplane/budget.py.
    "TASK_STATEMENT_TIMEOUT_SECONDS": env_float("TURNOUT_TASK_STATEMENT_TIMEOUT_SECONDS", 60.0, 0.0),
    # Each dependency check in /v2/health/ready gives up after this long.
    "HEALTH_CHECK_TIMEOUT_SECONDS": env_float("TURNOUT_HEALTH_CHECK_TIMEOUT_SECONDS", 1.5, 0.1),
    # Largest model artifact accepted at upload (bytes); default 2 GiB.
    "MAX_ARTIFACT_BYTES": env_int("TURNOUT_MAX_ARTIFACT_BYTES", 2 * 1024**3, 1),
    # Largest request body on the Django side other than an upload (API JSON, page forms), and
    # on any path for a request with neither a session cookie nor an API key (controlplane/body_limits.py).
    "MAX_BODY_BYTES": env_int("TURNOUT_MAX_BODY_BYTES", 1024**2, 1024),
    "MAX_ANONYMOUS_BODY_BYTES": env_int("TURNOUT_MAX_ANONYMOUS_BODY_BYTES", 64 * 1024, 1024),
    # Validation child process limits.
    "VALIDATION_TIMEOUT_SECONDS": env_int("TURNOUT_VALIDATION_TIMEOUT_SECONDS", 300, 1),
    # Validation children a worker process runs at once (the others wait, still pending).
    "VALIDATION_CONCURRENCY": env_int("TURNOUT_VALIDATION_CONCURRENCY", 1, 1),
    # Sized from the host unless set: see validation_memory_bytes above.
    "VALIDATION_MEMORY_BYTES": env_int(
        "TURNOUT_VALIDATION_MEMORY_BYTES",
        validation_memory_bytes(host_memory_bytes(), env_int("TURNOUT_VALIDATION_CONCURRENCY", 1, 1)),
        64 * 1024**2,
    ),
    # Largest inference request body (bytes) and longest per-request timeout a client may ask for.
    "MAX_REQUEST_BYTES": env_int("TURNOUT_MAX_REQUEST_BYTES", 64 * 1024**2, 1024),
    "MAX_REQUEST_TIMEOUT_SECONDS": env_float("TURNOUT_MAX_REQUEST_TIMEOUT_SECONDS", 600.0, 0.001),
    # Inference answers at least this large (bytes) are gzipped for a client that sends
    # `Accept-Encoding: gzip` (gateway/compression.py); smaller ones cost more to compress than they save.
    "GZIP_MIN_RESPONSE_BYTES": env_int("TURNOUT_GZIP_MIN_RESPONSE_BYTES", 64 * 1024, 1),
    # The Open Inference Protocol over gRPC (gateway/grpc_server.py, `manage.py serve_grpc`): on or off,
    # the address it listens on (Triton's port by default), and how many server processes share it.
    "GRPC_ENABLED": env_bool("TURNOUT_GRPC_ENABLED", True),
    "GRPC_BIND": env_str("TURNOUT_GRPC_BIND", "127.0.0.1:8001"),
    "GRPC_PROCESSES": env_int("TURNOUT_GRPC_PROCESSES", 1, 1),
    # Serve gRPC inside each web process instead (beside HTTP, on TURNOUT_GRPC_BIND); then run no serve_grpc.
    "GRPC_IN_WEB": env_bool("TURNOUT_GRPC_IN_WEB", False),
    # The response cache and the fallbacks' cached answers (gateway/response_cache.py): the memory all
    # stored answers may take in Redis together (soonest-expiring evicted past it), and the largest
    # single answer stored (bigger ones are not cached).
    "RESPONSE_CACHE_MAX_BYTES": env_int("TURNOUT_RESPONSE_CACHE_MAX_BYTES", 256 * 1024**2, 1024),
    "RESPONSE_CACHE_MAX_ENTRY_BYTES": env_int("TURNOUT_RESPONSE_CACHE_MAX_ENTRY_BYTES", 1024**2, 64),
    # A canary's early abort (rollouts/analysis.py): before its step's min_requests, it is rolled back
    # once this many of its requests show, by an always-valid one-sided test at this significance
    # level, an error rate above the champion's plus the error gate's margin (docs/operations.md).
    "CANARY_EARLY_ABORT_MIN_REQUESTS": env_int("TURNOUT_CANARY_EARLY_ABORT_MIN_REQUESTS", 20, 1),
    "CANARY_EARLY_ABORT_ALPHA": env_float("TURNOUT_CANARY_EARLY_ABORT_ALPHA", 0.001, 1e-12, 0.1),
    # Largest feedback reward, in absolute value, for numeric metrics (binary ones take 0 or 1).
    "FEEDBACK_MAX_ABS_REWARD": env_float("TURNOUT_FEEDBACK_MAX_ABS_REWARD", 1e9, 1e-9),
    # Workers: which models to serve (comma-separated glob patterns), memory budget for
    # loaded sessions, onnxruntime threads per session, and when to take over a dead
    # worker's unanswered requests.
    "WORKER_MODELS": env_list("TURNOUT_WORKER_MODELS", "*"),
    "WORKER_MEMORY_BUDGET_BYTES": env_int("TURNOUT_WORKER_MEMORY_BUDGET_BYTES", 8 * 1024**3, 1),
    # CPU memory that a worker's inference runs may hold at once (activations and outputs,
    # not weights); a request that needs more is refused. Validation's smoke test runs
    # under the same limit.
    "WORKER_RUN_MEMORY_BYTES": env_int("TURNOUT_WORKER_RUN_MEMORY_BYTES", 2 * 1024**3, 64 * 1024**2),
    "WORKER_INTRA_OP_THREADS": env_int("TURNOUT_WORKER_INTRA_OP_THREADS", 0),
    "WORKER_RECLAIM_IDLE_MS": env_int("TURNOUT_WORKER_RECLAIM_IDLE_MS", 1000, 10),
    # A port on which each worker serves its own Prometheus metrics (0: off; use it
    # when workers do not share a host, and so a metrics directory, with a web process).
    "WORKER_METRICS_PORT": env_int("TURNOUT_WORKER_METRICS_PORT", 0),
    # API keys: HMAC pepper for stored digests (defaults to one derived from SECRET_KEY),
    # whether /v2 model endpoints require a key, and the default rotation grace period.
    "API_KEY_PEPPER": env_str("TURNOUT_API_KEY_PEPPER", ""),
    "REQUIRE_API_KEY": env_bool("TURNOUT_REQUIRE_API_KEY", True),
    "KEY_ROTATION_GRACE_HOURS": env_float("TURNOUT_KEY_ROTATION_GRACE_HOURS", 24.0, 0.0),
    # Database look-ups of API keys a web process has not cached, per client address and
    # minute, that may find no key (forged keys); past it, 429 without a look-up.
    "UNKNOWN_KEY_LOOKUPS_PER_MINUTE": env_int("TURNOUT_UNKNOWN_KEY_LOOKUPS_PER_MINUTE", 30, 1),
    # Failed logins allowed per username and client address within LOGIN_THROTTLE_WINDOW_SECONDS.
    "LOGIN_THROTTLE_ATTEMPTS": env_int("TURNOUT_LOGIN_THROTTLE_ATTEMPTS", 5, 1),
    "LOGIN_THROTTLE_WINDOW_SECONDS": env_int("TURNOUT_LOGIN_THROTTLE_WINDOW_SECONDS", 300, 1),
    # Whether anyone who reaches the dashboard may create an account (off: admins create them).
    "SIGNUP_OPEN": env_bool("TURNOUT_SIGNUP_OPEN", True),
    # Sign-up and password-reset requests allowed per client address and hour.
    "ACCOUNT_REQUESTS_PER_HOUR": env_int("TURNOUT_ACCOUNT_REQUESTS_PER_HOUR", 10, 1),
    # Metrics: per-request recording on/off; a bearer token that may read /metrics
    # (besides admin sessions); retention of the per-minute and hourly rollups.
    "METRICS_ENABLED": env_bool("TURNOUT_METRICS_ENABLED", True),
    "METRICS_TOKEN": env_str("TURNOUT_METRICS_TOKEN", ""),
    "METRICS_MINUTE_RETENTION_DAYS": env_int("TURNOUT_METRICS_MINUTE_RETENTION_DAYS", 7, 1),
    "METRICS_HOUR_RETENTION_DAYS": env_int("TURNOUT_METRICS_HOUR_RETENTION_DAYS", 90, 1),
    # OpenTelemetry tracing of inference requests (observability/tracing.py): on or off, the share
    # of requests without a client `traceparent` that are sampled, and the OTLP/HTTP traces URL.
    "TRACING": env_bool("TURNOUT_TRACING", False),
    "TRACING_SAMPLE_RATIO": env_float("TURNOUT_TRACING_SAMPLE_RATIO", 0.01, 0.0, 1.0),
    "TRACING_ENDPOINT": env_url("TURNOUT_TRACING_ENDPOINT", "http://127.0.0.1:4318/v1/traces"),
    # Public base URL printed in the quick start and used in links.
    "PUBLIC_URL": env_str("TURNOUT_PUBLIC_URL", "http://127.0.0.1:8000"),
}

DATA_UPLOAD_MAX_MEMORY_SIZE = 10 * 1024**2
FILE_UPLOAD_MAX_MEMORY_SIZE = 10 * 1024**2
FILE_UPLOAD_TEMP_DIR = env_str("FILE_UPLOAD_TEMP_DIR", "") or None

LOG_LEVEL = env_str("LOG_LEVEL", "INFO").upper()
LOG_FORMAT = env_str("LOG_FORMAT", "plain")
if LOG_FORMAT not in ("plain", "json"):
    raise ImproperlyConfigured(f"LOG_FORMAT={LOG_FORMAT!r}: use 'plain' or 'json'")
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {
        "plain": {"format": "%(asctime)s %(levelname)-7s %(name)s: %(message)s"},
        "message": {"format": "%(message)s"},
        "json": {
            "()": "pythonjsonlogger.json.JsonFormatter",
            "fmt": "%(asctime)s %(levelname)s %(name)s %(message)s",
            "rename_fields": {"asctime": "time", "levelname": "level", "name": "logger"},
        },
    },
    "handlers": {
        "console": {"class": "logging.StreamHandler", "formatter": LOG_FORMAT},
        # The access log is always one JSON object per line, whatever LOG_FORMAT says;
        # the gateway serialises each line itself.
        "access": {"class": "logging.StreamHandler", "formatter": "message"},
    },
    "root": {"handlers": ["console"], "level": LOG_LEVEL},
    "loggers": {
        "django.db.backends": {"level": "WARNING"},
        "turnout.access": {
            "handlers": ["access"],
            "level": "INFO" if env_bool("TURNOUT_ACCESS_LOG", True) else "WARNING",
            "propagate": False,
        },
    },
}

# Prometheus: every process writes its samples under this directory and
# /metrics aggregates them (prometheus-client's multiprocess mode). The
# library reads the variable itself, so it is exported here, once.
PROMETHEUS_MULTIPROC_DIR = env_path("PROMETHEUS_MULTIPROC_DIR", BASE_DIR / "var" / "prometheus")
PROMETHEUS_MULTIPROC_DIR.mkdir(parents=True, exist_ok=True)
os.environ["PROMETHEUS_MULTIPROC_DIR"] = str(PROMETHEUS_MULTIPROC_DIR)
