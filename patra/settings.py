"""Patra settings: every setting read from the environment, here and only here.

Two modes share this one file:

* **Embedded** (nothing set): SQLite, local-memory cache, Celery tasks run eagerly in the
  calling process, artifacts under ``./var/artifacts``. This is the demo and the default test run.
* **Real** (``DATABASE_URL`` and ``REDIS_URL`` set): PostgreSQL, Redis as cache and Celery
  broker, workers consuming named queues. This is production.

``PATRA_ENV=production`` turns on the start-up guards: a default ``SECRET_KEY``, ``DEBUG`` on or
an empty ``ALLOWED_HOSTS`` refuse to start. The settings are grouped by concern, in the order of
docs/configuration.md, the full reference (tests/test_configuration_doc.py keeps it complete).
"""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import environ
from celery.schedules import crontab
from django.core.exceptions import ImproperlyConfigured
from kombu import Queue

from core.logging import logging_config

BASE_DIR = Path(__file__).resolve().parent.parent

env = environ.Env()

# === Core Django =================================================================================
# A placeholder that is only acceptable outside production; production refuses it below.
_DEFAULT_SECRET_KEY = "patra-insecure-development-key-change-me"

PATRA_ENV = env.str("PATRA_ENV", default="development")
if PATRA_ENV not in {"development", "test", "production"}:
    raise ImproperlyConfigured(f"PATRA_ENV={PATRA_ENV!r} is not valid; use development, test or production.")
IS_PRODUCTION = PATRA_ENV == "production"

SECRET_KEY = env.str("SECRET_KEY", default=_DEFAULT_SECRET_KEY)
DEBUG = env.bool("DEBUG", default=not IS_PRODUCTION)
ALLOWED_HOSTS = env.list(
    "ALLOWED_HOSTS", default=[] if IS_PRODUCTION else ["localhost", "127.0.0.1", "[::1]", "testserver"]
)
CSRF_TRUSTED_ORIGINS = env.list("CSRF_TRUSTED_ORIGINS", default=[])

if IS_PRODUCTION:
    if SECRET_KEY == _DEFAULT_SECRET_KEY or len(SECRET_KEY) < 32:
        raise ImproperlyConfigured(
            "SECRET_KEY must be set to a random value of at least 32 characters in production "
            '(python -c "import secrets; print(secrets.token_urlsafe(50))").'
        )
    if DEBUG:
        raise ImproperlyConfigured("DEBUG must be off in production: unset DEBUG or set DEBUG=false.")
    if not ALLOWED_HOSTS:
        raise ImproperlyConfigured("ALLOWED_HOSTS must list the host names served in production.")

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "rest_framework",
    "drf_spectacular",
    "drf_spectacular_sidecar",  # Swagger UI and ReDoc files served from here, never from a CDN
    "accounts",
    "recommender",
    "safety",
    "registry",
]

MIDDLEWARE = [
    # First: the request id, the access log line and the request metrics cover everything below.
    "patra.middleware.RequestContextMiddleware",
    # Then the probes and metrics, answered ahead of the Host check and the HTTPS redirect.
    "patra.middleware.ProbeMiddleware",
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "patra.middleware.ApiNotFoundMiddleware",
]

ROOT_URLCONF = "patra.urls"
WSGI_APPLICATION = "patra.wsgi.application"
ASGI_APPLICATION = "patra.asgi.application"

# Project-wide templates and overrides in templates/ (the offline ReDoc page); each app's own
# templates stay in the app.
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
            ],
        },
    },
]

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]
LOGIN_URL = "admin:login"
LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True
STATIC_URL = "static/"
STATIC_ROOT = BASE_DIR / "staticfiles"

