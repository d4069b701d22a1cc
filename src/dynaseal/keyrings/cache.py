"""A bounded, thread-safe, fork-safe cache of data keys for keyrings that pay per key (KMS).

Why a cache of its own rather than ``functools.lru_cache``: the traps of the AWS Encryption
SDK's caching are exactly what a general-purpose cache gets wrong here.

- **Bounded twice**: in entries and in bytes, least recently used evicted first.
- **Expiry by age and by use count**: an entry past ``ttl`` seconds, or handed out ``max_uses``
  times, is never handed out again. A use is taken under the lock, so two threads can never
  both take "the last use".
- **Idempotent removal**: :meth:`discard` removes an entry only if it is still the one the
  caller saw; two threads expiring the same entry, or a thread expiring an entry another thread
  has already replaced, is not an error and never removes the fresh one.
- **Single flight**: on a miss one thread loads (a KMS call); every other thread missing the
  same key meanwhile waits for that result, so a hundred threads on a cold cache make one call.
  A failed load fails every waiter with the same error (as ``concurrent.futures`` does) and
  caches nothing, so the next request tries again.
- **Fork safe**: a child process starts with an empty cache and fresh locks
  (``os.register_at_fork``), so no key is shared across a fork and no lock held by a thread of
  the parent can deadlock the child.
- **No key material in a repr**: values are held in :class:`Secret` (or objects with their own
  redacted repr, such as :class:`~dynaseal.DataKey`); an entry's repr shows only its age and
  uses.
"""

from __future__ import annotations

import os
import threading
import time
import weakref
from collections import OrderedDict
from collections.abc import Callable, Hashable
from typing import Generic, TypeVar

__all__ = ["CacheStats", "DataKeyCache", "Secret"]

V = TypeVar("V")


class Secret:
    """Bytes that must never be shown: the ``repr`` says only how many there are."""

    __slots__ = ("value",)

    def __init__(self, value: bytes) -> None:
        self.value = value

    def __repr__(self) -> str:
        return f"Secret(<{len(self.value)} bytes redacted>)"

    def __len__(self) -> int:
        return len(self.value)


class _Entry(Generic[V]):
    __slots__ = ("created", "max_uses", "size", "uses", "value")

    def __init__(self, value: V, size: int, created: float, max_uses: int | None) -> None:
        self.value = value
        self.size = size
        self.created = created
        self.uses = 0
        self.max_uses = max_uses

    def __repr__(self) -> str:
        return f"_Entry(<redacted>, uses={self.uses}, max_uses={self.max_uses})"


class _Flight(Generic[V]):
    """One load in progress: waiters block on ``done`` and then read ``entry`` or ``error``."""

    __slots__ = ("done", "entry", "error")

    def __init__(self) -> None:
        self.done = threading.Event()
        self.entry: _Entry[V] | None = None
        self.error: BaseException | None = None


class CacheStats:
    """Counters for tests and operators: how often the cache saved a call."""

    __slots__ = ("evictions", "expirations", "hits", "loads", "waits")

    def __init__(self) -> None:
        self.hits = self.loads = self.waits = self.expirations = self.evictions = 0

    def __repr__(self) -> str:
        return (f"CacheStats(hits={self.hits}, loads={self.loads}, waits={self.waits}, "
                f"expirations={self.expirations}, evictions={self.evictions})")


_caches: weakref.WeakSet[DataKeyCache[object]] = weakref.WeakSet()


def _after_fork_in_child() -> None:
    for cache in list(_caches):
        cache._reset()


if hasattr(os, "register_at_fork"):  # POSIX
    os.register_at_fork(after_in_child=_after_fork_in_child)


