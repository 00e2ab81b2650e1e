"""Settings shared by every environment.

Every backend is chosen here from the environment, and the defaults run a fresh checkout with
no external server: SQLite, a filesystem Celery broker, the SQL lookup store, the in-process
predictor and filesystem artefacts.
"""

from pathlib import Path

import dj_database_url

from config.env import env_bool, env_choice, env_float, env_int, env_list, env_rate, env_str

BASE_DIR = Path(__file__).resolve().parent.parent.parent
VAR_DIR = Path(env_str("VAR_DIR", str(BASE_DIR / "var")))
# The SQLite file, the filesystem broker and artefacts live here; create it on first start.
VAR_DIR.mkdir(parents=True, exist_ok=True)

SECRET_KEY = env_str("DJANGO_SECRET_KEY", "dev-only-insecure-key-change-me-in-production")
DEBUG = env_bool("DJANGO_DEBUG", False)
ALLOWED_HOSTS = env_list("DJANGO_ALLOWED_HOSTS", ["127.0.0.1", "localhost", "[::1]", "testserver"])

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "rest_framework",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "lookup",
    "mlops",
    "categorisation",
]

MIDDLEWARE = [
    "config.middleware.RequestSizeLimitMiddleware",
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "config.urls"
WSGI_APPLICATION = "config.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [],
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

# SQLite by default. WAL, an IMMEDIATE transaction mode and a long busy timeout let the web
# workers, the Celery worker and the scheduler share one file without "database is locked".
DATABASES = {
    "default": dj_database_url.parse(
        env_str("DATABASE_URL", f"sqlite:///{VAR_DIR / 'db.sqlite3'}"),
        conn_max_age=env_int("DATABASE_CONN_MAX_AGE", 60, minimum=0),
        # A connection kept between requests is checked before reuse, so a database restart
        # costs one reconnect instead of a failed request.
        conn_health_checks=True,
    )
}
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    DATABASES["default"]["CONN_MAX_AGE"] = 0
    DATABASES["default"]["OPTIONS"] = {
        "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
        "transaction_mode": "IMMEDIATE",
        "timeout": 30,
    }

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
]

LANGUAGE_CODE = "en-gb"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = VAR_DIR / "static"

# The cache stores the API rate-limit counters and the promotion gate's results. The default is
# local memory, so each process counts on its own (the API's effective rate limit is then the
# rate times the number of web processes). CACHE_URL=redis://host:port/db shares it; each cache
# call then waits at most CACHE_TIMEOUT_SECONDS, and the rate limit lets requests through while
# Redis is unreachable.
CACHES = {
    "default": {
        "BACKEND": "django.core.cache.backends.locmem.LocMemCache",
        "LOCATION": "categorisation",
    }
}
if env_str("CACHE_URL", ""):
    CACHE_TIMEOUT_SECONDS = env_float("CACHE_TIMEOUT_SECONDS", 0.25, minimum=0.01)
    CACHES["default"] = {
        "BACKEND": "django.core.cache.backends.redis.RedisCache",
        "LOCATION": env_str("CACHE_URL", ""),
        "OPTIONS": {"socket_connect_timeout": CACHE_TIMEOUT_SECONDS, "socket_timeout": CACHE_TIMEOUT_SECONDS},
    }

# Request bodies: a batch of 1,000 expenses with long descriptions fits in 2 MB; anything larger
# gets a JSON 413 before it is read.
MAX_REQUEST_BODY_BYTES = env_int("MAX_REQUEST_BODY_BYTES", 2 * 1024 * 1024, minimum=1024)
DATA_UPLOAD_MAX_MEMORY_SIZE = MAX_REQUEST_BODY_BYTES

# API rate limits per client, as "<count>/<s|min|h|day>"; a batch of predictions counts as one
# request. The prediction default, 1,000 requests a second, is above the peak that two web workers
# serve on 2 cores (docs/benchmarks.md), so it stops a runaway client, not a busy one.
REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "categorisation.authentication.ApiTokenAuthentication",
    ],
    "DEFAULT_THROTTLE_CLASSES": ["categorisation.throttling.ClientRateThrottle"],
    "DEFAULT_THROTTLE_RATES": {
        "predictions": env_rate("API_RATE_PREDICTIONS", "60000/min"),
        "events": env_rate("API_RATE_EVENTS", "3000/min"),
    },
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    "DEFAULT_PARSER_CLASSES": ["config.parsers.StrictJSONParser"],
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"],
    "DEFAULT_SCHEMA_CLASS": "config.openapi.ErrorResponsesAutoSchema",
    "EXCEPTION_HANDLER": "config.exceptions.json_exception_handler",
    "UNAUTHENTICATED_USER": None,
}