# === Security: cookies, HTTPS ====================================================================
SESSION_COOKIE_HTTPONLY = True
CSRF_COOKIE_HTTPONLY = True
SECURE_CONTENT_TYPE_NOSNIFF = True
SECURE_REFERRER_POLICY = "same-origin"
X_FRAME_OPTIONS = "DENY"
# Cookies of the admin and the moderation console: not readable by scripts, not sent on
# cross-site sub-requests, and a staff session ends after SESSION_COOKIE_AGE (default 12 h).
SESSION_COOKIE_SAMESITE = "Lax"
CSRF_COOKIE_SAMESITE = "Lax"
SESSION_COOKIE_AGE = env.int("SESSION_COOKIE_AGE", default=12 * 3600)
SECURE_CROSS_ORIGIN_OPENER_POLICY = "same-origin"
if IS_PRODUCTION:
    SESSION_COOKIE_SECURE = env.bool("SESSION_COOKIE_SECURE", default=True)
    CSRF_COOKIE_SECURE = env.bool("CSRF_COOKIE_SECURE", default=True)
    SECURE_SSL_REDIRECT = env.bool("SECURE_SSL_REDIRECT", default=False)
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
    # HSTS on by default in production (one year); SECURE_HSTS_SECONDS=0 turns it off.
    SECURE_HSTS_SECONDS = env.int("SECURE_HSTS_SECONDS", default=365 * 24 * 3600)
    SECURE_HSTS_INCLUDE_SUBDOMAINS = env.bool("SECURE_HSTS_INCLUDE_SUBDOMAINS", default=False)
    SECURE_HSTS_PRELOAD = False

# === Database and cache ==========================================================================
VAR_DIR = Path(env.str("PATRA_VAR_DIR", default=str(BASE_DIR / "var")))
DATABASE_URL = env.str("DATABASE_URL", default="")
if DATABASE_URL:
    DATABASES = {"default": env.db_url("DATABASE_URL")}
    # Keep connections between requests, but check them first so a restarted PostgreSQL
    # costs one failed request at most, not a broken worker.
    DATABASES["default"].setdefault("CONN_MAX_AGE", env.int("DB_CONN_MAX_AGE", default=60))
    DATABASES["default"]["CONN_HEALTH_CHECKS"] = True
    DATABASES["default"].setdefault("OPTIONS", {})
    if DATABASES["default"]["ENGINE"] == "django.db.backends.postgresql":
        # Fail fast when the database is down instead of hanging a worker.
        DATABASES["default"]["OPTIONS"].setdefault("connect_timeout", env.int("DB_CONNECT_TIMEOUT", default=3))
else:
    VAR_DIR.mkdir(parents=True, exist_ok=True)
    DATABASES = {
        "default": {
            "ENGINE": "django.db.backends.sqlite3",
            "NAME": VAR_DIR / "patra.sqlite3",
            # SQLite serialises writers; wait for the lock instead of failing at once.
            "OPTIONS": {"timeout": 20, "transaction_mode": "IMMEDIATE"},
        }
    }
USING_POSTGRES = DATABASES["default"]["ENGINE"] == "django.db.backends.postgresql"
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

REDIS_URL = env.str("REDIS_URL", default="")
# Parallel test processes (pytest-xdist sets PYTEST_XDIST_WORKER) share one Redis: give each its own
# key prefix so one test database's cached rows never answer another's.
CACHE_KEY_PREFIX = "patra" + (f"-test-{env.str('PYTEST_XDIST_WORKER')}" if env.str("PYTEST_XDIST_WORKER", "") else "")
if REDIS_URL:
    CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": REDIS_URL,
            "KEY_PREFIX": CACHE_KEY_PREFIX,
            # Short timeouts: with Redis down the service answers degraded, it does not hang.
            "OPTIONS": {"socket_connect_timeout": 0.5, "socket_timeout": 0.5},
        }
    }
else:
    CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache", "LOCATION": "patra"}}

