"""Warden's durable state in one SQLite file: scripts and their history, guild settings, KV data, run logs.

:class:`Storage` is the bot's asynchronous view, over aiosqlite. Every write runs in a
``BEGIN IMMEDIATE`` transaction and is committed before the method returns, so what the bot has
acknowledged to an admin is on disk even if the process dies the next instant. The Lua workers reach
the KV tables through :class:`lua_runtime.kv_store.KVStore`, a synchronous store with its own connection
to the same file; the KV admin methods here call that class, which owns the KV quotas and expiry.

The schema is versioned with ``PRAGMA user_version`` and grown by the migrations of ``schema.py`` (the
only place that defines tables), which :func:`migrate` applies at open, one transaction each.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import re
import sqlite3
import threading
import time
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any, Literal

import aiosqlite

from bot.schema import MIGRATIONS, SCHEMA_VERSION
from bot.schema import Migration as Migration  # importable from here, as before the schema moved
from lua_runtime.guild_vm import ScriptSource
from lua_runtime.kv_store import SQLITE_BUSY_TIMEOUT_SECONDS, SQLITE_PRAGMAS, KVStore, connect
from lua_runtime.limits import SandboxLimits

log = logging.getLogger(__name__)

#: Run-log entries kept per guild; older ones are pruned whenever new ones are written.
RUN_LOG_KEEP_PER_GUILD = 200
#: Characters of one run-log message kept; the rest is cut with a marker.
RUN_LOG_MESSAGE_MAX_CHARS = 2000
RUN_LOG_KINDS = ("error", "print")
#: Who a script's messages may ping: nobody, or the users it names (never roles or @everyone).
MENTION_POLICIES = ("none", "users")

# Script names are typed by admins as slash-command arguments and shown in logs, so they are short,
# lower-case and free of spaces and look-alike characters: "/script disable anti-spam" just works.
_SCRIPT_NAME_RE = re.compile(r"^[a-z0-9_-]{1,32}$")


class StorageError(Exception):
    """A storage request that cannot be done. ``str()`` is written for the Discord admin."""


class QuotaExceeded(StorageError):
    """A save would take the guild past one of its script quotas."""


class ScriptNotFound(StorageError):
    """The guild has no script of that name."""

    def __init__(self, name: str) -> None:
        self.name = name
        super().__init__(f"this server has no script named '{name}'")


@dataclass(frozen=True, slots=True)
class ScriptRecord:
    """A script as it stands: its settings and its current version. Times are unix seconds."""

    guild_id: int
    name: str
    enabled: bool
    version: int
    events: tuple[str, ...]
    capabilities: tuple[str, ...]
    source: str
    author_id: int
    created_at: float
    updated_at: float


@dataclass(frozen=True, slots=True)
class ScriptVersion:
    """One upload of a script, kept for history and rollback."""

    guild_id: int
    name: str
    version: int
    source: str
    author_id: int
    events: tuple[str, ...]
    created_at: float


@dataclass(frozen=True, slots=True)
class GuildSettings:
    """A guild's Warden settings. A guild that never changed them has these defaults."""

    guild_id: int
    error_channel_id: int | None = None
    log_channel_id: int | None = None
    mention_policy: Literal["none", "users"] = "none"
    allow_bot_authors: bool = False


@dataclass(frozen=True, slots=True)
class RunLogLine:
    """A line to append to a guild's run log: a script's ``print`` output or an error it raised."""

    guild_id: int
    script_name: str
    kind: Literal["error", "print"]
    message: str


@dataclass(frozen=True, slots=True)
class RunLogEntry:
    """A stored run-log line. ``id`` grows with insertion order; times are unix seconds."""

    id: int
    guild_id: int
    script_name: str
    kind: Literal["error", "print"]
    message: str
    created_at: float


def migrate(conn: sqlite3.Connection, target: int = SCHEMA_VERSION) -> int:
    """Bring the database behind ``conn`` (autocommit mode) up to schema ``target``; return its version.

    Each migration runs in its own ``BEGIN IMMEDIATE`` transaction together with the new
    ``user_version``, so a crash leaves the database at one version or the next, never between, and a
    second process migrating at the same time finds the work done. A database newer than this code
    is refused before anything is written to it.
    """
    (current,) = conn.execute("PRAGMA user_version").fetchone()
    if current > SCHEMA_VERSION:
        raise StorageError(
            f"the database has schema version {current}, newer than this Warden understands "
            f"({SCHEMA_VERSION}); run a newer Warden or restore a backup"
        )
    for migration in MIGRATIONS:
        if migration.version > target:
            break
        conn.execute("BEGIN IMMEDIATE")
        try:
            (current,) = conn.execute("PRAGMA user_version").fetchone()
            if current < migration.version:
                for statement in migration.statements:
                    conn.execute(statement)
                # PRAGMA takes no parameters; the version is an int from MIGRATIONS.
                conn.execute(f"PRAGMA user_version = {migration.version:d}")
                log.info("database schema upgraded to version %d: %s", migration.version, migration.summary)
            conn.execute("COMMIT")
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise
    (current,) = conn.execute("PRAGMA user_version").fetchone()
    return current


