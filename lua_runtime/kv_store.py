"""The guild key-value store behind ``@warden/kv``, synchronous, on stdlib :mod:`sqlite3`.

Lua runs on worker threads (and worker processes), and a script's ``kv.get``/``kv.set`` must answer
before the handler goes on, so this store is plain blocking code with its own connection to the bot's
database file. WAL journaling lets that connection work beside the bot's aiosqlite connection; each
write runs in a ``BEGIN IMMEDIATE`` transaction, so read-modify-write steps (quota checks, ``incr``)
stay atomic across threads and processes, and is committed before the call returns.

The tables are created by the migrations in ``bot/schema.py`` (the single home of the schema): ``kv``
holds the rows and ``kv_usage`` a per-guild key count and byte total that triggers on ``kv`` keep
current, so a quota check reads one row instead of summing the guild's data on every write.

Quotas on keys and values are enforced here and nowhere else; the bot's admin commands call this class
too. This module never imports discord.py or ``bot``.
"""

from __future__ import annotations

import json
import logging
import math
import os
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, Protocol

from lua_runtime.limits import SandboxLimits

log = logging.getLogger(__name__)

#: How long a connection waits for another connection's write lock before failing, in seconds
#: (``sqlite3``'s ``timeout`` is SQLite's ``busy_timeout``). Shared with ``bot/storage.py``.
SQLITE_BUSY_TIMEOUT_SECONDS = 10.0

#: Settings every connection to Warden's database applies (this module's and ``bot/storage.py``'s).
SQLITE_PRAGMAS = (
    # WAL: readers never block the writer, so the Lua workers' KV connection and the bot's
    # aiosqlite connection work on one file side by side.
    "PRAGMA journal_mode = WAL",
    # NORMAL under WAL: COMMIT appends the transaction to the WAL file before it returns, so a write
    # that was acknowledged survives the process being killed (SIGKILL, or lupa aborting on an
    # out-of-memory error): the data is in the operating system's hands. Only a power cut or kernel
    # crash can drop the last few transactions, and never leaves a corrupt file. FULL would add an
    # fsync to every commit (measured about 10 times slower per commit) for that rarer case.
    "PRAGMA synchronous = NORMAL",
    "PRAGMA foreign_keys = ON",
)

#: Deepest nesting of tables inside a value. Deeper values are refused with a clear error instead
#: of failing later in the JSON codec's recursion.
MAX_VALUE_DEPTH = 32

# Values go back to Lua 5.4, whose integers are signed 64-bit.
_INT64_MIN = -(2**63)
_INT64_MAX = 2**63 - 1


class KVError(Exception):
    """A KV call that cannot be done. ``str()`` is written for the script author."""


class KVQuotaExceeded(KVError):
    """A write would take the guild past one of its KV quotas."""


def connect(path: str | os.PathLike[str]) -> sqlite3.Connection:
    """A connection to Warden's database in autocommit mode, with :data:`SQLITE_PRAGMAS` applied.

    Autocommit (``isolation_level=None``) because callers open their transactions explicitly with
    ``BEGIN IMMEDIATE``; sqlite3's implicit transactions would start them deferred.
    """
    conn = sqlite3.connect(
        path, isolation_level=None, timeout=SQLITE_BUSY_TIMEOUT_SECONDS, check_same_thread=False
    )
    for pragma in SQLITE_PRAGMAS:
        conn.execute(pragma)
    return conn