# === Celery: broker, queues, limits, beat ========================================================
CELERY_TASK_ALWAYS_EAGER = env.bool("CELERY_TASK_ALWAYS_EAGER", default=not REDIS_URL)
CELERY_TASK_EAGER_PROPAGATES = True
CELERY_BROKER_URL = env.str("CELERY_BROKER_URL", default=REDIS_URL or "memory://")
CELERY_RESULT_BACKEND = env.str("CELERY_RESULT_BACKEND", default=REDIS_URL or "cache+memory://")
CELERY_TASK_DEFAULT_QUEUE = "default"
CELERY_TASK_QUEUES = [Queue(name) for name in ("default", "embeddings", "training", "indexing", "safety")]
CELERY_TASK_ROUTES = {
    "recommender.tasks.embed_*": {"queue": "embeddings"},
    "recommender.tasks.train_*": {"queue": "training"},
    "recommender.tasks.*index*": {"queue": "indexing"},
    "safety.tasks.*": {"queue": "safety"},
}
# A task is acknowledged after it ran, so a worker that dies mid-task hands it to another;
# every task is therefore written to be idempotent.
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_TASK_SOFT_TIME_LIMIT = env.int("CELERY_TASK_SOFT_TIME_LIMIT", default=30 * 60)
CELERY_TASK_TIME_LIMIT = env.int("CELERY_TASK_TIME_LIMIT", default=35 * 60)
CELERY_TASK_TRACK_STARTED = True
CELERY_RESULT_EXPIRES = timedelta(days=1)
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
# How long Redis keeps a message handed to a worker that never acknowledged it (the worker died)
# before handing it out again; longer than any task may run, so a live task is never doubled.
CELERY_VISIBILITY_TIMEOUT = env.int("CELERY_VISIBILITY_TIMEOUT", default=CELERY_TASK_TIME_LIMIT + 300)
CELERY_BROKER_TRANSPORT_OPTIONS = {"visibility_timeout": CELERY_VISIBILITY_TIMEOUT}
CELERY_TIMEZONE = "UTC"
CELERY_BEAT_SCHEDULE = {
    "rebuild-elo-nightly": {
        "task": "recommender.tasks.rebuild_elo_all_tenants",
        "schedule": crontab(hour=3, minute=15),
    },
    "purge-expired-user-tokens": {
        "task": "recommender.tasks.purge_expired_user_tokens",
        "schedule": crontab(hour=4, minute=0),
    },
    "sweep-stale-task-runs": {
        "task": "registry.tasks.sweep_stale_runs",
        "schedule": crontab(minute="*/15"),
    },
    "rebuild-indexes": {
        "task": "recommender.tasks.rebuild_indexes",
        "schedule": crontab(minute=30),  # hourly, away from the nightly jobs' minutes
    },
    "safety-reclassify-stale": {
        "task": "safety.tasks.classify_unscored",
        "schedule": crontab(minute=45),  # hourly: profiles whose on-commit task was lost get scored
    },
    "prune-expired-events": {
        "task": "recommender.tasks.prune_expired_events",
        "schedule": crontab(hour=2, minute=40),  # nightly, before the Elo rebuild at 03:15
    },
}

# === API: authentication, errors, throttles, schema, request limits ==============================
REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": ["accounts.authentication.BearerKeyAuthentication"],
    "DEFAULT_PERMISSION_CLASSES": ["accounts.permissions.IsApiClient"],
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"],
    "DEFAULT_PARSER_CLASSES": ["rest_framework.parsers.JSONParser"],
    "EXCEPTION_HANDLER": "core.errors.exception_handler",
    "UNAUTHENTICATED_USER": None,
    # OpenAPI 3 schema of every view (GET /api/schema/); see core/openapi.py and accounts/openapi.py.
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    # Burst and sustained limits per credential (service key or user token), counted in the
    # Django cache (Redis in real mode).
    "DEFAULT_THROTTLE_CLASSES": [
        "core.throttling.CredentialBurstThrottle",
        "core.throttling.CredentialSustainedThrottle",
    ],
    # Throttles per credential, "<requests>/<period>" with period s, m, h or d, optionally with a
    # count ("100/10s"); "off" disables one. Burst limits short spikes, sustained the hourly volume.
    # Every API call counts against its credential kind's pair; the model-calling ML endpoints also
    # against the stricter ml_* pair. Requests without a credential (public health, schema) are not
    # throttled.
    "DEFAULT_THROTTLE_RATES": {
        "user_burst": env.str("THROTTLE_USER_BURST", default="60/10s"),
        "user_sustained": env.str("THROTTLE_USER_SUSTAINED", default="3000/h"),
        "service_burst": env.str("THROTTLE_SERVICE_BURST", default="1000/10s"),
        "service_sustained": env.str("THROTTLE_SERVICE_SUSTAINED", default="200000/h"),
        "ml_burst": env.str("THROTTLE_ML_BURST", default="50/10s"),
        "ml_sustained": env.str("THROTTLE_ML_SUSTAINED", default="5000/h"),
    },
}
USER_TOKEN_TTL_DAYS = env.int("USER_TOKEN_TTL_DAYS", default=30)