def _prepare_database(path: Path) -> None:
    """Create the file's folder, then check and upgrade its schema (WAL is switched on afterwards)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    # A plain connection, without SQLITE_PRAGMAS: the version check must come before any pragma
    # writes to the file, and migrations that rebuild tables need foreign keys off.
    with contextlib.closing(
        sqlite3.connect(path, isolation_level=None, timeout=SQLITE_BUSY_TIMEOUT_SECONDS)
    ) as conn:
        migrate(conn)


class Storage:
    """The bot's asynchronous access to Warden's database. Create with :meth:`open`.

    One aiosqlite connection serves every task. An :class:`asyncio.Lock` gives each method the
    connection to itself, so one task's transaction never interleaves statements with another's, and
    ``BEGIN IMMEDIATE`` keeps read-modify-write steps atomic against other connections and processes.
    """

    def __init__(self, db: aiosqlite.Connection, kv_store: KVStore, limits: SandboxLimits) -> None:
        self._db = db
        self._kv = kv_store
        self._limits = limits
        self._lock = asyncio.Lock()
        self._closed = False

    @classmethod
    async def open(cls, path: Path | str, limits: SandboxLimits) -> Storage:
        """Open (creating if needed) the database at ``path`` and bring its schema up to date.

        Raises :class:`StorageError` if the file was written by a newer Warden; the file is left as
        it was.
        """
        path = Path(path)
        await asyncio.to_thread(_prepare_database, path)
        db = await aiosqlite.connect(path, isolation_level=None, timeout=SQLITE_BUSY_TIMEOUT_SECONDS)
        try:
            db.row_factory = sqlite3.Row
            for pragma in SQLITE_PRAGMAS:
                await db.execute(pragma)
            kv_store = await asyncio.to_thread(KVStore, path, limits)
        except BaseException:
            await db.close()
            raise
        log.info("opened database %s (schema version %d)", path, SCHEMA_VERSION)
        return cls(db, kv_store, limits)

    async def close(self) -> None:
        """Close both connections (once; later calls do nothing). Every write was committed when
        its method returned."""
        if self._closed:
            return
        self._closed = True
        async with self._lock:
            await self._db.close()
        await asyncio.to_thread(self._kv.close)

    async def __aenter__(self) -> Storage:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    @property
    def kv_store(self) -> KVStore:
        """The synchronous KV store on this database, for Lua workers running in this process."""
        return self._kv

    # --- scripts ---------------------------------------------------------------------------------

    async def save_script(
        self,
        guild_id: int,
        name: str,
        source: str,
        author_id: int,
        events: Iterable[str],
        capabilities: Iterable[str] | None = None,
    ) -> ScriptRecord:
        """Create the script, or add ``source`` as its next version and make that current.

        ``events`` are the event names the source's handlers cover. With ``capabilities`` None an
        existing script keeps its grants and a new one gets none. New scripts start enabled.
        Raises :class:`QuotaExceeded` past ``max_script_bytes`` or, for a new script,
        ``max_scripts_per_guild``.
        """
        _check_script_name(name)
        size = _source_size(source)
        if size > self._limits.max_script_bytes:
            raise QuotaExceeded(
                f"the script is {size} bytes; the limit is {self._limits.max_script_bytes} bytes, "
                "so split it or trim it"
            )
        events_json = _encode_names(events, "event")
        capabilities_json = None if capabilities is None else _encode_names(capabilities, "capability")
        now = time.time()
        async with self._transaction() as db:
            script_id = await _script_id(db, guild_id, name)
            if script_id is None:
                (count,) = await _fetch_one(db, "SELECT count(*) FROM scripts WHERE guild_id = ?", guild_id)
                if count >= self._limits.max_scripts_per_guild:
                    raise QuotaExceeded(
                        f"this server already has {count} scripts and the limit is "
                        f"{self._limits.max_scripts_per_guild}; delete one first"
                    )
                cursor = await db.execute(
                    "INSERT INTO scripts (guild_id, name, enabled, current_version, events, capabilities,"
                    " created_at, updated_at) VALUES (?, ?, 1, 0, '[]', ?, ?, ?)",
                    (guild_id, name, capabilities_json or "[]", now, now),
                )
                script_id = cursor.lastrowid
            await _add_version(db, script_id, source, author_id, events_json, capabilities_json, now)
            record = await _fetch_script(db, guild_id, name)
        log.info("guild %d saved script %s version %d", guild_id, name, record.version)
        return record

    async def get_script(self, guild_id: int, name: str) -> ScriptRecord | None:
        """The script with its current version, or None."""
        _check_script_name(name)
        async with self._lock:
            return await _fetch_script(self._db, guild_id, name)

    async def list_scripts(self, guild_id: int) -> list[ScriptRecord]:
        """Every script of the guild, enabled or not, ordered by name."""
        rows = await self._read(f"{_SELECT_SCRIPT} WHERE s.guild_id = ? ORDER BY s.name", guild_id)
        return [_script_record(row) for row in rows]

    async def enabled_scripts(self, guild_id: int) -> list[ScriptRecord]:
        """The scripts a guild VM loads, ordered by name so that load order is deterministic."""
        rows = await self._read(_SELECT_ENABLED, guild_id)
        return [_script_record(row) for row in rows]

    async def guilds_with_scripts(self) -> list[int]:
        """Ids of the guilds that have at least one script, enabled or not, in ascending order."""
        rows = await self._read("SELECT DISTINCT guild_id FROM scripts ORDER BY guild_id")
        return [row["guild_id"] for row in rows]

    async def set_enabled(self, guild_id: int, name: str, enabled: bool) -> ScriptRecord:
        """Enable or disable the script. Raises :class:`ScriptNotFound`."""
        _check_script_name(name)
        if not isinstance(enabled, bool):
            raise StorageError(f"enabled must be true or false, got {enabled!r}")
        return await self._update_script(guild_id, name, "enabled = ?", int(enabled))

    async def set_capabilities(self, guild_id: int, name: str, capabilities: Iterable[str]) -> ScriptRecord:
        """Replace the script's granted capabilities. Raises :class:`ScriptNotFound`."""
        _check_script_name(name)
        return await self._update_script(
            guild_id, name, "capabilities = ?", _encode_names(capabilities, "capability")
        )

    async def delete_script(self, guild_id: int, name: str) -> bool:
        """Delete the script and its whole history. False when there was no such script."""
        _check_script_name(name)
        async with self._transaction() as db:
            cursor = await db.execute("DELETE FROM scripts WHERE guild_id = ? AND name = ?", (guild_id, name))
            deleted = cursor.rowcount > 0
        if deleted:
            log.info("guild %d deleted script %s", guild_id, name)
        return deleted

    async def script_history(self, guild_id: int, name: str) -> list[ScriptVersion]:
        """Every version of the script, newest first. Raises :class:`ScriptNotFound`."""
        _check_script_name(name)
        async with self._lock:
            if await _script_id(self._db, guild_id, name) is None:
                raise ScriptNotFound(name)
            rows = await self._db.execute_fetchall(
                f"{_SELECT_VERSION} WHERE s.guild_id = ? AND s.name = ? ORDER BY v.version DESC",
                (guild_id, name),
            )
        return [_script_version(row) for row in rows]

    async def rollback(self, guild_id: int, name: str, version: int) -> ScriptRecord:
        """Make an old version current again by copying it as a new version.

        History stays append-only: the rollback itself is a version (with the old source, author and
        events), so it can be seen in the history and undone by another rollback. Grants and the
        enabled flag are not versioned and stay as they are. Raises :class:`ScriptNotFound`, or
        :class:`StorageError` for a version the script never had.
        """
        _check_script_name(name)
        now = time.time()
        async with self._transaction() as db:
            script_id = await _script_id(db, guild_id, name)
            if script_id is None:
                raise ScriptNotFound(name)
            old = await _fetch_one(
                db,
                "SELECT source, author_id, events FROM script_versions WHERE script_id = ? AND version = ?",
                script_id,
                version,
            )
            if old is None:
                raise StorageError(f"script '{name}' has no version {version}; its history lists them")
            await _add_version(db, script_id, old["source"], old["author_id"], old["events"], None, now)
            record = await _fetch_script(db, guild_id, name)
        log.info(
            "guild %d rolled script %s back to version %d as %d", guild_id, name, version, record.version
        )
        return record

    # --- guild settings --------------------------------------------------------------------------

    async def get_guild_settings(self, guild_id: int) -> GuildSettings:
        """The guild's settings, or the defaults if it never changed any."""
        rows = await self._read("SELECT * FROM guild_settings WHERE guild_id = ?", guild_id)
        return _guild_settings(rows[0]) if rows else GuildSettings(guild_id)

    async def update_guild_settings(self, guild_id: int, /, **changes: Any) -> GuildSettings:
        """Change some of the guild's settings (keyword per :class:`GuildSettings` field); return them all.

        Unknown names and invalid values raise :class:`StorageError` and change nothing.
        """
        for field_name, value in changes.items():
            _check_setting(field_name, value)
        async with self._transaction() as db:
            await db.execute(
                "INSERT INTO guild_settings (guild_id) VALUES (?) ON CONFLICT DO NOTHING", (guild_id,)
            )
            if changes:
                # Column names come from GuildSettings' fields (checked above), never from the caller.
                assignments = ", ".join(f"{field_name} = ?" for field_name in changes)
                await db.execute(
                    f"UPDATE guild_settings SET {assignments} WHERE guild_id = ?",
                    (*(_setting_to_column(value) for value in changes.values()), guild_id),
                )
            row = await _fetch_one(db, "SELECT * FROM guild_settings WHERE guild_id = ?", guild_id)
        return _guild_settings(row)

    # --- run log ---------------------------------------------------------------------------------

    async def append_run_log(
        self, guild_id: int, script_name: str, kind: Literal["error", "print"], message: str
    ) -> None:
        """Append one line to the guild's run log."""
        await self.append_run_log_many([RunLogLine(guild_id, script_name, kind, message)])

    async def append_run_log_many(self, entries: Iterable[RunLogLine]) -> None:
        """Append lines (one event's output and errors) in one transaction, then prune each guild's log
        to its newest :data:`RUN_LOG_KEEP_PER_GUILD` entries."""
        lines = list(entries)
        for line in lines:
            if line.kind not in RUN_LOG_KINDS:
                raise StorageError(
                    f"run log kind must be one of {', '.join(RUN_LOG_KINDS)}, got {line.kind!r}"
                )
        if not lines:
            return
        now = time.time()
        async with self._transaction() as db:
            await db.executemany(
                "INSERT INTO run_log (guild_id, script_name, kind, message, created_at)"
                " VALUES (?, ?, ?, ?, ?)",
                [(ln.guild_id, ln.script_name, ln.kind, _clip_message(ln.message), now) for ln in lines],
            )
            for guild_id in {line.guild_id for line in lines}:
                await db.execute(
                    "DELETE FROM run_log WHERE guild_id = ? AND id <= (SELECT id FROM run_log"
                    " WHERE guild_id = ? ORDER BY id DESC LIMIT 1 OFFSET ?)",
                    (guild_id, guild_id, RUN_LOG_KEEP_PER_GUILD),
                )

    async def recent_run_log(
        self, guild_id: int, script_name: str | None = None, limit: int = 50
    ) -> list[RunLogEntry]:
        """The guild's newest run-log entries, newest first, optionally for one script only."""
        if not isinstance(limit, int) or isinstance(limit, bool) or limit <= 0:
            raise StorageError(f"limit must be a positive whole number, got {limit!r}")
        if script_name is None:
            rows = await self._read(
                "SELECT * FROM run_log WHERE guild_id = ? ORDER BY id DESC LIMIT ?", guild_id, limit
            )
        else:
            rows = await self._read(
                "SELECT * FROM run_log WHERE guild_id = ? AND script_name = ? ORDER BY id DESC LIMIT ?",
                guild_id,
                script_name,
                limit,
            )
        return [RunLogEntry(**dict(row)) for row in rows]

    # --- KV administration (the rules live in KVStore) -------------------------------------------

    async def kv_list(self, guild_id: int, prefix: str = "", limit: int = 50) -> list[str]:
        """Live KV keys of the guild that start with ``prefix``. Raises ``KVError`` on bad arguments."""
        return await asyncio.to_thread(self._kv.keys, guild_id, prefix, limit)

    async def kv_get(self, guild_id: int, key: str) -> Any | None:
        """The value at ``key``, or None when absent or expired. Raises ``KVError`` on a bad key."""
        return await asyncio.to_thread(self._kv.get, guild_id, key)

    async def kv_delete(self, guild_id: int, key: str) -> bool:
        """Delete ``key``; False when it was absent or expired. Raises ``KVError`` on a bad key."""
        return await asyncio.to_thread(self._kv.delete, guild_id, key)

    # --- connection plumbing ---------------------------------------------------------------------

    @contextlib.asynccontextmanager
    async def _transaction(self) -> AsyncIterator[aiosqlite.Connection]:
        """The connection inside a ``BEGIN IMMEDIATE`` transaction, committed on normal exit."""
        async with self._lock:
            try:
                await self._db.execute("BEGIN IMMEDIATE")
                yield self._db
                await self._db.execute("COMMIT")
            except BaseException:
                # A caller cancelled while awaiting a statement (BEGIN included) leaves that statement
                # queued on aiosqlite's thread, where it still runs; the ROLLBACK queues behind it and
                # undoes it. If BEGIN failed, or COMMIT went through before a cancellation arrived,
                # there is nothing to roll back.
                with contextlib.suppress(sqlite3.OperationalError):
                    await self._db.execute("ROLLBACK")
                raise

    async def _read(self, sql: str, *params: Any) -> list[sqlite3.Row]:
        """Rows of one query, run while no other task's transaction is open on the connection."""
        async with self._lock:
            return list(await self._db.execute_fetchall(sql, params))

    async def _update_script(self, guild_id: int, name: str, assignment: str, value: Any) -> ScriptRecord:
        async with self._transaction() as db:
            cursor = await db.execute(
                f"UPDATE scripts SET {assignment}, updated_at = ? WHERE guild_id = ? AND name = ?",
                (value, time.time(), guild_id, name),
            )
            if cursor.rowcount == 0:
                raise ScriptNotFound(name)
            return await _fetch_script(db, guild_id, name)


