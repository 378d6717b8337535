"""QueryCache: the LRU in front of query embedding."""

from __future__ import annotations

from service.backends.embedder import QueryCache, entry_bytes


def test_miss_then_hit() -> None:
    cache = QueryCache(2)
    assert cache.get("q") is None
    cache.put("q", [0.5, 0.25])
    assert cache.get("q") == [0.5, 0.25]


def test_least_recently_used_is_evicted() -> None:
    cache = QueryCache(2)
    cache.put("a", [1.0])
    cache.put("b", [2.0])
    assert cache.get("a") == [1.0]  # "b" is now the least recently used
    cache.put("c", [3.0])
    assert cache.get("b") is None
    assert cache.get("a") == [1.0]
    assert cache.get("c") == [3.0]
    assert len(cache) == 2


def test_callers_cannot_alter_cached_vectors() -> None:
    cache = QueryCache(1)
    vector = [1.0, 2.0]
    cache.put("q", vector)
    vector[0] = 9.0
    handed_out = cache.get("q")
    assert handed_out == [1.0, 2.0]
    assert handed_out is not None
    handed_out[1] = 9.0
    assert cache.get("q") == [1.0, 2.0]


def test_size_zero_disables_caching() -> None:
    cache = QueryCache(0)
    cache.put("q", [1.0])
    assert cache.get("q") is None
    assert len(cache) == 0


def test_bytes_are_bounded_as_well_as_entries() -> None:
    """Long query texts cannot pile up: the oldest go once the byte bound is passed."""
    vector = [0.5] * 384
    one = entry_bytes("x" * 100_000, tuple(vector))
    cache = QueryCache(1000, max_bytes=3 * one)
    for number in range(10):
        cache.put(f"{number:05d}" + "x" * 99_995, vector)
    assert len(cache) == 3 and cache.bytes <= 3 * one
    assert cache.get("00009" + "x" * 99_995) == vector and cache.get("00000" + "x" * 99_995) is None
    cache.put("y" * 1_000_000, vector)  # larger than the whole bound: not kept, nothing evicted for it
    assert len(cache) == 3 and cache.get("y" * 1_000_000) is None
