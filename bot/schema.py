"""The schema of Warden's database: every table, as the history of steps that built it.

A database records the last step applied to it in ``PRAGMA user_version``; ``storage.migrate``
applies the steps it lacks when the bot opens the file. This is the only place that defines tables
(``lua_runtime/kv_store.py`` reads and writes the KV tables made here).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Migration:
    """One step of the schema: the SQL that takes the database from ``version - 1`` to ``version``."""

    version: int
    summary: str
    statements: tuple[str, ...]


#: The schema's history, oldest first. Append new steps; never edit a released one, because
#: databases in the field were built by it.
MIGRATIONS: tuple[Migration, ...] = (
    Migration(
        1,
        "scripts with their versions, guild settings",
        (
            """CREATE TABLE scripts (
                id INTEGER PRIMARY KEY,
                guild_id INTEGER NOT NULL,
                name TEXT NOT NULL,
                enabled INTEGER NOT NULL DEFAULT 1 CHECK (enabled IN (0, 1)),
                current_version INTEGER NOT NULL,
                events TEXT NOT NULL DEFAULT '[]',
                capabilities TEXT NOT NULL DEFAULT '[]',
                created_at REAL NOT NULL,
                updated_at REAL NOT NULL,
                UNIQUE (guild_id, name)
            )""",
            # Each version keeps the events its source handles, so a rollback restores them with it.
            """CREATE TABLE script_versions (
                script_id INTEGER NOT NULL REFERENCES scripts (id) ON DELETE CASCADE,
                version INTEGER NOT NULL CHECK (version >= 1),
                source TEXT NOT NULL,
                author_id INTEGER NOT NULL,
                events TEXT NOT NULL DEFAULT '[]',
                created_at REAL NOT NULL,
                PRIMARY KEY (script_id, version)
            )""",
            """CREATE TABLE guild_settings (
                guild_id INTEGER PRIMARY KEY,
                error_channel_id INTEGER,
                log_channel_id INTEGER,
                mention_policy TEXT NOT NULL DEFAULT 'none' CHECK (mention_policy IN ('none', 'users')),
                allow_bot_authors INTEGER NOT NULL DEFAULT 0 CHECK (allow_bot_authors IN (0, 1))
            )""",
        ),
    ),
    Migration(
        2,
        "guild key-value data with its usage totals, run log",
        (
            """CREATE TABLE kv (
                guild_id INTEGER NOT NULL,
                key TEXT NOT NULL,
                value TEXT NOT NULL,
                expires_at REAL,
                updated_at REAL NOT NULL,
                PRIMARY KEY (guild_id, key)
            )""",
            "CREATE INDEX kv_expiry ON kv (guild_id, expires_at) WHERE expires_at IS NOT NULL",
            # Per-guild key count and UTF-8 bytes of keys plus values, kept by the triggers below on
            # every change to kv, so the quota check in KVStore reads one row instead of a SUM.
            """CREATE TABLE kv_usage (
                guild_id INTEGER PRIMARY KEY,
                key_count INTEGER NOT NULL,
                total_bytes INTEGER NOT NULL
            )""",
            """CREATE TRIGGER kv_usage_insert AFTER INSERT ON kv BEGIN
                INSERT INTO kv_usage (guild_id, key_count, total_bytes)
                VALUES (NEW.guild_id, 1, length(CAST(NEW.key AS BLOB)) + length(CAST(NEW.value AS BLOB)))
                ON CONFLICT (guild_id) DO UPDATE SET
                    key_count = key_count + 1, total_bytes = total_bytes + excluded.total_bytes;
            END""",
            """CREATE TRIGGER kv_usage_update AFTER UPDATE OF key, value ON kv BEGIN
                UPDATE kv_usage SET total_bytes = total_bytes
                    - length(CAST(OLD.key AS BLOB)) - length(CAST(OLD.value AS BLOB))
                    + length(CAST(NEW.key AS BLOB)) + length(CAST(NEW.value AS BLOB))
                WHERE guild_id = NEW.guild_id;
            END""",
            """CREATE TRIGGER kv_usage_delete AFTER DELETE ON kv BEGIN
                UPDATE kv_usage SET key_count = key_count - 1,
                    total_bytes = total_bytes
                        - length(CAST(OLD.key AS BLOB)) - length(CAST(OLD.value AS BLOB))
                WHERE guild_id = OLD.guild_id;
            END""",
            """CREATE TABLE run_log (
                id INTEGER PRIMARY KEY,
                guild_id INTEGER NOT NULL,
                script_name TEXT NOT NULL,
                kind TEXT NOT NULL CHECK (kind IN ('error', 'print')),
                message TEXT NOT NULL,
                created_at REAL NOT NULL
            )""",
            "CREATE INDEX run_log_by_guild ON run_log (guild_id, id)",
        ),
    ),
)

#: The schema version this code writes and reads.
SCHEMA_VERSION = MIGRATIONS[-1].version