_SELECT_SCRIPT = """
    SELECT s.guild_id, s.name, s.enabled, s.current_version, s.events, s.capabilities,
           v.source, v.author_id, s.created_at, s.updated_at
    FROM scripts AS s
    JOIN script_versions AS v ON v.script_id = s.id AND v.version = s.current_version"""

_SELECT_ENABLED = f"{_SELECT_SCRIPT} WHERE s.guild_id = ? AND s.enabled = 1 ORDER BY s.name"

_SELECT_VERSION = """
    SELECT s.guild_id, s.name, v.version, v.source, v.author_id, v.events, v.created_at
    FROM script_versions AS v
    JOIN scripts AS s ON s.id = v.script_id"""


async def _fetch_one(db: aiosqlite.Connection, sql: str, *params: Any) -> sqlite3.Row | None:
    async with db.execute(sql, params) as cursor:
        return await cursor.fetchone()


async def _script_id(db: aiosqlite.Connection, guild_id: int, name: str) -> int | None:
    row = await _fetch_one(db, "SELECT id FROM scripts WHERE guild_id = ? AND name = ?", guild_id, name)
    return None if row is None else row["id"]


async def _fetch_script(db: aiosqlite.Connection, guild_id: int, name: str) -> ScriptRecord | None:
    row = await _fetch_one(db, f"{_SELECT_SCRIPT} WHERE s.guild_id = ? AND s.name = ?", guild_id, name)
    return None if row is None else _script_record(row)


