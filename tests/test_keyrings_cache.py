"""The data-key cache on its own: bounds, expiry, idempotent removal, single flight, fork."""

from __future__ import annotations

import os
import threading
import time

import pytest

from dynaseal.keyrings.cache import DataKeyCache, Secret
from keyrings_support import FakeClock


def _size(s: Secret) -> int:
    return len(s)


def _loader(log: list[int], value: bytes = b"k" * 32):
    def load() -> Secret:
        log.append(1)
        return Secret(value)
    return load


def test_hit_after_one_load() -> None:
    cache: DataKeyCache[Secret] = DataKeyCache()
    loads: list[int] = []
    for _ in range(1000):
        assert cache.get("a", _loader(loads), size=_size).value == b"k" * 32
    assert len(loads) == 1
    assert (cache.stats.loads, cache.stats.hits) == (1, 999)


def test_expiry_by_age() -> None:
    clock = FakeClock()
    cache: DataKeyCache[Secret] = DataKeyCache(ttl=10, clock=clock)
    loads: list[int] = []
    cache.get("a", _loader(loads), size=_size)
    clock.advance(9.99)
    cache.get("a", _loader(loads), size=_size)
    assert len(loads) == 1
    clock.advance(0.01)
    cache.get("a", _loader(loads), size=_size)
    assert len(loads) == 2
    assert cache.stats.expirations == 1


def test_expiry_by_use_count_counts_the_loading_use() -> None:
    cache: DataKeyCache[Secret] = DataKeyCache()
    loads: list[int] = []
    for _ in range(10):
        cache.get("a", _loader(loads), size=_size, max_uses=5)
    assert len(loads) == 2  # uses 1-5 on the first key, 6-10 on the second
    assert len(cache) == 0  # the fifth use removed the second key at once
    cache.get("a", _loader(loads), size=_size, max_uses=1)
    assert len(loads) == 3 and len(cache) == 0  # a one-use key is never cached


def test_bounded_in_entries_least_recently_used_first() -> None:
    cache: DataKeyCache[Secret] = DataKeyCache(max_entries=3)
    loads: list[int] = []
    for key in "abc":
        cache.get(key, _loader(loads), size=_size)
    cache.get("a", _loader(loads), size=_size)  # a is now the most recent
    cache.get("d", _loader(loads), size=_size)  # evicts b
    assert len(cache) == 3 and cache.stats.evictions == 1
    assert cache.peek("a") and not cache.peek("b") and cache.peek("c") and cache.peek("d")


def test_bounded_in_bytes() -> None:
    cache: DataKeyCache[Secret] = DataKeyCache(max_bytes=100)
    for key in range(10):
        cache.get(key, _loader([]), size=_size)  # 32 bytes each
    assert cache.bytes == 96 and len(cache) == 3
    cache.get("big", _loader([], b"x" * 101), size=_size)
    assert not cache.peek("big") and cache.bytes == 96  # too big to ever fit: not cached


def test_removal_is_idempotent_and_never_removes_a_fresh_entry() -> None:
    clock = FakeClock()
    cache: DataKeyCache[Secret] = DataKeyCache(ttl=10, clock=clock)
    cache.get("a", _loader([]), size=_size)
    cache.discard("a")
    cache.discard("a")  # twice: not an error
    cache.discard("never there")
    assert len(cache) == 0 and cache.bytes == 0
    # an entry seen by one thread, then replaced by another: removing "what I saw" is a no-op
    cache.get("a", _loader([]), size=_size)
    seen = cache._entries["a"]
    cache.put("a", Secret(b"n" * 32), size=32)
    with cache._lock:
        cache._remove("a", seen)
    assert cache.get("a", _loader([]), size=_size).value == b"n" * 32


def test_concurrent_expiry_of_one_entry() -> None:
    clock = FakeClock()
    cache: DataKeyCache[Secret] = DataKeyCache(ttl=10, clock=clock)
    cache.get("a", _loader([]), size=_size)
    clock.advance(11)
    loads: list[int] = []
    errors: list[BaseException] = []
    barrier = threading.Barrier(20)

    def worker() -> None:
        barrier.wait()
        try:
            cache.get("a", _loader(loads), size=_size)
        except BaseException as e:  # pragma: no cover - reported below
            errors.append(e)

    threads = [threading.Thread(target=worker) for _ in range(20)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == [] and len(loads) == 1 and cache.bytes == 32


def test_single_flight_100_threads_one_load() -> None:
    cache: DataKeyCache[Secret] = DataKeyCache()
    loads: list[int] = []
    started = threading.Event()

    def slow_load() -> Secret:
        loads.append(1)
        started.set()
        time.sleep(0.2)  # every other thread arrives while this load is in flight
        return Secret(b"s" * 32)

    results: list[bytes] = []
    barrier = threading.Barrier(100)

    def worker() -> None:
        barrier.wait()
        results.append(cache.get("a", slow_load, size=_size).value)

    threads = [threading.Thread(target=worker) for _ in range(100)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(loads) == 1
    assert results == [b"s" * 32] * 100
    assert cache.stats.loads == 1 and cache.stats.waits + cache.stats.hits == 99


def test_failed_load_fails_every_waiter_and_caches_nothing() -> None:
    cache: DataKeyCache[Secret] = DataKeyCache()
    calls: list[int] = []

    def failing() -> Secret:
        calls.append(1)
        time.sleep(0.1)
        raise RuntimeError("KMS down")

    errors: list[BaseException] = []
    barrier = threading.Barrier(10)

    def worker() -> None:
        barrier.wait()
        try:
            cache.get("a", failing, size=_size)
        except RuntimeError as e:
            errors.append(e)

    threads = [threading.Thread(target=worker) for _ in range(10)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(errors) == 10 and len(calls) == 1
    assert len(cache) == 0
    assert cache.get("a", _loader([]), size=_size).value == b"k" * 32  # the next try loads


@pytest.mark.skipif(not hasattr(os, "fork"), reason="POSIX fork")
def test_forked_child_starts_with_an_empty_cache() -> None:
    cache: DataKeyCache[Secret] = DataKeyCache()
    cache.get("a", _loader([]), size=_size)
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: report what it sees, then leave without running pytest's atexit
        try:
            loads: list[int] = []
            cache.get("a", _loader(loads), size=_size)
            os.write(write, f"{len(cache)},{len(loads)}".encode())
        finally:
            os._exit(0)
    os.close(write)
    seen = os.read(read, 100).decode()
    os.close(read)
    os.waitpid(pid, 0)
    assert seen == "1,1"  # the child loaded again: nothing came across the fork
    assert len(cache) == 1 and cache.stats.loads == 1  # the parent is untouched


def test_reprs_show_no_key_material() -> None:
    cache: DataKeyCache[Secret] = DataKeyCache()
    material = bytes(range(32))
    cache.get("a", lambda: Secret(material), size=_size)
    shown = repr(cache) + repr(cache._entries["a"]) + repr(cache._entries["a"].value)
    for form in (material.hex(), repr(material), str(list(material))):
        assert form not in shown
    assert "redacted" in repr(Secret(material))
