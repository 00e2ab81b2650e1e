"""A cache of database rows kept for a few seconds in one process, emptied at once by a change."""

import threading
from collections.abc import Hashable, Iterable


class ProcessCache:
    """Values that expire, keyed by id, shared by the threads of one process.

    clear() empties the cache and starts a new generation. A reader notes the generation with its
    lookup and put() stores values only if no clear() ran since, so rows read before a change
    are not put back after it. Thread-safe.
    """

    def __init__(self):
        self.lock = threading.Lock()
        self.generation = 0
        self.entries: dict[Hashable, tuple[float, object]] = {}

    def lookup(self, keys: Iterable[Hashable], *, now: float) -> tuple[int, dict[Hashable, object]]:
        """Return the current generation and the values of the keys that have not expired by now."""
        with self.lock:
            found = {key: self.entries.get(key) for key in keys}
            generation = self.generation
        return generation, {key: entry[1] for key, entry in found.items() if entry is not None and entry[0] > now}

    def put(self, values: dict[Hashable, object], *, expires_at: float, generation: int, max_entries: int) -> None:
        """Store values until expires_at unless the cache was cleared since `generation`.

        Past max_entries the cache starts again empty.
        """
        with self.lock:
            if self.generation != generation:
                return
            if len(self.entries) + len(values) > max_entries:
                self.entries.clear()
            self.entries.update((key, (expires_at, value)) for key, value in values.items())

    def clear(self) -> None:
        """Empty the cache and start a new generation."""
        with self.lock:
            self.generation += 1
            self.entries.clear()