async def _add_version(
    db: aiosqlite.Connection,
    script_id: int,
    source: str,
    author_id: int,
    events_json: str,
    capabilities_json: str | None,
    now: float,
) -> None:
    """Append the next version of a script and make it current; the caller holds the transaction.

    ``capabilities_json`` None keeps the script's grants.
    """
    (version,) = await _fetch_one(
        db, "SELECT coalesce(max(version), 0) + 1 FROM script_versions WHERE script_id = ?", script_id
    )
    await db.execute(
        "INSERT INTO script_versions (script_id, version, source, author_id, events, created_at)"
        " VALUES (?, ?, ?, ?, ?, ?)",
        (script_id, version, source, author_id, events_json, now),
    )
    await db.execute(
        "UPDATE scripts SET current_version = ?, events = ?, capabilities = coalesce(?, capabilities),"
        " updated_at = ? WHERE id = ?",
        (version, events_json, capabilities_json, now, script_id),
    )


def _script_record(row: sqlite3.Row) -> ScriptRecord:
    return ScriptRecord(
        guild_id=row["guild_id"],
        name=row["name"],
        enabled=bool(row["enabled"]),
        version=row["current_version"],
        events=tuple(json.loads(row["events"])),
        capabilities=tuple(json.loads(row["capabilities"])),
        source=row["source"],
        author_id=row["author_id"],
        created_at=row["created_at"],
        updated_at=row["updated_at"],
    )