class KVStore:
    """One connection's view of every guild's key-value data.

    Thread-safe: calls from several threads are serialized on the one connection. Worker processes
    each open their own ``KVStore`` on the same file. ``clock`` gives the current unix time; tests
    pass a fake one to move expiry forward without sleeping.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        limits: SandboxLimits,
        *,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._limits = limits
        self._clock = clock
        self._lock = threading.Lock()
        self._conn = connect(path)

    def __enter__(self) -> KVStore:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def close(self) -> None:
        """Close the connection. Every write was already committed when its call returned."""
        with self._lock:
            self._conn.close()

    def get(self, guild_id: int, key: str) -> Any | None:
        """The value stored at ``key``, or None when it is absent or expired."""
        self._check_key(key)
        now = self._clock()
        with self._lock:
            row = self._conn.execute(
                "SELECT value, expires_at FROM kv WHERE guild_id = ? AND key = ?", (guild_id, key)
            ).fetchone()
        if row is None:
            return None
        value, expires_at = row
        if expires_at is not None and expires_at <= now:
            with self._write() as conn:
                self._purge_expired(conn, guild_id, now)
            return None
        return json.loads(value)

    def set(self, guild_id: int, key: str, value: Any, ttl_seconds: float | None = None) -> None:
        """Store ``value`` at ``key``, replacing what was there.

        With ``ttl_seconds`` the key reads as absent that many seconds from now; without it the key
        never expires (a previous expiry is cleared).
        """
        self._check_key(key)
        encoded = self._encode(value)
        if ttl_seconds is not None and (
            not _is_number(ttl_seconds) or not math.isfinite(ttl_seconds) or ttl_seconds <= 0
        ):
            raise KVError(f"kv: ttl must be a positive number of seconds, got {_describe(ttl_seconds)}")
        with self._write() as conn:
            now = self._clock()
            self._purge_expired(conn, guild_id, now)
            expires_at = None if ttl_seconds is None else now + ttl_seconds
            self._store(conn, guild_id, key, encoded, expires_at, now)

    def delete(self, guild_id: int, key: str) -> bool:
        """Remove ``key``. True when a live key was removed, False when it was absent or expired."""
        self._check_key(key)
        with self._write() as conn:
            now = self._clock()
            removed = conn.execute(
                "DELETE FROM kv WHERE guild_id = ? AND key = ? RETURNING expires_at", (guild_id, key)
            ).fetchall()
        return any(expires_at is None or expires_at > now for (expires_at,) in removed)

    def incr(self, guild_id: int, key: str, by: int | float = 1) -> int | float:
        """Add ``by`` to the number at ``key`` atomically and return the new value.

        A missing (or expired) key counts as 0. The key keeps its expiry, as a counter with a window
        ("warnings in the last hour") needs. A value that is not a number is a :class:`KVError`.
        """
        self._check_key(key)
        if not _is_number(by):
            raise KVError(f"kv.incr: the amount must be a number, got {_describe(by)}")
        with self._write() as conn:
            now = self._clock()
            self._purge_expired(conn, guild_id, now)
            row = conn.execute(
                "SELECT value, expires_at FROM kv WHERE guild_id = ? AND key = ?", (guild_id, key)
            ).fetchone()
            current, expires_at = (0, None) if row is None else (json.loads(row[0]), row[1])
            if not _is_number(current):
                raise KVError(f"kv.incr: the value at {key!r} is a {_describe(current)}, not a number")
            result = current + by
            self._store(conn, guild_id, key, self._encode(result), expires_at, now)
        return result

    def keys(self, guild_id: int, prefix: str = "", limit: int = 100) -> list[str]:
        """Up to ``limit`` live keys that start with ``prefix``, in byte order."""
        if not isinstance(prefix, str):
            raise KVError(f"kv.keys: the prefix must be a string, got {_describe(prefix)}")
        if not isinstance(limit, int) or isinstance(limit, bool) or limit <= 0:
            raise KVError(f"kv.keys: the limit must be a positive whole number, got {_describe(limit)}")
        now = self._clock()
        with self._lock:
            rows = self._conn.execute(
                "SELECT key FROM kv WHERE guild_id = ? AND key GLOB ?"
                " AND (expires_at IS NULL OR expires_at > ?) ORDER BY key LIMIT ?",
                (guild_id, _glob_prefix(prefix), now, limit),
            ).fetchall()
        return [key for (key,) in rows]

    def usage(self, guild_id: int) -> tuple[int, int]:
        """The guild's live key count and their total bytes (keys and encoded values), as the
        quotas count them."""
        with self._write() as conn:
            self._purge_expired(conn, guild_id, self._clock())
            row = conn.execute(
                "SELECT key_count, total_bytes FROM kv_usage WHERE guild_id = ?", (guild_id,)
            ).fetchone()
        return row or (0, 0)

    def entry_bytes(self, guild_id: int, key: str) -> int | None:
        """The bytes ``key`` and its value count against the total quota; None when it is absent
        or expired."""
        with self._lock:
            row = self._conn.execute(
                "SELECT length(CAST(key AS BLOB)) + length(CAST(value AS BLOB)), expires_at FROM kv"
                " WHERE guild_id = ? AND key = ?",
                (guild_id, key),
            ).fetchone()
        if row is None or (row[1] is not None and row[1] <= self._clock()):
            return None
        return row[0]

    @contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        """A ``BEGIN IMMEDIATE`` transaction, committed on exit, rolled back on any error.

        IMMEDIATE takes the database's write lock up front, so no other connection can change the
        rows this transaction read before it writes (waiting up to the busy timeout for it).
        """
        with self._lock:
            self._conn.execute("BEGIN IMMEDIATE")
            try:
                yield self._conn
                self._conn.execute("COMMIT")
            except BaseException:
                if self._conn.in_transaction:
                    self._conn.execute("ROLLBACK")
                raise

    def _purge_expired(self, conn: sqlite3.Connection, guild_id: int, now: float) -> None:
        """Delete the guild's expired keys, so they hold no quota (the ``kv_expiry`` index finds them)."""
        purged = conn.execute(
            "DELETE FROM kv WHERE guild_id = ? AND expires_at <= ?", (guild_id, now)
        ).rowcount
        if purged:
            log.debug("purged %d expired kv keys of guild %d", purged, guild_id)

    def _store(
        self,
        conn: sqlite3.Connection,
        guild_id: int,
        key: str,
        encoded: str,
        expires_at: float | None,
        now: float,
    ) -> None:
        """Write one row after checking the key-count and total-bytes quotas, inside a transaction."""
        old = conn.execute(
            "SELECT length(CAST(key AS BLOB)) + length(CAST(value AS BLOB)) FROM kv"
            " WHERE guild_id = ? AND key = ?",
            (guild_id, key),
        ).fetchone()
        usage = conn.execute(
            "SELECT key_count, total_bytes FROM kv_usage WHERE guild_id = ?", (guild_id,)
        ).fetchone()
        key_count, total_bytes = usage or (0, 0)
        check_quota(self._limits, key_count, total_bytes, old[0] if old else None, key, encoded)
        conn.execute(
            "INSERT INTO kv (guild_id, key, value, expires_at, updated_at) VALUES (?, ?, ?, ?, ?)"
            " ON CONFLICT (guild_id, key) DO UPDATE SET"
            " value = excluded.value, expires_at = excluded.expires_at, updated_at = excluded.updated_at",
            (guild_id, key, encoded, expires_at, now),
        )

    def _check_key(self, key: object) -> None:
        check_key(key, self._limits)

    def _encode(self, value: Any) -> str:
        return encode_value(value, self._limits)


