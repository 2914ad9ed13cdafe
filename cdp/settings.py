"""Settings, all from the environment (django-environ). See .env.example for every variable."""

from __future__ import annotations

from pathlib import Path

import environ
from django.core.exceptions import ImproperlyConfigured

from .envfiles import BASE_DIR, load_env_files

load_env_files()

env = environ.Env()

DEBUG: bool = env.bool("DEBUG", default=False)

_DEV_SECRET = "insecure-development-key-only-used-when-DEBUG-is-true-0123456789"
SECRET_KEY: str = env.str("SECRET_KEY", default=_DEV_SECRET if DEBUG else "")
if not SECRET_KEY:
    raise ImproperlyConfigured(
        "SECRET_KEY is required when DEBUG is false. Set it in the environment "
        "(see .env.example), or set DEBUG=true for local development."
    )

ALLOWED_HOSTS: list[str] = env.list("ALLOWED_HOSTS", default=["localhost", "127.0.0.1", "[::1]"] if DEBUG else [])
if not DEBUG and not ALLOWED_HOSTS:
    raise ImproperlyConfigured("ALLOWED_HOSTS is required when DEBUG is false (see .env.example).")
CSRF_TRUSTED_ORIGINS: list[str] = env.list("CSRF_TRUSTED_ORIGINS", default=[])

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "whitenoise.runserver_nostatic",
    "django.contrib.staticfiles",
    "django.contrib.postgres",
    "corsheaders",
    "rest_framework",
    "drf_spectacular",
    "drf_spectacular_sidecar",  # Swagger UI served from our static files, pinned (no CDN)
    "django_rq",
    "cdp.apps.CdpConfig",
    "profiles.apps.ProfilesConfig",
    "consent.apps.ConsentConfig",
    "segments.apps.SegmentsConfig",
    "recommendations.apps.RecommendationsConfig",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    # the session, Django's user and messages: not made for a request an API key decides (decision 0059)
    "cdp.api.middleware.SessionMiddleware",
    "corsheaders.middleware.CorsMiddleware",
    "django.middleware.common.CommonMiddleware",
    "cdp.api.middleware.HostileUrlMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "cdp.api.middleware.AuthenticationMiddleware",
    "cdp.api.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "cdp.urls"
WSGI_APPLICATION = "cdp.wsgi.application"

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

# --- PostgreSQL only, pooled, with a statement timeout ---------------------------------------
DATABASE_URL: str = env.str("DATABASE_URL", default="postgres://postgres@127.0.0.1:5432/cdp")
_db = env.db_url_config(DATABASE_URL)
if _db["ENGINE"] not in ("django.db.backends.postgresql",):
    raise ImproperlyConfigured(f"DATABASE_URL must point at PostgreSQL, got engine {_db['ENGINE']}.")
DB_STATEMENT_TIMEOUT_MS: int = env.int("DB_STATEMENT_TIMEOUT_MS", default=30_000)
DB_POOL: bool = env.bool("DB_POOL", default=True)
# each process kind names its connections (the Procfile sets cdp-web, cdp-worker…): pg_stat_activity
# then tells whose backend is busy, and benchmarks/ingest.py splits the database's CPU by it
DB_APPLICATION_NAME: str = env.str("DB_APPLICATION_NAME", default="cdp")
_db_options: dict = {
    "options": f"-c statement_timeout={DB_STATEMENT_TIMEOUT_MS}",
    "application_name": _db.get("OPTIONS", {}).get("application_name", DB_APPLICATION_NAME),
}
if DB_POOL:
    _db_options["pool"] = {
        "min_size": env.int("DB_POOL_MIN_SIZE", default=1),
        "max_size": env.int("DB_POOL_MAX_SIZE", default=8),
        "timeout": env.float("DB_POOL_TIMEOUT", default=10.0),
    }
