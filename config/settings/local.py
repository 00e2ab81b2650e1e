"""Settings for `make run` and development: the base defaults with debugging on."""

from config.env import env_bool
from config.settings.base import *  # noqa: F403 (settings modules extend the base namespace)

DEBUG = env_bool("DJANGO_DEBUG", True)