class DataKeyCache(Generic[V]):
    """Data keys by cache key, bounded in entries and bytes, expiring by age and use count.

    ``get(key, load, size=..., max_uses=...)`` returns a cached value, taking one use, or calls
    ``load()`` once for every thread that misses at the same time. ``clock`` is injectable so
    tests can expire entries without sleeping.
    """

    def __init__(self, *, ttl: float = 300.0, max_entries: int = 1000,
                 max_bytes: int = 1 << 20, clock: Callable[[], float] = time.monotonic) -> None:
        if not ttl > 0:
            raise ValueError("ttl must be positive")
        if max_entries < 1 or max_bytes < 1:
            raise ValueError("max_entries and max_bytes must be at least 1")
        self.ttl = float(ttl)
        self.max_entries = max_entries
        self.max_bytes = max_bytes
        self._clock = clock
        self._reset()
        _caches.add(self)  # type: ignore[arg-type]

    def _reset(self) -> None:
        """Empty, with new locks: run at construction and in a forked child."""
        self._lock = threading.Lock()
        self._entries: OrderedDict[Hashable, _Entry[V]] = OrderedDict()
        self._flights: dict[Hashable, _Flight[V]] = {}
        self._bytes = 0
        self.stats = CacheStats()

    def __repr__(self) -> str:
        return (f"DataKeyCache(entries={len(self._entries)}, bytes={self._bytes}, "
                f"ttl={self.ttl}, max_entries={self.max_entries}, max_bytes={self.max_bytes})")

    def __len__(self) -> int:
        return len(self._entries)

    @property
    def bytes(self) -> int:
        return self._bytes

    # -- the one way in ---------------------------------------------------------------------

    def get(self, key: Hashable, load: Callable[[], V], *, size: Callable[[V], int],
            max_uses: int | None = None) -> V:
        """The value for ``key``, one use taken; loaded (once, whoever asks) on a miss.

        ``max_uses`` applies to a value loaded now; the use this call takes counts.
        """
        while True:
            with self._lock:
                entry = self._entries.get(key)
                if entry is not None:
                    # the hot path, inlined: a usable entry, one use taken
                    if (self._clock() - entry.created < self.ttl
                            and (entry.max_uses is None or entry.uses + 1 < entry.max_uses)):
                        entry.uses += 1
                        self.stats.hits += 1
                        self._entries.move_to_end(key)
                        return entry.value
                    entry = self._take(key)
                    if entry is not None:
                        self.stats.hits += 1
                        return entry.value
                flight = self._flights.get(key)
                leader = flight is None
                if flight is None:
                    flight = self._flights[key] = _Flight()
            if leader:
                return self._lead(key, flight, load, size, max_uses)
            self.stats.waits += 1
            flight.done.wait()
            if flight.error is not None:
                raise flight.error
            with self._lock:
                got = flight.entry
                if got is not None and self._usable(got):
                    got.uses += 1
                    if got.max_uses is not None and got.uses >= got.max_uses:
                        self._remove(key, got)
                    return got.value
            # the loaded entry was used up (or expired) before this waiter woke: go again

    def _lead(self, key: Hashable, flight: _Flight[V], load: Callable[[], V],
              size: Callable[[V], int], max_uses: int | None) -> V:
        try:
            value = load()
        except BaseException as e:
            with self._lock:
                self._flights.pop(key, None)
            flight.error = e
            flight.done.set()
            raise
        entry = _Entry(value, size(value), self._clock(), max_uses)
        entry.uses = 1
        with self._lock:
            self.stats.loads += 1
            self._flights.pop(key, None)
            if max_uses is None or max_uses > 1:
                self._insert(key, entry)
            flight.entry = entry
        flight.done.set()
        return value

    def put(self, key: Hashable, value: V, *, size: int, max_uses: int | None = None) -> None:
        """Store a value learned another way (a key just generated is also a key to open)."""
        entry = _Entry(value, size, self._clock(), max_uses)
        with self._lock:
            self._insert(key, entry)

    def peek(self, key: Hashable) -> bool:
        """Whether a usable entry is cached for ``key`` (no use taken)."""
        with self._lock:
            entry = self._entries.get(key)
            return entry is not None and self._usable(entry)

    def discard(self, key: Hashable) -> None:
        """Remove ``key`` if present; absent is fine."""
        with self._lock:
            entry = self._entries.get(key)
            if entry is not None:
                self._remove(key, entry)

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()
            self._bytes = 0

    # -- under the lock ---------------------------------------------------------------------

    def _usable(self, entry: _Entry[V]) -> bool:
        return (self._clock() - entry.created < self.ttl
                and (entry.max_uses is None or entry.uses < entry.max_uses))

    def _take(self, key: Hashable) -> _Entry[V] | None:
        entry = self._entries.get(key)
        if entry is None:
            return None
        if not self._usable(entry):
            self.stats.expirations += 1
            self._remove(key, entry)
            return None
        entry.uses += 1
        self._entries.move_to_end(key)
        if entry.max_uses is not None and entry.uses >= entry.max_uses:
            self._remove(key, entry)  # that was the last use: gone before anyone else looks
        return entry

    def _remove(self, key: Hashable, entry: _Entry[V]) -> None:
        """Idempotent: removes ``key`` only while it still maps to ``entry``."""
        if self._entries.get(key) is entry:
            del self._entries[key]
            self._bytes -= entry.size

    def _insert(self, key: Hashable, entry: _Entry[V]) -> None:
        if entry.size > self.max_bytes:
            return  # could never fit: serve it once, cache nothing
        old = self._entries.get(key)
        if old is not None:
            self._remove(key, old)
        self._entries[key] = entry
        self._bytes += entry.size
        while len(self._entries) > self.max_entries or self._bytes > self.max_bytes:
            victim_key, victim = next(iter(self._entries.items()))
            self._remove(victim_key, victim)
            self.stats.evictions += 1