_db["OPTIONS"] = {**_db.get("OPTIONS", {}), **_db_options}
_db["CONN_MAX_AGE"] = 0  # pooling replaces persistent connections
_db["TEST"] = {"NAME": env.str("DATABASE_TEST_NAME", default=f"test_{_db['NAME']}")}
DATABASES = {"default": _db}

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# --- Redis: cache, Celery broker and results, rq ---------------------------------------------
REDIS_URL: str = env.str("REDIS_URL", default="redis://127.0.0.1:6379/0")
CACHES = {
    "default": {
        "BACKEND": "cdp.cache.RedisCache",  # one client per pool, not per call (decision 0053)
        "LOCATION": REDIS_URL,
        "KEY_PREFIX": env.str("CACHE_KEY_PREFIX", default="cdp"),
        "TIMEOUT": 300,
        # a cache call never waits long on a Redis that is gone (throttle and debounce fail open)
        "OPTIONS": {
            "socket_connect_timeout": env.float("REDIS_SOCKET_CONNECT_TIMEOUT", default=0.5),
            "socket_timeout": env.float("REDIS_SOCKET_TIMEOUT", default=2.0),
        },
    }
}

CELERY_BROKER_URL: str = env.str("CELERY_BROKER_URL", default=REDIS_URL)
CELERY_RESULT_BACKEND: str = env.str("CELERY_RESULT_BACKEND", default=REDIS_URL)
CELERY_TASK_TIME_LIMIT: int = env.int("CELERY_TASK_TIME_LIMIT", default=3600)
CELERY_TASK_SOFT_TIME_LIMIT: int = env.int("CELERY_TASK_SOFT_TIME_LIMIT", default=3300)
CELERY_TASK_ALWAYS_EAGER: bool = False
CELERY_BROKER_CONNECTION_TIMEOUT: float = env.float("CELERY_BROKER_CONNECTION_TIMEOUT", default=2.0)
# cdp.queueing: seconds a web request may spend handing a task to the broker, and how long sends
# fail fast after the broker did not answer (the durable PendingWork mark covers what was not sent)
CDP_QUEUE_TIMEOUT_SECONDS: float = env.float("CDP_QUEUE_TIMEOUT_SECONDS", default=0.5)
CDP_QUEUE_BACKOFF_SECONDS: float = env.float("CDP_QUEUE_BACKOFF_SECONDS", default=5.0)

# One lifecycle for every long run (cdp/lifecycle.py, decision 0026): a running job renews its lease
# every HEARTBEAT seconds; a lease not renewed for LEASE seconds means the worker died, and the sweep
# (every minute) requeues the run, or fails it after MAX_ATTEMPTS.
CDP_JOB_LEASE_SECONDS: float = env.float("CDP_JOB_LEASE_SECONDS", default=120.0)
CDP_JOB_HEARTBEAT_SECONDS: float = env.float("CDP_JOB_HEARTBEAT_SECONDS", default=20.0)
CDP_JOB_MAX_ATTEMPTS: int = env.int("CDP_JOB_MAX_ATTEMPTS", default=3)

# The intake log (profiles/tracking/intake.py, decision 0039): the tracking API writes calls there;
# stitch workers (Celery queue ``intake``) move them into the events table in batches of BATCH calls,
# by PARTITIONS partitions (at most that many workers stitch at once). A batch's partition lock is
# its lease: PostgreSQL ends a stuck batch's transaction after LEASE seconds and another worker takes
# it over. Each wake queues WORKERS tasks.
CDP_INTAKE_PARTITIONS: int = env.int("CDP_INTAKE_PARTITIONS", default=16)
CDP_INTAKE_BATCH: int = env.int("CDP_INTAKE_BATCH", default=2000)
CDP_INTAKE_LEASE_SECONDS: float = env.float("CDP_INTAKE_LEASE_SECONDS", default=60.0)
CDP_INTAKE_WORKERS: int = env.int("CDP_INTAKE_WORKERS", default=2)
# a stitch task that found calls keeps watching the log this long after the last ones, looking
# again every pause (batches fill meanwhile); the pause bounds the lag it adds
CDP_INTAKE_LINGER_SECONDS: float = env.float("CDP_INTAKE_LINGER_SECONDS", default=5.0)
CDP_INTAKE_PAUSE_SECONDS: float = env.float("CDP_INTAKE_PAUSE_SECONDS", default=0.5)
# /readyz reports the intake as "lagging" when its oldest call waited longer than this
CDP_INTAKE_LAG_WARN_SECONDS: float = env.float("CDP_INTAKE_LAG_WARN_SECONDS", default=10.0)

