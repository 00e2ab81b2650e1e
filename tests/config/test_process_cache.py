"""ProcessCache: expiry, the generation guard and the size bound."""

from config.process_cache import ProcessCache


def test_lookup_returns_unexpired_values():
    cache = ProcessCache()
    generation, _ = cache.lookup(["a"], now=0.0)
    cache.put({"a": 1, "b": 2}, expires_at=10.0, generation=generation, max_entries=10)

    assert cache.lookup(["a", "b", "c"], now=9.9)[1] == {"a": 1, "b": 2}
    assert cache.lookup(["a"], now=10.0)[1] == {}


def test_put_after_clear_is_dropped():
    cache = ProcessCache()
    generation, _ = cache.lookup(["a"], now=0.0)

    cache.clear()
    cache.put({"a": 1}, expires_at=10.0, generation=generation, max_entries=10)

    assert cache.lookup(["a"], now=1.0)[1] == {}
    assert cache.entries == {}


def test_put_past_max_entries_starts_empty():
    cache = ProcessCache()
    generation, _ = cache.lookup([], now=0.0)
    cache.put({"a": 1, "b": 2}, expires_at=10.0, generation=generation, max_entries=3)

    cache.put({"c": 3, "d": 4}, expires_at=10.0, generation=generation, max_entries=3)

    assert set(cache.entries) == {"c", "d"}
