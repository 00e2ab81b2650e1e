"""Settings for `make run` and development: the base defaults.

Debugging stays off unless DJANGO_DEBUG=true, so API clients get the JSON error pages (a debug
404 page is HTML and lists every URL).
"""

from config.settings.base import *  # noqa: F403 (settings modules extend the base namespace)