SPECTACULAR_SETTINGS = {
    "TITLE": "Expense categorisation API",
    "DESCRIPTION": "Suggests the accounting category of an expense and learns from expense events.",
    "VERSION": "1.0.0",
    "SERVE_INCLUDE_SCHEMA": False,
    # Swagger UI's files come from the installed sidecar package, not from a CDN.
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    "COMPONENT_SPLIT_REQUEST": True,
    # The event types of created or updated events and of deleted events, each used by both
    # `type` (plain form) and `detail-type` (EventBridge envelope).
    "ENUM_NAME_OVERRIDES": {
        "ChangedEventTypeEnum": "lookup.serializers.CHANGED_EVENT_TYPES",
        "DeletedEventTypeEnum": "lookup.serializers.DELETED_EVENT_TYPES",
    },
}

# Celery. The default broker is kombu's filesystem transport, which needs no server. It can lose
# a message in flight when a worker crashes, so the event inbox table, swept periodically, is
# the durable record and the broker only a wake-up call.
CELERY_BROKER_URL = env_str("CELERY_BROKER_URL", "filesystem://localhost/")
CELERY_BROKER_DIR = VAR_DIR / "broker"
if CELERY_BROKER_URL.startswith("filesystem://"):
    CELERY_BROKER_TRANSPORT_OPTIONS = {
        "data_folder_in": str(CELERY_BROKER_DIR / "queue"),
        "data_folder_out": str(CELERY_BROKER_DIR / "queue"),
        "processed_folder": str(CELERY_BROKER_DIR / "processed"),
        # The exchange table; kombu's default is "control" in the working directory.
        "control_folder": str(CELERY_BROKER_DIR / "control"),
        "store_processed": False,
    }
else:
    # The visibility timeout must exceed the longest task (training) plus any retry countdown,
    # or Redis hands the message to a second worker while the first still runs it.
    # The socket timeouts bound a publish to a Redis that is down or unreachable, where kombu's
    # default waits forever. A worker's BRPOP returns within 1 s (kombu 5.7's brpop_timeout), so
    # the 5 s read timeout does not cut it.
    CELERY_BROKER_TRANSPORT_OPTIONS = {
        "visibility_timeout": env_int("CELERY_VISIBILITY_TIMEOUT", 3600, minimum=60),
        "socket_connect_timeout": 2,
        "socket_timeout": 5,
    }
CELERY_TASK_ALWAYS_EAGER = env_bool("CELERY_TASK_ALWAYS_EAGER", False)
# A publish that fails is retried twice, 0.2 s then 0.4 s later, and then raises, because the web
# request that queues accepted events must respond quickly. The inbox sweep queues them later.
CELERY_TASK_PUBLISH_RETRY_POLICY = {"max_retries": 2, "interval_start": 0.2, "interval_step": 0.2, "interval_max": 0.4}
CELERY_TASK_EAGER_PROPAGATES = True
CELERY_TASK_IGNORE_RESULT = True
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_TASK_SERIALIZER = "json"
CELERY_ACCEPT_CONTENT = ["json"]
CELERY_BEAT_SCHEDULE_FILENAME = str(VAR_DIR / "celerybeat-schedule")

# Event inbox: events still pending after this many seconds are enqueued again by the sweep.
EVENT_SWEEP_INTERVAL_SECONDS = env_int("EVENT_SWEEP_INTERVAL_SECONDS", 30, minimum=1)
EVENT_PENDING_MAX_AGE_SECONDS = env_int("EVENT_PENDING_MAX_AGE_SECONDS", 60, minimum=1)
EVENT_MAX_ATTEMPTS = env_int("EVENT_MAX_ATTEMPTS", 6, minimum=1)
EVENT_BATCH_SIZE = env_int("EVENT_BATCH_SIZE", 200, minimum=1)
EVENTS_MAX_PER_REQUEST = env_int("EVENTS_MAX_PER_REQUEST", 1000, minimum=1)

# Lookup store.
LOOKUP_STORE = env_choice("LOOKUP_STORE", "sql", ("sql", "dynamodb"))
DYNAMODB_TABLE = env_str("DYNAMODB_TABLE", "expense-lookup")
# The worker writes a batch of events as conditional puts in TransactWriteItems calls of up to 100:
# about a tenth of the CPU per event of one PutItem each, at twice the write capacity. false
# writes one PutItem per expense.
DYNAMODB_TRANSACTIONAL_WRITES = env_bool("DYNAMODB_TRANSACTIONAL_WRITES", True)
AWS_REGION = env_str("AWS_REGION", "eu-west-2")
LOOKUP_MAX_MATCHES = env_int("LOOKUP_MAX_MATCHES", 50, minimum=1)
# DynamoDB client: seconds to open a connection and to wait for a response, and the attempts per
# call (the first included) in botocore's adaptive retry mode. The endpoint comes from boto3's own
# AWS_ENDPOINT_URL_DYNAMODB variable when a local server is used.
DYNAMODB_CONNECT_TIMEOUT_SECONDS = env_float("DYNAMODB_CONNECT_TIMEOUT_SECONDS", 1.0, minimum=0.05)
DYNAMODB_READ_TIMEOUT_SECONDS = env_float("DYNAMODB_READ_TIMEOUT_SECONDS", 2.0, minimum=0.05)
DYNAMODB_MAX_ATTEMPTS = env_int("DYNAMODB_MAX_ATTEMPTS", 3, minimum=1)