# Event and profile ingestion limits.
EVENT_MAX_BATCH = env.int("EVENT_MAX_BATCH", default=500)
EVENT_MAX_FUTURE_SKEW_SECONDS = env.int("EVENT_MAX_FUTURE_SKEW_SECONDS", default=300)
# Most profiles in one POST /internal/v1/profiles/batch (more is 413, naming the limit).
PROFILE_BATCH_MAX = env.int("PROFILE_BATCH_MAX", default=500)
if PROFILE_BATCH_MAX < 1:
    raise ImproperlyConfigured("PROFILE_BATCH_MAX must be at least 1.")

# The ML API's batch limits (recommender/api/batch.py; docs/api.md, docs/operations.md): more
# items than allowed answers 413, a longer text 400, each naming the limit.
ML_BATCH_MAX_ITEMS = env.int("ML_BATCH_MAX_ITEMS", default=128)  # texts, profile ids, pairs or users
ML_TEXT_MAX_CHARS = env.int("ML_TEXT_MAX_CHARS", default=2000)  # characters per text
ML_RANK_MAX_CANDIDATES = env.int("ML_RANK_MAX_CANDIDATES", default=200)  # candidates per ranked user
ML_RANK_MAX_PAIRS = env.int("ML_RANK_MAX_PAIRS", default=5000)  # (user, candidate) pairs per rank request

SPECTACULAR_SETTINGS = {
    "TITLE": "Patra API",
    "DESCRIPTION": (
        "Reciprocal feeds, event ingestion, safety and the ML API of Patra. Credentials go in "
        "`Authorization: Bearer <key>`: a tenant **service key** (`psk_...`) acts for any user of its "
        "tenant, a **user token** (`put_...`) for one profile. Integrator guide: docs/api.md."
    ),
    "VERSION": "1.0.0",
    "SERVE_INCLUDE_SCHEMA": False,
    # The schema and its pages are public (they describe, they do not serve data) and ignore any
    # Authorization header; Swagger UI's "Authorize" sends the key with "Try it out" calls only.
    "SERVE_PERMISSIONS": ["rest_framework.permissions.AllowAny"],
    "SERVE_AUTHENTICATION": [],
    "COMPONENT_SPLIT_REQUEST": True,
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    "ENUM_NAME_OVERRIDES": {
        "GenderEnum": "recommender.models.Gender",
        "ReportReasonEnum": "safety.models.ReportReason",
        "ProfileStatusEnum": ["active", "hidden", "banned"],
        "SelfProfileStatusEnum": ["active", "hidden"],
        "ReadinessEnum": ["ready", "degraded", "unavailable"],
        "FeedFallbackEnum": ["ml_disabled", "model_unavailable", "index_missing"],
        "MlFallbackEnum": ["ml_disabled", "model_unavailable"],
        "ProfileBatchModeEnum": ["all_or_nothing", "per_item"],
        "ModeEnum": ["embedded", "real"],  # the health answers' mode, named as before the batch's mode
        "ProfileBatchItemStatusEnum": ["created", "updated", "error"],
        "NoVectorReasonEnum": ["no_text", "ml_disabled", "model_unavailable"],
    },
    # The shared error shapes (Error, ValidationError, PayloadTooLarge) are added by a hook.
    "POSTPROCESSING_HOOKS": [
        "drf_spectacular.hooks.postprocess_schema_enums",
        "core.openapi.add_error_components",
    ],
    "TAGS": [
        {"name": "profiles", "description": "Profiles and user tokens (service key)."},
        {"name": "events", "description": "Swipes, impressions and matches."},
        {"name": "feed", "description": "The reciprocal feed."},
        {"name": "safety", "description": "Reports, blocks, appeals and the safety classifier."},
        {"name": "ml", "description": "Batch embeddings, similarity, ranking and ML health (service key)."},
        {"name": "health", "description": "Readiness."},
    ],
}