RQ_DEFAULT_TIMEOUT: int = env.int("RQ_DEFAULT_TIMEOUT", default=3600)
RQ_QUEUES = {name: {"URL": REDIS_URL, "DEFAULT_TIMEOUT": RQ_DEFAULT_TIMEOUT} for name in ("default", "privacy")}
RQ_SHOW_ADMIN_LINK = True

# --- DRF and the API -------------------------------------------------------------------------
API_THROTTLE_WRITE_KEY: str = env.str("API_THROTTLE_WRITE_KEY", default="2000/s")
API_THROTTLE_SECRET_KEY: str = env.str("API_THROTTLE_SECRET_KEY", default="2000/s")
# Seconds a key look-up is cached per process: a revoked key stops working within this time.
API_KEY_CACHE_SECONDS: int = env.int("API_KEY_CACHE_SECONDS", default=10)

REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "cdp.api.authentication.ApiKeyAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["cdp.api.permissions.IsSecretKeyOrStaff"],
    "DEFAULT_THROTTLE_CLASSES": ["cdp.api.throttling.ApiKeyRateThrottle"],
    "DEFAULT_THROTTLE_RATES": {
        "write_key": API_THROTTLE_WRITE_KEY,
        "secret_key": API_THROTTLE_SECRET_KEY,
    },
    "DEFAULT_RENDERER_CLASSES": ["cdp.api.renderers.JSONRenderer"]  # orjson, same document (decision 0059)
    + (["rest_framework.renderers.BrowsableAPIRenderer"] if DEBUG else []),
    "DEFAULT_PARSER_CLASSES": ["cdp.api.jsonbody.StrictJSONParser"],
    "DEFAULT_SCHEMA_CLASS": "cdp.api.schema.CdpAutoSchema",
    "EXCEPTION_HANDLER": "cdp.api.errors.exception_handler",
    "DEFAULT_METADATA_CLASS": "cdp.api.metadata.ApiMetadata",
    "UNAUTHENTICATED_USER": None,
}

SPECTACULAR_SETTINGS = {
    "TITLE": "cdp API",
    "DESCRIPTION": (
        "Customer data platform for online shops. Tracking endpoints (/v1/*) take a source's "
        "write key; read and admin endpoints (/api/v1/*) take a secret key."
    ),
    "VERSION": "1.0.0",
    "SERVE_INCLUDE_SCHEMA": False,
    "COMPONENT_SPLIT_REQUEST": True,
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    # one component for a choice set used by several fields (primary and guardrail metrics)
    "ENUM_NAME_OVERRIDES": {"ExperimentMetricEnum": "recommendations.experiments.models.Metric"},
}

# --- Storefront: CORS per source (cdp/api/cors.py, docs/storefront.md) ------------------------
# Only the endpoints shop pages call; the secret-key API (/api/) never answers cross-origin.
CORS_URLS_REGEX = r"^/(v1/|beacon/v1/|sourceConfig/?$|analytics\.js/|analytics-next/)"
CORS_ALLOW_METHODS = ["GET", "POST", "OPTIONS"]
# Every header Analytics.js 2.0 and RudderStack's SDK send, retry headers included.
CORS_ALLOW_HEADERS = [
    "accept",
    "authorization",
    "content-type",
    "content-encoding",
    "x-retry-count",  # Analytics.js
    "anonymousid",  # RudderStack
    "sentat",
    "rsa-recovered",
    "rsa-retry-attempt",
    "rsa-since-last-attempt",
    "rsa-since-first-attempt",
    "rsa-retry-reason",
]
CORS_EXPOSE_HEADERS = ["Retry-After"]
CORS_ALLOW_CREDENTIALS = False
CORS_PREFLIGHT_MAX_AGE: int = env.int("CORS_PREFLIGHT_MAX_AGE", default=86_400)
# Browser recommendations (/v1/recommendations): per source and client address.
RECS_BROWSER_THROTTLE: str = env.str("RECS_BROWSER_THROTTLE", default="120/min")

