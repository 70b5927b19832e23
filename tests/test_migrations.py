"""Schema migrations: fresh databases, upgrades in place from version 1, refusal of newer databases."""

from __future__ import annotations

import contextlib
import hashlib
import sqlite3
from pathlib import Path

import pytest

import bot.storage
from bot.storage import MIGRATIONS, SCHEMA_VERSION, Migration, Storage, StorageError, migrate
from lua_runtime.limits import SandboxLimits

LIMITS = SandboxLimits()
GUILD = 111


def user_version(path: Path) -> int:
    with contextlib.closing(sqlite3.connect(path)) as conn:
        return conn.execute("PRAGMA user_version").fetchone()[0]


def file_names(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


def table_names(path: Path) -> set[str]:
    with contextlib.closing(sqlite3.connect(path)) as conn:
        return {name for (name,) in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}


def test_migrations_are_numbered_one_by_one_from_one() -> None:
    assert [m.version for m in MIGRATIONS] == list(range(1, len(MIGRATIONS) + 1))
    assert len(MIGRATIONS) == SCHEMA_VERSION


async def test_fresh_database_gets_the_latest_schema_in_wal_mode(tmp_path: Path) -> None:
    path = tmp_path / "nested" / "folders" / "warden.db"
    async with await Storage.open(path, LIMITS):
        pass
    assert user_version(path) == SCHEMA_VERSION
    assert {"scripts", "script_versions", "guild_settings", "kv", "kv_usage", "run_log"} <= table_names(path)
    with contextlib.closing(sqlite3.connect(path)) as conn:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


async def test_version_1_database_with_rows_upgrades_in_place(tmp_path: Path) -> None:
    path = tmp_path / "warden.db"
    with contextlib.closing(sqlite3.connect(path, isolation_level=None)) as conn:
        assert migrate(conn, target=1) == 1
        conn.execute(
            "INSERT INTO scripts (id, guild_id, name, enabled, current_version, events, capabilities,"
            " created_at, updated_at)"
            " VALUES (1, ?, 'greeter', 0, 2, '[\"member_join\"]', '[\"discord:send\"]', 1000.0, 2000.0)",
            (GUILD,),
        )
        conn.executemany(
            "INSERT INTO script_versions (script_id, version, source, author_id, events, created_at)"
            " VALUES (1, ?, ?, 5, '[\"member_join\"]', ?)",
            [(1, "return {} -- v1", 1000.0), (2, "return {} -- v2", 2000.0)],
        )
        conn.execute(
            "INSERT INTO guild_settings (guild_id, error_channel_id, mention_policy) VALUES (?, 42, 'users')",
            (GUILD,),
        )
    assert user_version(path) == 1
    assert "kv" not in table_names(path)

    async with await Storage.open(path, LIMITS) as storage:
        script = await storage.get_script(GUILD, "greeter")
        assert script is not None
        assert (script.version, script.enabled, script.source) == (2, False, "return {} -- v2")
        assert script.capabilities == ("discord:send",)
        assert [v.version for v in await storage.script_history(GUILD, "greeter")] == [2, 1]
        settings = await storage.get_guild_settings(GUILD)
        assert (settings.error_channel_id, settings.mention_policy) == (42, "users")
        # The tables of version 2 work on the upgraded file.
        await storage.append_run_log(GUILD, "greeter", "print", "hello")
        assert [e.message for e in await storage.recent_run_log(GUILD)] == ["hello"]
        storage.kv_store.set(GUILD, "seen", 3)
        assert await storage.kv_get(GUILD, "seen") == 3
    assert user_version(path) == SCHEMA_VERSION


async def test_reopening_an_up_to_date_database_changes_nothing(tmp_path: Path) -> None:
    path = tmp_path / "warden.db"
    async with await Storage.open(path, LIMITS) as storage:
        await storage.save_script(GUILD, "keep", "return {}", 1, ["message"])
    async with await Storage.open(path, LIMITS) as storage:
        assert [s.name for s in await storage.list_scripts(GUILD)] == ["keep"]
    assert user_version(path) == SCHEMA_VERSION


async def test_database_newer_than_the_code_is_refused_untouched(tmp_path: Path) -> None:
    path = tmp_path / "warden.db"
    with contextlib.closing(sqlite3.connect(path, isolation_level=None)) as conn:
        conn.execute("CREATE TABLE from_the_future (x)")
        conn.execute("INSERT INTO from_the_future VALUES (1)")
        conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    before = hashlib.sha256(path.read_bytes()).hexdigest()

    with pytest.raises(StorageError, match=f"schema version {SCHEMA_VERSION + 1}, newer"):
        await Storage.open(path, LIMITS)

    assert hashlib.sha256(path.read_bytes()).hexdigest() == before
    assert file_names(tmp_path) == ["warden.db"]  # no WAL file either


def test_a_failing_migration_leaves_the_previous_version_whole(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "warden.db"
    broken = Migration(
        SCHEMA_VERSION + 1,
        "half of this step would apply",
        ("CREATE TABLE halfway (x)", "CREATE TABLE halfway (x)"),
    )
    monkeypatch.setattr(bot.storage, "MIGRATIONS", (*MIGRATIONS, broken))
    monkeypatch.setattr(bot.storage, "SCHEMA_VERSION", broken.version)
    with contextlib.closing(sqlite3.connect(path, isolation_level=None)) as conn:
        with pytest.raises(sqlite3.OperationalError, match="already exists"):
            migrate(conn, target=broken.version)
        assert not conn.in_transaction
    assert user_version(path) == SCHEMA_VERSION
    assert "halfway" not in table_names(path)