# === Data retention ==============================================================================
# Raw events (impressions, swipes) older than this many days are deleted nightly by the beat
# task prune_expired_events, in batches of EVENT_RETENTION_BATCH rows; matches and the Elo
# aggregates are kept (recommender/services/retention.py says what and why).
EVENT_RETENTION_DAYS = env.int("EVENT_RETENTION_DAYS", default=90)
EVENT_RETENTION_BATCH = env.int("EVENT_RETENTION_BATCH", default=10_000)
if EVENT_RETENTION_DAYS < 1 or EVENT_RETENTION_BATCH < 1:
    raise ImproperlyConfigured("EVENT_RETENTION_DAYS and EVENT_RETENTION_BATCH must be at least 1.")
# Every accepted impression is stored, tagged or not: impressions are the ranker's training data
# (the former ANALYTICS_SAMPLE_RATE, which kept untagged ones for a panel of users only, is gone).

# === Model registry and artifacts (registry/) ====================================================
ARTIFACT_ROOT = Path(env.str("ARTIFACT_ROOT", default=str(VAR_DIR / "artifacts")))
# Where model artifacts live: "local" (a folder, ARTIFACT_ROOT) or "s3" (an S3-compatible bucket
# through django-storages; credentials come from boto3's usual AWS_* environment variables).
ARTIFACT_STORAGE = env.str("ARTIFACT_STORAGE", default="local")
if ARTIFACT_STORAGE not in {"local", "s3"}:
    raise ImproperlyConfigured(f"ARTIFACT_STORAGE={ARTIFACT_STORAGE!r} is not valid; use local or s3.")
ARTIFACT_S3_BUCKET = env.str("ARTIFACT_S3_BUCKET", default="")
ARTIFACT_S3_ENDPOINT_URL = env.str("ARTIFACT_S3_ENDPOINT_URL", default="")
ARTIFACT_S3_REGION = env.str("ARTIFACT_S3_REGION", default="")
ARTIFACT_S3_PREFIX = env.str("ARTIFACT_S3_PREFIX", default="artifacts")
if ARTIFACT_STORAGE == "s3" and not ARTIFACT_S3_BUCKET:
    raise ImproperlyConfigured("ARTIFACT_STORAGE=s3 needs ARTIFACT_S3_BUCKET.")
# Serving processes unpack (and, with S3, download) artifacts here before loading them.
ARTIFACT_CACHE_DIR = Path(env.str("ARTIFACT_CACHE_DIR", default=str(VAR_DIR / "artifact-cache")))
# How often a serving process asks the database which version is active (a cheap indexed query).
REGISTRY_REFRESH_SECONDS = env.float("REGISTRY_REFRESH_SECONDS", default=2.0)
# Recorded on every version; falls back to `git rev-parse HEAD` when unset.
CODE_VERSION = env.str("CODE_VERSION", default="")

# === ML: the text encoder ========================================================================
ML_ENABLED = env.bool("ML_ENABLED", default=True)
EMBEDDING_MODEL = env.str("EMBEDDING_MODEL", default="all-MiniLM-L6-v2")
EMBEDDING_DEVICE = env.str("EMBEDDING_DEVICE", default="auto")
# How the bio encoder runs (recommender/ml/embeddings.py): "torch" (fp32 PyTorch, the default:
# cosine >= 0.999 to sentence-transformers), "torch-bf16" (the same model in bfloat16: ~2.4x on CPUs
# with AMX, cosine >= 0.999 to fp32; refused, patra.E019, where bf16 is not native), "onnx" (the
# same fp32 weights through ONNX Runtime with fused attention) or "onnx-int8" (int8 attention
# projections: cosine >= 0.99 to fp32 and a modest CPU speed-up, see docs/benchmarks.md; stored
# vectors and the index mix slightly different vectors until re-embedded with `--force`). The ONNX
# backends run on the CPU; their ONNX file is built offline from the local weights on first use
# and cached under ARTIFACT_ROOT/embeddings-onnx/.
EMBEDDING_BACKEND = env.str("EMBEDDING_BACKEND", default="torch")
if EMBEDDING_BACKEND not in {"torch", "torch-bf16", "onnx", "onnx-int8"}:
    raise ImproperlyConfigured(
        f"EMBEDDING_BACKEND={EMBEDDING_BACKEND!r} is not valid; use torch, torch-bf16, onnx or onnx-int8."
    )
