"""Per-client rate limits of the API, counted in Django's default cache.

A view opts in with a `throttle_scope`, and REST_FRAMEWORK["DEFAULT_THROTTLE_RATES"] gives each
scope its rate ("6000/min"). Requests are counted per API client, across all of its tokens, so
a rotation does not double a client's allowance.

The count is a sliding-window estimate from two fixed-window counters (the current and previous
window), as in Cloudflare's rate limiter: two small integers per client and scope, updated with
an atomic increment. DRF's SimpleRateThrottle stores the timestamp of every request in the
window instead, which at thousands of requests a minute means reading and writing a list of
thousands of floats per request. The estimate assumes the previous window's requests were
spread evenly, so a client can briefly exceed the rate by a little after a burst.

With the default local-memory cache every process counts on its own, so a client's effective
limit is the rate times the number of web processes. Set CACHE_URL to a Redis server to share
the counts. If the cache cannot be reached, requests are let through and a warning is logged:
an unreachable cache must not make the API fail.
"""

import logging
import time

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from rest_framework import exceptions
from rest_framework.settings import api_settings
from rest_framework.throttling import SimpleRateThrottle

logger = logging.getLogger(__name__)


def cache_errors() -> tuple[type[Exception], ...]:
    """Return the exceptions of the cache backend when its server is unreachable or times out.

    They are redis-py's errors with RedisCache and OSError for a socket failure that redis-py does
    not wrap. redis-py is imported only when it is the backend, because it adds 4.8 MB to a web
    worker. An except clause calls this only when an exception is raised.
    """
    if settings.CACHES["default"]["BACKEND"].endswith(".RedisCache"):
        from redis.exceptions import RedisError

        return (RedisError, OSError)
    return (OSError,)


# After a cache failure, requests skip the cache (and go through unthrottled) for this long, so
# an unreachable server costs one failed call and one warning per process per interval.
CACHE_RETRY_SECONDS = 10.0

_UNITS = {1: "second", 60: "minute", 3600: "hour", 86400: "day"}


class ClientRateThrottle(SimpleRateThrottle):
    """Limit each API client's requests to the rate of the view's throttle_scope.

    A view without throttle_scope is not limited. An unauthenticated request is counted by its
    address. A rejected request raises Throttled (a JSON 429 with Retry-After) and is not counted.
    """

    cache_key_format = "throttle:{scope}:{ident}:{window}"
    _cache_down_until = 0.0

    def __init__(self):
        # The scope, and so the rate, is known only once the view is; see allow_request().
        pass

    def allow_request(self, request, view):
        self.scope = getattr(view, "throttle_scope", None)
        if not self.scope:
            return True
        self.rate = self.get_rate()
        self.num_requests, self.duration = self.parse_rate(self.rate)
        if self.num_requests is None:
            return True

        now = self.timer()
        if time.monotonic() < ClientRateThrottle._cache_down_until:
            return True
        try:
            previous, current = self._count_request(request, now)
        except cache_errors() as exc:
            self._fail_open(exc)
            return True

        elapsed = now % self.duration
        estimate = previous * (1 - elapsed / self.duration) + current
        if estimate <= self.num_requests:
            return True
        self._uncount_request(request, now)
        # At least one second, because DRF leaves out Retry-After for a wait that rounds to 0.
        wait = max(self._wait(previous, current - 1, elapsed), 1.0)
        raise exceptions.Throttled(wait=wait, detail=self._detail())

    def get_rate(self):
        # SimpleRateThrottle.THROTTLE_RATES is read once at import; reading the settings on each
        # request keeps override_settings and a settings reload effective.
        rates = api_settings.DEFAULT_THROTTLE_RATES
        if self.scope not in rates:
            raise ImproperlyConfigured(
                f"No rate for throttle scope {self.scope!r}; add it to REST_FRAMEWORK['DEFAULT_THROTTLE_RATES']."
            )
        return rates[self.scope]

    def get_cache_key(self, request, view):
        # SimpleRateThrottle declares it; this class's allow_request() calls _keys() directly.
        return self._keys(request, self.timer())[1]

    def _keys(self, request, now):
        user = request.user
        ident = f"client-{user.pk}" if user is not None and user.is_authenticated else self.get_ident(request)
        window = int(now // self.duration)
        return (
            self.cache_key_format.format(scope=self.scope, ident=ident, window=window - 1),
            self.cache_key_format.format(scope=self.scope, ident=ident, window=window),
        )

    def _count_request(self, request, now) -> tuple[int, int]:
        """Add this request to the current window; return the previous and current windows' counts."""
        previous_key, current_key = self._keys(request, now)
        previous = self.cache.get(previous_key, 0)
        try:
            current = self.cache.incr(current_key)
        except ValueError:
            # The first request of the window. The key outlives its window by one more, while it
            # is the "previous" window. add() fails when another process created it meanwhile.
            if self.cache.add(current_key, 1, timeout=2 * self.duration + 1):
                return previous, 1
            current = self.cache.incr(current_key)
        return previous, current

    def _uncount_request(self, request, now):
        try:
            self.cache.decr(self._keys(request, now)[1])
        except (ValueError, *cache_errors()):
            # The request is still rejected; the client's count is one too high for one window.
            pass

    def _wait(self, previous: int, earlier: int, elapsed: float) -> float:
        """Return the seconds until one more request fits, with `earlier` requests already in this window."""
        limit, duration = self.num_requests, self.duration
        # Within this window the previous window's weight falls as time passes.
        if earlier + 1 <= limit and previous > 0:
            return max(duration * (1 - (limit - earlier - 1) / previous) - elapsed, 0.0)
        # Otherwise wait for the next window, in which this window's count decays in turn.
        next_window_wait = duration * (1 - (limit - 1) / earlier) if earlier > limit - 1 else 0.0
        return duration - elapsed + max(next_window_wait, 0.0)

    def _detail(self) -> str:
        unit = _UNITS.get(self.duration, f"{self.duration} seconds")
        return f"Rate limit exceeded: {self.num_requests} {self.scope} requests per {unit} for each API client."

    def _fail_open(self, exc):
        ClientRateThrottle._cache_down_until = time.monotonic() + CACHE_RETRY_SECONDS
        logger.warning(
            "Rate limit cache unreachable; requests are not rate limited for the next %s seconds",
            CACHE_RETRY_SECONDS,
            extra={"scope": self.scope, "error": repr(exc)},
        )