def _script_version(row: sqlite3.Row) -> ScriptVersion:
    return ScriptVersion(
        guild_id=row["guild_id"],
        name=row["name"],
        version=row["version"],
        source=row["source"],
        author_id=row["author_id"],
        events=tuple(json.loads(row["events"])),
        created_at=row["created_at"],
    )


def _guild_settings(row: sqlite3.Row) -> GuildSettings:
    return GuildSettings(
        guild_id=row["guild_id"],
        error_channel_id=row["error_channel_id"],
        log_channel_id=row["log_channel_id"],
        mention_policy=row["mention_policy"],
        allow_bot_authors=bool(row["allow_bot_authors"]),
    )


def _check_script_name(name: object) -> None:
    if not isinstance(name, str) or not _SCRIPT_NAME_RE.match(name):
        raise StorageError(
            f"script names are 1 to 32 characters of a-z, 0-9, '_' and '-' (got {name!r}), "
            "for example anti-spam"
        )


def _source_size(source: object) -> int:
    if not isinstance(source, str):
        raise StorageError(f"a script's source must be text, got {type(source).__name__}")
    try:
        return len(source.encode("utf-8"))
    except UnicodeEncodeError:
        raise StorageError("the script is not valid UTF-8 text") from None


def _encode_names(names: Iterable[str], what: str) -> str:
    """A sorted, duplicate-free JSON list of event or capability names."""
    if isinstance(names, str):
        raise StorageError(f"{what} names must be a list of names, not one string")
    names = list(names)
    for name in names:
        if not isinstance(name, str) or not name:
            raise StorageError(f"{what} names must be non-empty strings, got {name!r}")
    return json.dumps(sorted(set(names)))