EMBEDDING_CACHE_TTL = env.int("EMBEDDING_CACHE_TTL", default=3600)

# === ML: feed scoring ============================================================================
# Feed scoring weights: each multiplies one signal before reciprocal fusion.
ML_SIMILARITY_WEIGHT = env.float("ML_SIMILARITY_WEIGHT", default=0.35)
ML_STRUCTURED_WEIGHT = env.float("ML_STRUCTURED_WEIGHT", default=0.35)
ML_ELO_WEIGHT = env.float("ML_ELO_WEIGHT", default=0.15)
ML_INTERACTION_WEIGHT = env.float("ML_INTERACTION_WEIGHT", default=0.15)
# Exponent on a candidate's relative like rate in P(candidate likes user); 0 turns it off.
ML_SELECTIVITY_WEIGHT = env.float("ML_SELECTIVITY_WEIGHT", default=1.0)
# Weight of the active collaborative model's log-odds against the signals above (summing to 1 by
# default) in each direction's pool; 0 ignores the model (recommender/feed/scoring.py).
ML_COLLABORATIVE_WEIGHT = env.float("ML_COLLABORATIVE_WEIGHT", default=2.0)
# Profiles the collaborative model proposes as candidates per feed request, by its reciprocal
# score over the profiles that pass the structured pre-filter (300 matched 1,000 in the online
# evaluation, 15.98 against 16.06 matches per 100, and keeps the pool small).
ML_COLLABORATIVE_CANDIDATES = env.int("ML_COLLABORATIVE_CANDIDATES", default=300)
ML_FUSION_METHOD = env.str("ML_FUSION_METHOD", default="harmonic")
ML_EXPLORATION_SHARE = env.float("ML_EXPLORATION_SHARE", default=0.1)
ELO_K = env.float("ELO_K", default=32.0)

# === ML: serving processes (candidate store, index, models) ======================================
# How often a serving process applies profile changes (and Elo/like-rate changes) to its
# in-memory candidate store: the delay before a change shows in feeds served by that process.
FEED_STORE_REFRESH_SECONDS = env.float("FEED_STORE_REFRESH_SECONDS", default=2.0)
FEED_ELO_REFRESH_SECONDS = env.float("FEED_ELO_REFRESH_SECONDS", default=10.0)
# Those refreshes, and the index's and the registry's, run on a per-process background thread
# (core/refresher.py) instead of on the request that finds them due; false runs them inline.
SERVING_REFRESH_IN_BACKGROUND = env.bool("SERVING_REFRESH_IN_BACKGROUND", default=True)
# A serving process builds a tenant's candidate store and loads its index and models on threads
# of their own; a request waits at most this long for each first build or load (then the feed
# answers 503 warming_up for the store, or serves without the index or model meanwhile). At a
# million profiles they take about a minute: the four waits of one feed (store, index,
# collaborative model, ranker) must stay under the web server's worker timeout (gunicorn's, 60 s
# in the benchmarks), or the worker is killed mid-load and the loads start over.
SERVING_FIRST_LOAD_WAIT_SECONDS = env.float("SERVING_FIRST_LOAD_WAIT_SECONDS", default=10.0)
# How often a serving process applies database changes to its loaded index (and looks for a
# newer build): the delay before a new, changed, hidden or erased profile shows in the ANN results.
INDEX_REFRESH_SECONDS = env.float("INDEX_REFRESH_SECONDS", default=2.0)
# Deltas re-read this far behind the watermark: a transaction's updated_at is taken before it
# commits, so rows can appear late by up to the longest profile/embedding write transaction.
INDEX_DELTA_OVERLAP_SECONDS = env.float("INDEX_DELTA_OVERLAP_SECONDS", default=30.0)
# The ANN index's HNSW parameters: graph degree and build beam width (building), query beam width.
INDEX_M = env.int("INDEX_M", default=16)
INDEX_EF_CONSTRUCTION = env.int("INDEX_EF_CONSTRUCTION", default=200)
# Query beam width: on random 384-d vectors 64 gave recall@10 0.90, 128 gave 0.98.
INDEX_EF_SEARCH = env.int("INDEX_EF_SEARCH", default=128)