def check_key(key: object, limits: SandboxLimits) -> None:
    """Refuse a key that is not a non-empty string within the key quota."""
    if not isinstance(key, str):
        raise KVError(f"kv: keys are strings, got {_describe(key)}")
    if not key:
        raise KVError("kv: the key is empty")
    size = _utf8_size(key, "key")
    if size > limits.kv_max_key_bytes:
        raise KVQuotaExceeded(
            f"kv quota: the key is {size} bytes long; the limit is {limits.kv_max_key_bytes}"
        )


def encode_value(value: Any, limits: SandboxLimits) -> str:
    """Check ``value`` is plain data and encode it as compact JSON within the value quota."""
    if value is None:
        raise KVError("kv: the value is nil; use kv.delete to remove a key")
    _check_plain(value, depth=0)
    encoded = json.dumps(value, ensure_ascii=False, separators=(",", ":"), allow_nan=False)
    size = _utf8_size(encoded, "value")
    if size > limits.kv_max_value_bytes:
        raise KVQuotaExceeded(
            f"kv quota: the value is {size} bytes once encoded; "
            f"the limit is {limits.kv_max_value_bytes} bytes"
        )
    return encoded


def check_quota(
    limits: SandboxLimits, key_count: int, total_bytes: int, old_bytes: int | None, key: str, encoded: str
) -> None:
    """Refuse a write of ``key`` (``encoded``) that would pass the key-count or total-bytes quota.

    ``key_count`` and ``total_bytes`` are the guild's usage before the write, ``old_bytes`` what the
    key holds now (None when it is new). A write that does not grow the total is allowed even above
    the limit (the operator may have lowered it), so that scripts can still shrink their data.
    """
    if old_bytes is None and key_count >= limits.kv_max_keys:
        raise KVQuotaExceeded(
            f"kv quota: this server has {key_count} keys (the limit); "
            "delete some with kv.delete or give them a ttl"
        )
    new_total = total_bytes - (old_bytes or 0) + len(key.encode()) + len(encoded.encode())
    if new_total > limits.kv_max_total_bytes and new_total > total_bytes:
        raise KVQuotaExceeded(
            f"kv quota: this write would bring this server's kv data to {new_total} bytes; "
            f"the limit is {limits.kv_max_total_bytes} bytes"
        )