# Models: where artefacts live, and which predictor serves them.
ARTEFACT_STORE = env_str("ARTEFACT_STORE", str(VAR_DIR / "artefacts"))
PREDICTOR = env_choice("PREDICTOR", "inprocess", ("inprocess", "sagemaker"))
# How often a web worker checks the registry for a newly activated model version.
ACTIVE_MODEL_CHECK_SECONDS = env_float("ACTIVE_MODEL_CHECK_SECONDS", 5.0)
# After loading a model, move the objects alive then out of the cyclic GC's reach
# (mlops.predictors.freeze_long_lived_objects): full collections took a quarter of a batch's CPU.
MODEL_GC_FREEZE = env_bool("MODEL_GC_FREEZE", True)
MODEL_MIN_TRAINING_ROWS = env_int("MODEL_MIN_TRAINING_ROWS", 30, minimum=2)
MODEL_HOLDOUT_FRACTION = env_float("MODEL_HOLDOUT_FRACTION", 0.2)
# Business models fitted at once while training. The saga solver releases the GIL, so threads run
# in parallel, and a Celery worker's children cannot start processes of their own.
MODEL_TRAINING_THREADS = env_int("MODEL_TRAINING_THREADS", 2, minimum=1)
# Called by training with the training split, the holdout and the model's ranking of it: tunes the
# lookup weight per business and fits the calibration and tiers of the combined answer.
MODEL_HOLDOUT_ANALYSIS = "categorisation.tuning.fit_calibration"

# SageMaker deployment. With PREDICTOR=sagemaker, `deploy_model` puts a version on this endpoint
# and the predictor invokes it. The deploying identity needs iam:PassRole on the execution role.
# The image must be a SageMaker scikit-learn serving image, and the container installs the
# scikit-learn version the artefact was trained with (docs/models.md lists the permissions).
SAGEMAKER_ENDPOINT_NAME = env_str("SAGEMAKER_ENDPOINT_NAME", "expense-categoriser")
SAGEMAKER_ROLE_ARN = env_str("SAGEMAKER_ROLE_ARN", "")
SAGEMAKER_IMAGE_URI = env_str("SAGEMAKER_IMAGE_URI", "")
SAGEMAKER_INSTANCE_TYPE = env_str("SAGEMAKER_INSTANCE_TYPE", "ml.m5.large")
SAGEMAKER_INSTANCE_COUNT = env_int("SAGEMAKER_INSTANCE_COUNT", 1, minimum=1)
# The s3://bucket/prefix that a deploy uploads artefacts and inference code to when they are not
# on S3 yet. Leave it empty only when ARTEFACT_STORE is an s3:// URI, which the code then uses.
SAGEMAKER_MODEL_DATA_URI = env_str("SAGEMAKER_MODEL_DATA_URI", "")
# Seconds a deploy waits for an endpoint to be InService, and between two status checks.
SAGEMAKER_DEPLOY_TIMEOUT_SECONDS = env_int("SAGEMAKER_DEPLOY_TIMEOUT_SECONDS", 1800, minimum=1)
SAGEMAKER_DEPLOY_POLL_SECONDS = env_float("SAGEMAKER_DEPLOY_POLL_SECONDS", 15.0)
# Seconds to open a connection, for every S3 and SageMaker call. For InvokeEndpoint: seconds to
# wait for the response of one attempt, the attempts per prediction (the first included), and the
# deadline of one prediction over every attempt. Only throttling, 5xx responses and timeouts are
# retried.
SAGEMAKER_CONNECT_TIMEOUT_SECONDS = env_float("SAGEMAKER_CONNECT_TIMEOUT_SECONDS", 1.0, minimum=0.05)
SAGEMAKER_INVOKE_TIMEOUT_SECONDS = env_float("SAGEMAKER_INVOKE_TIMEOUT_SECONDS", 2.0, minimum=0.05)
SAGEMAKER_INVOKE_MAX_ATTEMPTS = env_int("SAGEMAKER_INVOKE_MAX_ATTEMPTS", 3, minimum=1)
SAGEMAKER_INVOKE_DEADLINE_SECONDS = env_float("SAGEMAKER_INVOKE_DEADLINE_SECONDS", 5.0, minimum=0.05)
# S3 and SageMaker control-plane calls (deploys, artefacts): attempts per call, the first
# included, in botocore's standard retry mode.
SAGEMAKER_CONTROL_MAX_ATTEMPTS = env_int("SAGEMAKER_CONTROL_MAX_ATTEMPTS", 5, minimum=1)

