"""Settings for the test suite: tasks run eagerly and artefacts go to a scratch folder."""

import os
import tempfile
from pathlib import Path

from config.settings.base import *  # noqa: F403 (settings modules extend the base namespace)

CELERY_TASK_ALWAYS_EAGER = True
CELERY_BROKER_URL = "memory://"
CELERY_BROKER_TRANSPORT_OPTIONS = {}
PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
ARTEFACT_STORE = os.environ.get("ARTEFACT_STORE") or tempfile.mkdtemp(prefix="test-artefacts-")
VAR_DIR = Path(tempfile.mkdtemp(prefix="test-var-"))
ACTIVE_MODEL_CHECK_SECONDS = 0.0
# The suite loads models hundreds of times in one process; tests of the freeze turn it on.
MODEL_GC_FREEZE = False
STATIC_ROOT = VAR_DIR / "static"
STATIC_ROOT.mkdir(parents=True, exist_ok=True)

if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":  # noqa: F405
    # pytest-django's SQLite test database is in memory with a shared cache, where a reader's
    # table lock makes a concurrent writer fail at once ("database table is locked") instead of
    # waiting. Reading uncommitted rows takes no such lock, so a test may serve predictions from
    # one thread while another activates a model version.
    DATABASES["default"]["OPTIONS"]["init_command"] += " PRAGMA read_uncommitted = true;"  # noqa: F405