# === Training ====================================================================================
# The configuration search of `train` and `evaluate_offline` (recommender/ml/collab/tuning.py):
# at most ML_TRAIN_SEARCH_TRIALS fits on validation, the default configuration first (1: the
# default only), stopping early when the next fit would pass ML_TRAIN_SEARCH_SECONDS. The trial
# count is the usual limit, so a busy machine trains the same model as a quiet one.
ML_TRAIN_SEARCH_TRIALS = env.int("ML_TRAIN_SEARCH_TRIALS", default=12)
ML_TRAIN_SEARCH_SECONDS = env.float("ML_TRAIN_SEARCH_SECONDS", default=300.0)
if ML_TRAIN_SEARCH_TRIALS < 1 or ML_TRAIN_SEARCH_SECONDS <= 0:
    raise ImproperlyConfigured("ML_TRAIN_SEARCH_TRIALS must be >= 1 and ML_TRAIN_SEARCH_SECONDS > 0.")
# Event weights for collaborative models: a pass is negative evidence.
ML_LIKE_WEIGHT = env.float("ML_LIKE_WEIGHT", default=1.0)
ML_SUPERLIKE_WEIGHT = env.float("ML_SUPERLIKE_WEIGHT", default=2.0)
ML_PASS_WEIGHT = env.float("ML_PASS_WEIGHT", default=-0.5)

# === Safety (safety/) ============================================================================
# Per-label thresholds on the calibrated probability: above review a profile enters the review
# queue; above auto-hide it is hidden at once, pending review. Env: SAFETY_REVIEW_<LABEL>,
# SAFETY_AUTOHIDE_<LABEL> (label upper-cased, e.g. SAFETY_AUTOHIDE_SPAM_SCAM).
SAFETY_LABELS = ("inappropriate", "spam_scam", "harassment", "fake_profile")
_SAFETY_DEFAULTS = {  # label: (review, auto-hide, severity weight)
    "inappropriate": (0.70, 0.97, 1.0),
    "spam_scam": (0.70, 0.97, 1.5),
    "harassment": (0.70, 0.98, 2.0),
    "fake_profile": (0.60, 0.95, 1.0),
}
SAFETY_REVIEW_THRESHOLDS = {
    label: env.float(f"SAFETY_REVIEW_{label.upper()}", default=_SAFETY_DEFAULTS[label][0]) for label in SAFETY_LABELS
}
SAFETY_AUTOHIDE_THRESHOLDS = {
    label: env.float(f"SAFETY_AUTOHIDE_{label.upper()}", default=_SAFETY_DEFAULTS[label][1]) for label in SAFETY_LABELS
}
# Queue severity = sum(label weight x probability) + report and waiting terms (safety/services.py).
SAFETY_LABEL_WEIGHTS = {
    label: env.float(f"SAFETY_WEIGHT_{label.upper()}", default=_SAFETY_DEFAULTS[label][2]) for label in SAFETY_LABELS
}
SAFETY_REPORT_WEIGHT = env.float("SAFETY_REPORT_WEIGHT", default=0.5)  # x log(1 + reports)
SAFETY_WAIT_WEIGHT_PER_HOUR = env.float("SAFETY_WAIT_WEIGHT_PER_HOUR", default=0.05)
SAFETY_RECENCY_WEIGHT_PER_HOUR = env.float("SAFETY_RECENCY_WEIGHT_PER_HOUR", default=0.02)
# A claimed item returns to the queue when its moderator has not decided within this time.
SAFETY_CLAIM_MINUTES = env.int("SAFETY_CLAIM_MINUTES", default=15)
# POST /api/v1/ml/safety/classify limits: more texts is 400, a longer text is 413.
SAFETY_CLASSIFY_MAX_TEXTS = env.int("SAFETY_CLASSIFY_MAX_TEXTS", default=64)
SAFETY_CLASSIFY_MAX_CHARS = env.int("SAFETY_CLASSIFY_MAX_CHARS", default=5_000)
# Local checkpoint used when the registry has no active "safety" version (written by train_safety).
SAFETY_CHECKPOINT_DIR = Path(env.str("SAFETY_CHECKPOINT_DIR", default=str(ARTIFACT_ROOT / "safety" / "current")))
# The public data sets live in the shared/ folder beside the checkout (see its README).
SAFETY_DATA_ROOT = Path(env.str("SAFETY_DATA_ROOT", default=str(BASE_DIR.parent / "shared" / "datasets")))
for _label in SAFETY_LABELS:
    _review, _hide = SAFETY_REVIEW_THRESHOLDS[_label], SAFETY_AUTOHIDE_THRESHOLDS[_label]
    if not (0.0 < _review < _hide < 1.0):
        raise ImproperlyConfigured(
            f"Safety thresholds for {_label!r}: need 0 < review ({_review}) < auto-hide ({_hide}) < 1; "
            f"check SAFETY_REVIEW_{_label.upper()} and SAFETY_AUTOHIDE_{_label.upper()}."
        )
    if SAFETY_LABEL_WEIGHTS[_label] < 0:
        raise ImproperlyConfigured(f"SAFETY_WEIGHT_{_label.upper()} must not be negative.")