# --- i18n, static ------------------------------------------------------------------------------
LANGUAGE_CODE = "en-us"
TIME_ZONE = env.str("TIME_ZONE", default="UTC")
USE_I18N = True
USE_TZ = True
STATIC_URL = "static/"
STATIC_ROOT = Path(env.str("STATIC_ROOT", default=str(BASE_DIR / "staticfiles")))
# The browser SDKs shops use, pinned in package.json/package-lock.json and installed by `npm ci`
# (the Makefile does it): served from here, never from a CDN (docs/storefront.md).
NODE_MODULES = BASE_DIR / "node_modules"
STOREFRONT_SDK_DIRS = {
    "analytics-next": NODE_MODULES / "@segment" / "analytics-next" / "dist" / "umd",
    "rudderstack": NODE_MODULES / "@rudderstack" / "analytics-js" / "dist" / "npm" / "modern" / "bundled" / "umd",
}
STATICFILES_DIRS = [(f"storefront/vendor/{name}", path) for name, path in STOREFRONT_SDK_DIRS.items() if path.is_dir()]
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {
        "BACKEND": "whitenoise.storage.CompressedManifestStaticFilesStorage"
        if not DEBUG
        else "django.contrib.staticfiles.storage.StaticFilesStorage"
    },
}
MEDIA_ROOT = Path(env.str("MEDIA_ROOT", default=str(BASE_DIR / "media")))

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]

# --- Security (production defaults; relaxed only when DEBUG) ------------------------------------
SECURE_SSL_REDIRECT: bool = env.bool("SECURE_SSL_REDIRECT", default=not DEBUG)
SECURE_REDIRECT_EXEMPT = [r"^healthz$", r"^readyz$"]
SECURE_HSTS_SECONDS: int = env.int("SECURE_HSTS_SECONDS", default=0 if DEBUG else 31_536_000)
SECURE_HSTS_INCLUDE_SUBDOMAINS: bool = env.bool("SECURE_HSTS_INCLUDE_SUBDOMAINS", default=not DEBUG)
SECURE_HSTS_PRELOAD: bool = env.bool("SECURE_HSTS_PRELOAD", default=not DEBUG)
SESSION_COOKIE_SECURE: bool = env.bool("SESSION_COOKIE_SECURE", default=not DEBUG)
CSRF_COOKIE_SECURE: bool = env.bool("CSRF_COOKIE_SECURE", default=not DEBUG)
if env.bool("USE_X_FORWARDED_PROTO", default=False):
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
X_FRAME_OPTIONS = "DENY"

LOG_LEVEL: str = env.str("LOG_LEVEL", default="INFO")
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s: %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "root": {"handlers": ["console"], "level": LOG_LEVEL},
    "loggers": {"django.db.backends": {"level": "INFO"}},
}

# Admin user that `make demo` creates (password generated and printed at start).
DEMO_ADMIN_USERNAME: str = env.str("DEMO_ADMIN_USERNAME", default="admin")