class KeyValueStore(Protocol):
    """What ``@warden/kv`` needs of a store: :class:`KVStore`, or :class:`DryRunKV` in a dry run."""

    def get(self, guild_id: int, key: str) -> Any | None: ...
    def set(self, guild_id: int, key: str, value: Any, ttl_seconds: float | None = None) -> None: ...
    def delete(self, guild_id: int, key: str) -> bool: ...
    def incr(self, guild_id: int, key: str, by: int | float = 1) -> int | float: ...
    def keys(self, guild_id: int, prefix: str = "", limit: int = 100) -> list[str]: ...


_DELETED = object()


class DryRunKV:
    """The store of a dry run (``/script test``, ``python -m bot script run``): it changes nothing.

    Reads see the guild's real data when ``base`` is given, so a test run meets the same strike
    counts as the real script would; writes land in memory and vanish with the run. Keys, values and
    the key-count and total-bytes quotas are checked as :class:`KVStore` checks them, counting the
    guild's real data plus the run's writes; expiries are accepted and ignored (a run is short).
    """

    def __init__(self, limits: SandboxLimits, base: KVStore | None = None) -> None:
        self._limits = limits
        self._base = base
        #: (guild, key) -> the value written in this run, or _DELETED.
        self._written: dict[tuple[int, str], Any] = {}
        #: guild -> [key count, total bytes], the base's usage plus this run's writes.
        self._usage: dict[int, list[int]] = {}

    def get(self, guild_id: int, key: str) -> Any | None:
        check_key(key, self._limits)
        value = self._written.get((guild_id, key))
        if value is None:
            return None if self._base is None else self._base.get(guild_id, key)
        return None if value is _DELETED else json.loads(json.dumps(value))

    def set(self, guild_id: int, key: str, value: Any, ttl_seconds: float | None = None) -> None:
        check_key(key, self._limits)
        self._write(guild_id, key, json.loads(encode_value(value, self._limits)))

    def delete(self, guild_id: int, key: str) -> bool:
        check_key(key, self._limits)
        old_bytes = self._entry_bytes(guild_id, key)
        self._written[(guild_id, key)] = _DELETED
        if old_bytes is not None:
            usage = self._usage_of(guild_id)
            usage[0] -= 1
            usage[1] -= old_bytes
        return old_bytes is not None

    def incr(self, guild_id: int, key: str, by: int | float = 1) -> int | float:
        if not _is_number(by):
            raise KVError(f"kv.incr: the amount must be a number, got {_describe(by)}")
        current = self.get(guild_id, key)
        current = 0 if current is None else current
        if not _is_number(current):
            raise KVError(f"kv.incr: the value at {key!r} is a {_describe(current)}, not a number")
        self._write(guild_id, key, current + by)
        return current + by

    def keys(self, guild_id: int, prefix: str = "", limit: int = 100) -> list[str]:
        found = (
            set()
            if self._base is None
            else set(self._base.keys(guild_id, prefix, limit + len(self._written)))
        )
        for (guild, key), value in self._written.items():
            if guild == guild_id and key.startswith(prefix):
                (found.discard if value is _DELETED else found.add)(key)
        return sorted(found, key=lambda k: k.encode())[:limit]

    def _write(self, guild_id: int, key: str, value: Any) -> None:
        encoded = encode_value(value, self._limits)
        old_bytes = self._entry_bytes(guild_id, key)
        usage = self._usage_of(guild_id)
        check_quota(self._limits, usage[0], usage[1], old_bytes, key, encoded)
        usage[0] += old_bytes is None
        usage[1] += len(key.encode()) + len(encoded.encode()) - (old_bytes or 0)
        self._written[(guild_id, key)] = value

    def _entry_bytes(self, guild_id: int, key: str) -> int | None:
        value = self._written.get((guild_id, key))
        if value is _DELETED:
            return None
        if value is not None:
            return len(key.encode()) + len(encode_value(value, self._limits).encode())
        return None if self._base is None else self._base.entry_bytes(guild_id, key)

    def _usage_of(self, guild_id: int) -> list[int]:
        usage = self._usage.get(guild_id)
        if usage is None:
            base = (0, 0) if self._base is None else self._base.usage(guild_id)
            usage = self._usage[guild_id] = list(base)
        return usage


