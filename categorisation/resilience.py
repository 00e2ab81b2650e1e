"""Timeouts and circuit breakers for the prediction sources.

Each source call runs in a small process-wide thread pool so the request thread can stop waiting
for it. A call that times out is abandoned, not killed: its thread runs on until the call returns,
so the pool is bounded and a source is refused at once when every thread is busy.

NOTE: a small class rather than pybreaker, because the breaker here counts failures within a
window and takes an injectable clock, which pybreaker does not offer.
"""

import logging
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass, field
from functools import lru_cache

from django.conf import settings
from django.db import DatabaseError, close_old_connections, connection

from lookup.stores.base import LookupStoreError
from mlops.predictors import PredictorUnavailable

logger = logging.getLogger(__name__)

# What a source raises when its backend is down or rejects the call: logged as one line. Anything
# else is a bug and is logged with its traceback. Either way the other sources still respond.
EXPECTED_SOURCE_ERRORS = (LookupStoreError, PredictorUnavailable, DatabaseError)


class SourceFailed(Exception):
    """A source timed out, raised, was refused by its breaker, or found the pool full."""


class CircuitBreaker:
    """Stops calling a source after `threshold` consecutive failures within `window` seconds.

    While open, allow() is False for `cooldown` seconds; then one probe call is let through
    (half-open). Its success closes the breaker; its failure opens it for another cool-down.
    Thread-safe. `clock` returns seconds and is injectable for tests.
    """

    def __init__(self, *, threshold: int, window: float, cooldown: float, clock: Callable[[], float] = time.monotonic):
        self.threshold = threshold
        self.window = window
        self.cooldown = cooldown
        self._clock = clock
        self._lock = threading.Lock()
        self._failures = 0
        self._first_failure_at = 0.0
        self._opened_at: float | None = None
        self._probing = False

    @property
    def state(self) -> str:
        with self._lock:
            if self._opened_at is None:
                return "closed"
            if self._probing or self._clock() - self._opened_at >= self.cooldown:
                return "half-open"
            return "open"

    def allow(self) -> bool:
        """Return True if a call may go ahead; in half-open state, only one probe at a time."""
        with self._lock:
            if self._opened_at is None:
                return True
            if self._probing or self._clock() - self._opened_at < self.cooldown:
                return False
            self._probing = True
            return True

    def record_success(self) -> None:
        with self._lock:
            self._failures, self._opened_at, self._probing = 0, None, False

    def record_failure(self) -> None:
        with self._lock:
            now = self._clock()
            if self._opened_at is not None:
                # A failed probe, or a call that started before the breaker opened.
                self._opened_at, self._probing = now, False
                return
            if self._failures == 0 or now - self._first_failure_at > self.window:
                self._failures, self._first_failure_at = 0, now
            self._failures += 1
            if self._failures >= self.threshold:
                self._opened_at = now
                logger.warning("Circuit breaker opened after %s failures", self._failures)


@dataclass
class SourcePool:
    """A bounded thread pool that refuses work instead of queueing it."""

    size: int
    _executor: ThreadPoolExecutor = field(init=False)
    _slots: threading.BoundedSemaphore = field(init=False)

    def __post_init__(self):
        self._executor = ThreadPoolExecutor(max_workers=self.size, thread_name_prefix="prediction-source")
        self._slots = threading.BoundedSemaphore(self.size)

    def submit(self, function: Callable[[], object]) -> Future:
        if not self._slots.acquire(blocking=False):
            raise SourceFailed("the prediction source pool is full")
        try:
            future = self._executor.submit(_with_connection_upkeep, function)
        except RuntimeError:
            self._slots.release()
            raise
        # The slot is freed when the call really ends, not when the caller stops waiting.
        future.add_done_callback(lambda _: self._slots.release())
        return future


def _with_connection_upkeep(function: Callable[[], object]) -> object:
    # Django opens one connection per thread. As around a request, a call closes its thread's
    # connection when it is broken or older than CONN_MAX_AGE (at once with CONN_MAX_AGE 0), so a
    # PostgreSQL connection is reused and each pool thread keeps at most one open.
    close_old_connections()
    try:
        return function()
    finally:
        close_old_connections()


@lru_cache(maxsize=1)
def get_pool() -> SourcePool:
    return SourcePool(size=settings.PREDICTION_POOL_SIZE)


_breakers: dict[str, CircuitBreaker] = {}
_breakers_lock = threading.Lock()


def get_breaker(source: str) -> CircuitBreaker:
    """Return the process-wide breaker of a source, built from settings on first use."""
    with _breakers_lock:
        if source not in _breakers:
            _breakers[source] = CircuitBreaker(
                threshold=settings.BREAKER_FAILURE_THRESHOLD,
                window=settings.BREAKER_WINDOW_SECONDS,
                cooldown=settings.BREAKER_COOLDOWN_SECONDS,
            )
        return _breakers[source]


def reset_breakers() -> None:
    with _breakers_lock:
        _breakers.clear()


def call_sources(
    calls: dict[str, Callable[[], object]], *, timeouts: dict[str, float], budget: float
) -> tuple[dict[str, object], list[str]]:
    """Run each source concurrently within its timeout (seconds) and the shared budget.

    Returns the results of the sources that answered and the names of those that did not. The
    callables raise to report a failure; every failure is logged and counted by the breaker.
    Inside a database transaction the calls run inline without timeouts or breakers, because
    another thread's connection cannot see the transaction's uncommitted rows.
    """
    if connection.in_atomic_block:
        return _call_inline(calls)

    deadline = time.monotonic() + budget
    futures, failed = {}, []
    for name, function in calls.items():
        if not get_breaker(name).allow():
            logger.warning("Skipping prediction source %s: its circuit breaker is open", name)
            failed.append(name)
            continue
        try:
            futures[name] = get_pool().submit(function)
        except SourceFailed as exc:
            logger.warning("Skipping prediction source %s: %s", name, exc)
            failed.append(name)

    results = {}
    for name, future in futures.items():
        wait = max(0.0, min(timeouts[name], deadline - time.monotonic()))
        try:
            results[name] = future.result(timeout=wait)
        except FutureTimeout:
            logger.warning("Prediction source %s timed out after %.3f s; continuing without it", name, wait)
            get_breaker(name).record_failure()
            failed.append(name)
        except Exception as exc:
            # Deliberately broad: whatever one source raises, even a bug, the answer comes from
            # the others.
            _log_failure(name, exc)
            get_breaker(name).record_failure()
            failed.append(name)
        else:
            get_breaker(name).record_success()
    return results, failed


def _call_inline(calls: dict[str, Callable[[], object]]) -> tuple[dict[str, object], list[str]]:
    results, failed = {}, []
    for name, function in calls.items():
        try:
            results[name] = function()
        except Exception as exc:
            _log_failure(name, exc)
            failed.append(name)
    return results, failed


def _log_failure(name: str, exc: Exception) -> None:
    if isinstance(exc, EXPECTED_SOURCE_ERRORS):
        logger.warning("Prediction source %s failed (%s: %s); continuing without it", name, type(exc).__name__, exc)
    else:
        logger.error("Prediction source %s raised unexpectedly; continuing without it", name, exc_info=exc)