if SAFETY_CLAIM_MINUTES < 1:
    raise ImproperlyConfigured("SAFETY_CLAIM_MINUTES must be at least 1.")

# === Logging, metrics, probes, tracing ===========================================================
# One line per log record on stderr: "json" (one object per line: timestamp, level, logger,
# message, request id, tenant, credential kind, view, status, duration; a task's id and name) or
# "text"; json by default in production (core/logging.py).
LOG_LEVEL = env.str("LOG_LEVEL", default="INFO")
LOG_FORMAT = env.str("LOG_FORMAT", default="json" if IS_PRODUCTION else "text")
if LOG_FORMAT not in {"json", "text"}:
    raise ImproperlyConfigured(f"LOG_FORMAT={LOG_FORMAT!r} is not valid; use json or text.")
LOGGING = logging_config(LOG_FORMAT, LOG_LEVEL)
# GET /metrics: with a token, only "Authorization: Bearer <METRICS_TOKEN>" gets it; without one,
# only direct (unproxied) requests from loopback or private addresses (core/probes.py).
METRICS_TOKEN = env.str("METRICS_TOKEN", default="")
# prometheus-client's multiprocess mode (gunicorn, prefork Celery): a directory every process
# writes its samples to; emptied before the server starts. prometheus-client reads the variable
# itself, at import; it is read here too so that a wrong value fails at start-up.
PROMETHEUS_MULTIPROC_DIR = env.str("PROMETHEUS_MULTIPROC_DIR", default="")
if PROMETHEUS_MULTIPROC_DIR and not Path(PROMETHEUS_MULTIPROC_DIR).is_dir():
    raise ImproperlyConfigured(f"PROMETHEUS_MULTIPROC_DIR={PROMETHEUS_MULTIPROC_DIR!r} is not a directory.")
# A Celery worker serves its task metrics on this port (0: off; the web /metrics covers eager mode).
WORKER_METRICS_PORT = env.int("WORKER_METRICS_PORT", default=0)
# Tracing (OpenTelemetry: Django, Celery, psycopg and Redis spans, exported over OTLP/HTTP) when
# the endpoint is set; errors to Sentry when a DSN is set. Both off by default (core/telemetry.py).
OTEL_EXPORTER_OTLP_ENDPOINT = env.str("OTEL_EXPORTER_OTLP_ENDPOINT", default="")
OTEL_SERVICE_NAME = env.str("OTEL_SERVICE_NAME", default="patra")
SENTRY_DSN = env.str("SENTRY_DSN", default="")
SENTRY_ENVIRONMENT = env.str("SENTRY_ENVIRONMENT", default=PATRA_ENV)
SENTRY_TRACES_SAMPLE_RATE = env.float("SENTRY_TRACES_SAMPLE_RATE", default=0.0)
if not 0.0 <= SENTRY_TRACES_SAMPLE_RATE <= 1.0:
    raise ImproperlyConfigured("SENTRY_TRACES_SAMPLE_RATE must be between 0 and 1.")