def _check_plain(value: Any, depth: int) -> None:
    """Refuse all but strings, finite numbers, 64-bit integers, booleans, lists and string-keyed dicts."""
    if depth > MAX_VALUE_DEPTH:
        raise KVError(f"kv: the value nests tables more than {MAX_VALUE_DEPTH} deep")
    if isinstance(value, bool | str):
        return
    if isinstance(value, int):
        if not _INT64_MIN <= value <= _INT64_MAX:
            raise KVError("kv: integers must fit in 64 bits")
        return
    if isinstance(value, float):
        if not math.isfinite(value):
            raise KVError(f"kv: numbers must be finite, got {value}")
        return
    if isinstance(value, list):
        for item in value:
            if item is None:
                raise KVError("kv: a list in the value holds nil")
            _check_plain(item, depth + 1)
        return
    if isinstance(value, dict):
        for field, item in value.items():
            if not isinstance(field, str):
                raise KVError(f"kv: table keys in values must be strings, got {_describe(field)}")
            if item is None:
                raise KVError(f"kv: the field {field!r} in the value is nil")
            _check_plain(item, depth + 1)
        return
    raise KVError(f"kv: values are strings, numbers, booleans and tables of them, got {_describe(value)}")


def _is_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _utf8_size(text: str, what: str) -> int:
    try:
        return len(text.encode("utf-8"))
    except UnicodeEncodeError:
        raise KVError(f"kv: the {what} is not valid UTF-8 text") from None


def _describe(value: object) -> str:
    """The Lua name of a value's type, as the script author knows it."""
    if value is None:
        return "nil"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int | float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list | dict):
        return "table"
    return type(value).__name__


def _glob_prefix(prefix: str) -> str:
    """A GLOB pattern matching keys that start with ``prefix``.

    GLOB rather than LIKE: it is case-sensitive, like keys, and SQLite answers a literal GLOB prefix
    from the primary-key index. Its wildcards are escaped by putting each in a character class.
    """
    escaped = "".join(f"[{char}]" if char in "*?[" else char for char in prefix)
    return escaped + "*"