# --- Profiles: identifiers and deterministic identity (see docs/identity.md) ---------------------
# Identifier kinds beyond the built-in email, phone, user_id and anonymous_id; each is read from the
# trait of the same name (e.g. traits.loyalty_id).
CDP_EXTRA_IDENTIFIER_KINDS: list[str] = env.list("CDP_EXTRA_IDENTIFIER_KINDS", default=["loyalty_id"])
# Which identifier decides the profile when an event's identifiers point at several (first wins).
CDP_IDENTIFIER_PRIORITY: list[str] = ["user_id", "email", "phone", *CDP_EXTRA_IDENTIFIER_KINDS, "anonymous_id"]
# Links through these kinds are always taken; other kinds (email, phone) only without contradiction.
CDP_TRUSTED_IDENTIFIER_KINDS: list[str] = env.list(
    "CDP_TRUSTED_IDENTIFIER_KINDS", default=["user_id", "anonymous_id", *CDP_EXTRA_IDENTIFIER_KINDS]
)
# Traits that, when both profiles have different values, contradict an email/phone link.
CDP_CONTRADICTION_TRAITS: list[str] = env.list("CDP_CONTRADICTION_TRAITS", default=["first_name", "birthday"])
# Merge guard: most identifiers of a kind one profile may hold (Segment Unify's defaults).
CDP_IDENTIFIER_LIMITS: dict[str, int] = {
    "user_id": env.int("CDP_LIMIT_USER_ID", default=1),
    "email": env.int("CDP_LIMIT_EMAIL", default=5),
    "phone": env.int("CDP_LIMIT_PHONE", default=5),
    "anonymous_id": env.int("CDP_LIMIT_ANONYMOUS_ID", default=100),
}
CDP_IDENTIFIER_LIMIT_DEFAULT: int = env.int("CDP_LIMIT_OTHER", default=5)
# Values that never identify anyone (compared after normalisation, case-insensitive).
CDP_IDENTIFIER_BLOCKLIST: list[str] = env.list(
    "CDP_IDENTIFIER_BLOCKLIST",
    default=[
        "null",
        "undefined",
        "none",
        "nil",
        "nan",
        "0",
        "-1",
        "n/a",
        "na",
        "unknown",
        "anonymous",
        "true",
        "false",
        "[object object]",
        "test",
        "test@test.com",
        "test@example.com",
        "email@example.com",
        "noemail@noemail.com",
        "no@email.com",
        "user@example.com",
    ],
)
# Email normalisation per provider: dots and/or +tags that the provider ignores.
CDP_EMAIL_PROVIDER_RULES: dict[str, dict] = {
    "gmail.com": {"strip_dots": True, "strip_plus": True},
    "googlemail.com": {"strip_dots": True, "strip_plus": True, "domain": "gmail.com"},
    "outlook.com": {"strip_plus": True},
    "hotmail.com": {"strip_plus": True},
    "icloud.com": {"strip_plus": True},
    "fastmail.com": {"strip_plus": True},
}
CDP_PHONE_DEFAULT_REGION: str = env.str("CDP_PHONE_DEFAULT_REGION", default="GB")
# Fuzzy matching (docs/identity.md): match probability above which pairs merge automatically, and
# above which they go to the review queue. Calibrated probabilities, not per-data-set scores.
CDP_FUZZY_AUTO_MERGE_PROBABILITY: float = env.float("CDP_FUZZY_AUTO_MERGE_PROBABILITY", default=0.99)
CDP_FUZZY_REVIEW_PROBABILITY: float = env.float("CDP_FUZZY_REVIEW_PROBABILITY", default=0.5)
# the share of a run's records whose profiles the review queue may put in front of people (issue 17)
CDP_REVIEW_QUEUE_MAX_SHARE: float = env.float("CDP_REVIEW_QUEUE_MAX_SHARE", default=0.02)

# --- consent: purposes, ledger, privacy requests, privacy center (docs/privacy.md) ---
# How long a consent answer holds before the purpose's default applies again (13 months).
CONSENT_VALIDITY_DAYS: int = env.int("CONSENT_VALIDITY_DAYS", default=395)
# Salt of the hashed IPs in the ledger's evidence and of the suppression list's identifier hashes.
# Its own secret, required in production: were it SECRET_KEY, a routine key rotation would void
# every suppression entry and bring erased people back (rotation: docs/privacy.md).
CONSENT_HASH_SALT: str = env.str("CONSENT_HASH_SALT", default=_DEV_SECRET if DEBUG else "")
# Rotation: the new salt goes in CONSENT_HASH_SALT, the old ones here (comma-separated, newest first);
# suppression entries are looked up under every salt, new ones are written under the current one.
CONSENT_HASH_SALT_PREVIOUS: list[str] = env.list("CONSENT_HASH_SALT_PREVIOUS", default=[])
if not CONSENT_HASH_SALT:
    raise ImproperlyConfigured(
        "CONSENT_HASH_SALT is required when DEBUG is false. Set it in the environment (see .env.example); "
        "never change it without docs/privacy.md's rotation steps (suppression entries depend on it)."
    )
