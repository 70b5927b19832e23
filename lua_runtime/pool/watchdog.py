"""What the worker loop expects of a watchdog, and the KV store its guild VMs get under one.

The process pool's supervisor watches each worker process from outside (``processpool.py``) and
kills one stuck in guest work the sandbox cannot interrupt. The loop (``worker.py``) tells it when
guest work starts and stops; a ``@warden/kv`` call, which may wait on SQLite's lock, stops its
clock (:class:`KVOffTheClock`). Thread workers run without a watchdog.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, Protocol

from lua_runtime.kv_store import KeyValueStore


class Watchdog(Protocol):
    """Watches a worker from outside: the process pool's supervisor, which kills a worker stuck in
    guest work that the sandbox cannot interrupt (a call into C code, out of reach of its hooks).

    The loop arms it when guest work starts, with the CPU budget that work runs under, and disarms
    it when the worker has nothing running; the watchdog decides how much wall time that budget is
    worth. Both are called on the worker, once per request at most, so they must be cheap.
    """

    def arm(self, cpu_budget_seconds: float, guild_id: int) -> None:
        """Guest work of ``guild_id`` under a budget of ``cpu_budget_seconds`` of CPU starts now
        (the guild is named so that a worker killed for it can say whose work overran)."""
        ...

    def disarm(self) -> None:
        """No guest work is running."""
        ...

    def pause(self) -> None:
        """The guest work waits on I/O, not on code (a ``@warden/kv`` call waiting for SQLite's
        lock): the wall clock stops counting until :meth:`resume`. The sandbox still counts the
        work's CPU, and SQLite's busy timeout bounds the wait."""
        ...

    def resume(self) -> None: ...


class KVOffTheClock:
    """A worker's KV store as its guild VMs see it when a :class:`Watchdog` watches the worker:
    each call pauses the watchdog, so that a write waiting for another process's lock on the
    database (up to SQLite's busy timeout, longer than the watchdog's deadline) does not get the
    worker killed as if its guest code had stalled."""

    def __init__(self, store: KeyValueStore, watchdog: Watchdog) -> None:
        self._store = store
        self._watchdog = watchdog

    @contextmanager
    def _off_the_clock(self) -> Iterator[None]:
        self._watchdog.pause()
        try:
            yield
        finally:
            self._watchdog.resume()

    def get(self, guild_id: int, key: str) -> Any | None:
        with self._off_the_clock():
            return self._store.get(guild_id, key)

    def set(self, guild_id: int, key: str, value: Any, ttl_seconds: float | None = None) -> None:
        with self._off_the_clock():
            self._store.set(guild_id, key, value, ttl_seconds)

    def delete(self, guild_id: int, key: str) -> bool:
        with self._off_the_clock():
            return self._store.delete(guild_id, key)

    def incr(self, guild_id: int, key: str, by: int | float = 1) -> int | float:
        with self._off_the_clock():
            return self._store.incr(guild_id, key, by)

    def keys(self, guild_id: int, prefix: str = "", limit: int = 100) -> list[str]:
        with self._off_the_clock():
            return self._store.keys(guild_id, prefix, limit)