_SETTING_FIELDS = tuple(field.name for field in fields(GuildSettings) if field.name != "guild_id")


def _check_setting(name: str, value: Any) -> None:
    if name not in _SETTING_FIELDS:
        raise StorageError(f"unknown server setting '{name}'; the settings are {', '.join(_SETTING_FIELDS)}")
    if name in ("error_channel_id", "log_channel_id"):
        if value is not None and (not isinstance(value, int) or isinstance(value, bool) or value <= 0):
            raise StorageError(f"{name} must be a channel id or none, got {value!r}")
    elif name == "mention_policy":
        if value not in MENTION_POLICIES:
            raise StorageError(f"mention_policy must be one of {', '.join(MENTION_POLICIES)}, got {value!r}")
    elif not isinstance(value, bool):
        raise StorageError(f"{name} must be true or false, got {value!r}")


def _setting_to_column(value: Any) -> Any:
    return int(value) if isinstance(value, bool) else value


def _clip_message(message: str) -> str:
    if len(message) <= RUN_LOG_MESSAGE_MAX_CHARS:
        return message
    return message[: RUN_LOG_MESSAGE_MAX_CHARS - 1] + "…"


class StoredScripts:
    """The enabled scripts of a guild, read synchronously: what a Lua worker loads into a fresh VM.

    Workers build guild VMs on their own threads (or in their own processes) whenever a guild's VM
    is missing, after an eviction or a crash, so they read the scripts themselves rather than wait
    on the event loop. Picklable: a worker process gets the path and opens its own connection.
    """

    def __init__(self, path: Path | str, limits: SandboxLimits) -> None:
        self.path = Path(path)
        self.limits = limits
        self._lock = threading.Lock()
        self._conn: sqlite3.Connection | None = None
        self._kv: KVStore | None = None

    def __getstate__(self) -> dict[str, Any]:
        return {"path": self.path, "limits": self.limits}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__(state["path"], state["limits"])

    @property
    def kv_store(self) -> KVStore:
        """This provider's own KV connection to the same database, opened on first use."""
        with self._lock:
            if self._kv is None:
                self._kv = KVStore(self.path, self.limits)
            return self._kv

    def scripts_for(self, guild_id: int) -> list[ScriptSource]:
        """The guild's enabled scripts, ordered by name (the load order)."""
        with self._lock:
            if self._conn is None:
                self._conn = connect(self.path)
                self._conn.row_factory = sqlite3.Row
            rows = self._conn.execute(_SELECT_ENABLED, (guild_id,)).fetchall()
        return [ScriptSource(row["name"], row["source"]) for row in rows]

    def close(self) -> None:
        with self._lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None
            if self._kv is not None:
                self._kv.close()
                self._kv = None