# Events of a person who denied analytics: "strict" drops them all (default), "essential" keeps only
# CONSENT_ESSENTIAL_EVENTS (orders: contract), "off" keeps everything (not enforced).
CONSENT_ANALYTICS_DENIAL: str = env.str("CONSENT_ANALYTICS_DENIAL", default="strict")
CONSENT_ESSENTIAL_EVENTS: list[str] = env.list("CONSENT_ESSENTIAL_EVENTS", default=["Order Completed"])
# Extra Segment consent category names -> purposes (JSON), beside the built-in ones (docs/privacy.md).
CONSENT_CATEGORY_MAP: dict = env.json("CONSENT_CATEGORY_MAP", default={})
PRIVACY_REQUEST_DAYS: int = env.int("PRIVACY_REQUEST_DAYS", default=30)
PRIVACY_EXPORT_LINK_HOURS: int = env.int("PRIVACY_EXPORT_LINK_HOURS", default=72)
PRIVACY_CENTER_LINK_MINUTES: int = env.int("PRIVACY_CENTER_LINK_MINUTES", default=30)
PRIVACY_CENTER_SHOP_NAME: str = env.str("PRIVACY_CENTER_SHOP_NAME", default="Our shop")
PRIVACY_CENTER_PRIMARY_COLOR: str = env.str("PRIVACY_CENTER_PRIMARY_COLOR", default="#2f5d62")
PRIVACY_CENTER_ACCENT_COLOR: str = env.str("PRIVACY_CENTER_ACCENT_COLOR", default="#f4a261")
PRIVACY_CENTER_FROM_EMAIL: str = env.str("PRIVACY_CENTER_FROM_EMAIL", default="privacy@localhost")
# E-mail (the privacy center's verification links): console in development, SMTP from EMAIL_URL otherwise.
EMAIL_CONFIG = env.email_url("EMAIL_URL", default="consolemail://" if DEBUG else "smtp://localhost:25")
vars().update(EMAIL_CONFIG)

# --- recommendations: catalog, model refresh, serving (docs/recommendations.md) ---
# Categories (top level) where buying the same item again is normal; in every other category an item
# bought in the last RECS_RECENT_PURCHASE_DAYS is not recommended again.
RECS_REPEAT_CATEGORIES: list[str] = env.list(
    "RECS_REPEAT_CATEGORIES", default=["beauty", "grocery", "food", "household", "pet supplies"]
)
RECS_RECENT_PURCHASE_DAYS: int = env.int("RECS_RECENT_PURCHASE_DAYS", default=90)
RECS_MAX_PER_CATEGORY: int = env.int("RECS_MAX_PER_CATEGORY", default=3)  # diversity cap per list
RECS_DEFAULT_K: int = env.int("RECS_DEFAULT_K", default=10)
RECS_BOOST_FACTOR: float = env.float("RECS_BOOST_FACTOR", default=1.5)  # ?boost_categories=
RECS_SESSION_MINUTES: int = env.int("RECS_SESSION_MINUTES", default=30)  # a gap longer ends a session
# The refresh: temporal holdout length, metric that decides promotion, training parameters (JSON).
RECS_HOLDOUT_DAYS: int = env.int("RECS_HOLDOUT_DAYS", default=14)
# the refresh trains on the last this many days of interactions (before the latest one); 0: all of them
RECS_TRAIN_WINDOW_DAYS: int = env.int("RECS_TRAIN_WINDOW_DAYS", default=730)
RECS_PRIMARY_METRIC: str = env.str("RECS_PRIMARY_METRIC", default="ndcg@10")
RECS_TRAIN_PARAMS: dict = env.json("RECS_TRAIN_PARAMS", default={})
RECS_REFRESH_HOUR: int = env.int("RECS_REFRESH_HOUR", default=3)  # nightly refresh (UTC)
# After a promotion, retrain the same recipe on all data (holdout included) and republish it.
RECS_RETRAIN_ON_ALL_DATA: bool = env.bool("RECS_RETRAIN_ON_ALL_DATA", default=True)
# Serve a known shopper's home list from the head of her ranking the refresh kept with the model
# (decision 0058); false: always rank live (the answers are the same, only slower).
RECS_RANKED_HEADS: bool = env.bool("RECS_RANKED_HEADS", default=True)
# Serving processes check the active model version in Redis at most this often (seconds).
RECS_VERSION_CHECK_SECONDS: float = env.float("RECS_VERSION_CHECK_SECONDS", default=1.0)
# Write the served log from a per-process background thread (every 50 ms) instead of in the request.
RECS_SERVED_LOG_ASYNC: bool = env.bool("RECS_SERVED_LOG_ASYNC", default=True)
# Local directory where web processes keep the stored models as files they memory-map (shared pages).
RECS_MODEL_CACHE_DIR: str = env.str("RECS_MODEL_CACHE_DIR", default=str(BASE_DIR / ".cdp" / "recs-models"))