# Model lifecycle. A candidate version passes the promotion gate unless its holdout top-1 or
# top-3 accuracy is below the active version's by more than PROMOTION_TOLERANCE (0.01 is one
# percentage point). RETRAIN_SCHEDULE "daily" or "weekly" retrains at 02:00 UTC (weekly on
# Mondays) and deploys the new version only if it passes the gate.
PROMOTION_TOLERANCE = env_float("PROMOTION_TOLERANCE", 0.01)
RETRAIN_SCHEDULE = env_choice("RETRAIN_SCHEDULE", "off", ("off", "daily", "weekly"))

# Prediction.
PREDICTION_MAX_BATCH = env_int("PREDICTION_MAX_BATCH", 1000, minimum=1)
PREDICTION_DEFAULT_TOP_K = 3
PREDICTION_MAX_TOP_K = 20

# Predictions under failure. Each source (the rules query, the lookup store, the model) gets its
# own timeout in milliseconds, cut to what is left of the request's budget. Sources run in a
# bounded pool of threads per process; a source is refused when every thread is busy. A source's
# circuit breaker opens after BREAKER_FAILURE_THRESHOLD consecutive failures within
# BREAKER_WINDOW_SECONDS and skips it for BREAKER_COOLDOWN_SECONDS before one probe call.
PREDICTION_BUDGET_MS = env_int("PREDICTION_BUDGET_MS", 2000, minimum=10)
RULES_TIMEOUT_MS = env_int("RULES_TIMEOUT_MS", 500, minimum=1)
# Each web process keeps a business's override rules and archived categories this long, so a
# prediction does not query them every time. A change takes effect at once in the process that
# made it and within this time in the others. 0 reads them for every prediction.
RULES_CACHE_SECONDS = env_float("RULES_CACHE_SECONDS", 1.0, minimum=0.0)
# Each web process keeps an API token it has looked up this long, so a request does not query
# it every time. A revoked token stops working at once in the process that revoked it and
# within this time in the others. 0 looks the token up on every request.
API_TOKEN_CACHE_SECONDS = env_float("API_TOKEN_CACHE_SECONDS", 1.0, minimum=0.0)
LOOKUP_TIMEOUT_MS = env_int("LOOKUP_TIMEOUT_MS", 1000, minimum=1)
MODEL_TIMEOUT_MS = env_int("MODEL_TIMEOUT_MS", 1500, minimum=1)
# A batch gets this much more time per expense after the first, on the budget and every timeout:
# a batch of 1,000 makes 1,000 lookup reads and one model call over 1,000 rows.
PREDICTION_BATCH_ITEM_MS = env_int("PREDICTION_BATCH_ITEM_MS", 10, minimum=0)
PREDICTION_POOL_SIZE = env_int("PREDICTION_POOL_SIZE", 16, minimum=3)
BREAKER_FAILURE_THRESHOLD = env_int("BREAKER_FAILURE_THRESHOLD", 5, minimum=1)
BREAKER_WINDOW_SECONDS = env_float("BREAKER_WINDOW_SECONDS", 30.0, minimum=0.1)
BREAKER_COOLDOWN_SECONDS = env_float("BREAKER_COOLDOWN_SECONDS", 30.0, minimum=0.1)

LOG_FORMAT = env_choice("LOG_FORMAT", "text", ("text", "json"))
LOG_LEVEL = env_choice("LOG_LEVEL", "INFO", ("DEBUG", "INFO", "WARNING", "ERROR"))
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {
        "text": {
            "()": "config.log_formatting.TextWithFieldsFormatter",
            "fmt": "%(asctime)s %(levelname)s %(name)s %(message)s",
        },
        "json": {
            "()": "pythonjsonlogger.json.JsonFormatter",
            "fmt": "%(asctime)s %(levelname)s %(name)s %(message)s",
        },
    },
    "filters": {
        "skip_not_ready_health_check": {"()": "config.log_formatting.SkipNotReadyHealthCheck"},
        "redact_secrets": {"()": "config.log_formatting.RedactSecrets"},
    },
    "handlers": {
        "console": {"class": "logging.StreamHandler", "formatter": LOG_FORMAT, "filters": ["redact_secrets"]},
    },
    "root": {"handlers": ["console"], "level": LOG_LEVEL},
    "loggers": {
        "django.db.backends": {"level": "WARNING"},
        "django.request": {"filters": ["skip_not_ready_health_check"]},
    },
}

STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "whitenoise.storage.CompressedStaticFilesStorage"},
}
