"""The translation cache: translations by source, bounded by the memory they hold."""

from __future__ import annotations

import sys
import threading
from collections import OrderedDict
from typing import NamedTuple


class CacheInfo(NamedTuple):
    """What the translation cache holds and how it was used."""

    hits: int
    misses: int
    entries: int
    bytes: int
    max_bytes: int


class TranslationCache:
    """Translations by source, bounded by the memory they hold, least recently used evicted first.

    A guild's VM is built again after an eviction, a memory-limit error or a restart, and every
    build translates its scripts; the cache makes each distinct source cost one translation. It is
    bounded by bytes, not entries: an entry holds a source of up to 64 KiB and a translation several
    times that. Thread-safe: VMs are built on worker threads.
    """

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        self._entries: OrderedDict[str, str] = OrderedDict()
        self._bytes = 0
        self._hits = 0
        self._misses = 0
        self._lock = threading.Lock()

    @staticmethod
    def entry_bytes(source: str, lua: str) -> int:
        """The memory one entry holds: the two strings, as Python stores them."""
        return sys.getsizeof(source) + sys.getsizeof(lua)

    def get(self, source: str) -> str | None:
        with self._lock:
            lua = self._entries.get(source)
            if lua is None:
                self._misses += 1
                return None
            self._hits += 1
            self._entries.move_to_end(source)
            return lua

    def put(self, source: str, lua: str) -> None:
        """Keeps ``lua`` as the translation of ``source``, evicting the least recently used
        translations while the cache holds more than its bound (one larger than the whole bound is
        not kept at all)."""
        size = self.entry_bytes(source, lua)
        if size > self.max_bytes:
            return
        with self._lock:
            previous = self._entries.pop(source, None)
            if previous is not None:
                self._bytes -= self.entry_bytes(source, previous)
            self._entries[source] = lua
            self._bytes += size
            while self._bytes > self.max_bytes:
                old_source, old_lua = self._entries.popitem(last=False)
                self._bytes -= self.entry_bytes(old_source, old_lua)

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()
            self._bytes = self._hits = self._misses = 0

    def info(self) -> CacheInfo:
        with self._lock:
            return CacheInfo(self._hits, self._misses, len(self._entries), self._bytes, self.max_bytes)
