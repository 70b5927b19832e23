"""The async Storage: scripts and history, quotas, settings, run log, KV administration, concurrency,
durability across close and across a SIGKILL."""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from bot.storage import (
    RUN_LOG_KEEP_PER_GUILD,
    RUN_LOG_MESSAGE_MAX_CHARS,
    GuildSettings,
    QuotaExceeded,
    RunLogLine,
    ScriptNotFound,
    Storage,
    StorageError,
    migrate,
)
from lua_runtime.kv_store import KVError, KVStore
from lua_runtime.limits import SandboxLimits
from tests.support import durability_child

GUILD = 10
OTHER_GUILD = 20
AUTHOR = 99
LIMITS = SandboxLimits(max_scripts_per_guild=5, max_script_bytes=64)
REPO_ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
async def storage(tmp_path: Path) -> AsyncIterator[Storage]:
    async with await Storage.open(tmp_path / "warden.db", LIMITS) as opened:
        yield opened


def count_rows(path: Path, sql: str) -> int:
    with contextlib.closing(sqlite3.connect(path)) as conn:
        return conn.execute(sql).fetchone()[0]


# --- scripts -------------------------------------------------------------------------------------------


async def test_a_new_script_starts_enabled_at_version_1_without_grants(storage: Storage) -> None:
    saved = await storage.save_script(GUILD, "anti-spam", "return {}", AUTHOR, ["message", "message_edit"])
    assert (saved.guild_id, saved.name, saved.enabled, saved.version) == (GUILD, "anti-spam", True, 1)
    assert (saved.source, saved.author_id, saved.capabilities) == ("return {}", AUTHOR, ())
    assert saved.events == ("message", "message_edit")
    assert saved.created_at == saved.updated_at
    assert await storage.get_script(GUILD, "anti-spam") == saved


async def test_saving_again_adds_a_version_and_keeps_grants_unless_given(storage: Storage) -> None:
    first = await storage.save_script(GUILD, "s", "return {}", AUTHOR, ["message"], ["discord:reply"])
    second = await storage.save_script(GUILD, "s", "return {} -- 2", AUTHOR + 1, ["member_join", "message"])
    assert (second.version, second.source, second.author_id) == (2, "return {} -- 2", AUTHOR + 1)
    assert second.capabilities == ("discord:reply",)
    assert second.events == ("member_join", "message")
    assert second.created_at == first.created_at
    assert second.updated_at >= first.updated_at
    third = await storage.save_script(GUILD, "s", "return {}", AUTHOR, ["message"], [])
    assert third.capabilities == ()


async def test_event_and_capability_names_are_stored_sorted_without_duplicates(storage: Storage) -> None:
    saved = await storage.save_script(
        GUILD,
        "s",
        "return {}",
        AUTHOR,
        ["message", "member_join", "message"],
        ("kv:set", "discord:ban", "kv:set"),
    )
    assert saved.events == ("member_join", "message")
    assert saved.capabilities == ("discord:ban", "kv:set")


@pytest.mark.parametrize(
    ("events", "message"),
    [("message", "not one string"), (["message", ""], "non-empty"), ([3], "got 3"), ([["x"]], "got ")],
)
async def test_malformed_name_lists_are_refused(storage: Storage, events: object, message: str) -> None:
    with pytest.raises(StorageError, match=message):
        await storage.save_script(GUILD, "s", "return {}", AUTHOR, events)
    assert await storage.list_scripts(GUILD) == []


async def test_listing_is_by_name_per_guild_and_enabled_scripts_skip_disabled_ones(storage: Storage) -> None:
    for name in ("zeta", "alpha", "mid"):
        await storage.save_script(GUILD, name, "return {}", AUTHOR, ["message"])
    await storage.save_script(OTHER_GUILD, "alpha", "return {} -- other", AUTHOR, ["message"])
    await storage.set_enabled(GUILD, "mid", False)

    assert [s.name for s in await storage.list_scripts(GUILD)] == ["alpha", "mid", "zeta"]
    assert [s.name for s in await storage.enabled_scripts(GUILD)] == ["alpha", "zeta"]
    assert [s.source for s in await storage.list_scripts(OTHER_GUILD)] == ["return {} -- other"]
    assert await storage.guilds_with_scripts() == [GUILD, OTHER_GUILD]
    assert await storage.get_script(GUILD, "missing") is None


async def test_set_enabled_and_set_capabilities_change_only_their_field(storage: Storage) -> None:
    saved = await storage.save_script(GUILD, "s", "return {}", AUTHOR, ["message"], ["discord:reply"])
    disabled = await storage.set_enabled(GUILD, "s", False)
    assert disabled.enabled is False
    assert (disabled.version, disabled.capabilities) == (saved.version, saved.capabilities)
    granted = await storage.set_capabilities(GUILD, "s", ["discord:kick", "discord:reply"])
    assert granted.capabilities == ("discord:kick", "discord:reply")
    assert granted.enabled is False
    assert await storage.get_script(GUILD, "s") == granted
    with pytest.raises(StorageError, match="true or false"):
        await storage.set_enabled(GUILD, "s", 1)


async def test_delete_removes_the_script_and_its_history(storage: Storage, tmp_path: Path) -> None:
    await storage.save_script(GUILD, "s", "return {}", AUTHOR, ["message"])
    await storage.save_script(GUILD, "s", "return {} -- 2", AUTHOR, ["message"])
    await storage.save_script(GUILD, "keep", "return {}", AUTHOR, ["message"])
    assert await storage.delete_script(GUILD, "s") is True
    assert await storage.delete_script(GUILD, "s") is False
    assert await storage.get_script(GUILD, "s") is None
    assert count_rows(tmp_path / "warden.db", "SELECT count(*) FROM script_versions") == 1


@pytest.mark.parametrize(
    "call",
    [
        lambda s: s.set_enabled(GUILD, "ghost", True),
        lambda s: s.set_capabilities(GUILD, "ghost", []),
        lambda s: s.script_history(GUILD, "ghost"),
        lambda s: s.rollback(GUILD, "ghost", 1),
    ],
)
async def test_missing_scripts_raise_script_not_found(storage: Storage, call) -> None:
    with pytest.raises(ScriptNotFound, match="this server has no script named 'ghost'"):
        await call(storage)


@pytest.mark.parametrize("name", ["", "Anti-Spam", "anti spam", "x" * 33, "émoji", "a/b", None])
async def test_script_names_must_be_short_lower_case_words(storage: Storage, name: object) -> None:
    with pytest.raises(StorageError, match="script names are 1 to 32 characters"):
        await storage.save_script(GUILD, name, "return {}", AUTHOR, ["message"])
    with pytest.raises(StorageError, match="script names"):
        await storage.get_script(GUILD, name)


async def test_longest_allowed_name_is_accepted(storage: Storage) -> None:
    name = "a-" + "x" * 29 + "_"
    assert (await storage.save_script(GUILD, name, "return {}", AUTHOR, ["message"])).name == name


async def test_history_is_newest_first_and_rollback_appends_a_copy(storage: Storage) -> None:
    await storage.save_script(GUILD, "s", "return {} -- one", 1, ["message"], ["discord:reply"])
    await storage.save_script(GUILD, "s", "return {} -- two", 2, ["member_join"])
    rolled = await storage.rollback(GUILD, "s", 1)
    assert (rolled.version, rolled.source, rolled.author_id) == (3, "return {} -- one", 1)
    assert rolled.events == ("message",)  # the events of the restored source
    assert rolled.capabilities == ("discord:reply",)

    history = await storage.script_history(GUILD, "s")
    assert [(v.version, v.source, v.author_id) for v in history] == [
        (3, "return {} -- one", 1),
        (2, "return {} -- two", 2),
        (1, "return {} -- one", 1),
    ]
    assert history[1].events == ("member_join",)
    with pytest.raises(StorageError, match="has no version 9"):
        await storage.rollback(GUILD, "s", 9)
    assert (await storage.get_script(GUILD, "s")).version == 3


# --- script quotas -------------------------------------------------------------------------------------


async def test_scripts_per_guild_quota_applies_only_to_new_scripts(storage: Storage) -> None:
    for index in range(LIMITS.max_scripts_per_guild):
        await storage.save_script(GUILD, f"s{index}", "return {}", AUTHOR, ["message"])
    with pytest.raises(
        QuotaExceeded, match="this server already has 5 scripts and the limit is 5; delete one"
    ):
        await storage.save_script(GUILD, "one-more", "return {}", AUTHOR, ["message"])
    assert (await storage.save_script(GUILD, "s0", "return {} -- 2", AUTHOR, ["message"])).version == 2
    await storage.save_script(OTHER_GUILD, "one-more", "return {}", AUTHOR, ["message"])
    await storage.delete_script(GUILD, "s1")
    await storage.save_script(GUILD, "one-more", "return {}", AUTHOR, ["message"])


async def test_script_size_is_counted_in_utf8_bytes(storage: Storage) -> None:
    fits = "-- " + "é" * 30 + "x"  # 3 + 60 + 1 = 64 bytes
    await storage.save_script(GUILD, "s", fits, AUTHOR, ["message"])
    with pytest.raises(QuotaExceeded, match="the script is 65 bytes; the limit is 64 bytes"):
        await storage.save_script(GUILD, "s", fits + "x", AUTHOR, ["message"])
    assert (await storage.get_script(GUILD, "s")).source == fits


# --- guild settings ------------------------------------------------------------------------------------


async def test_guild_settings_default_then_update_field_by_field(storage: Storage) -> None:
    assert await storage.get_guild_settings(GUILD) == GuildSettings(GUILD)
    # A row created with no changes holds the database's defaults: they must equal the dataclass's.
    assert await storage.update_guild_settings(GUILD) == GuildSettings(GUILD)

    updated = await storage.update_guild_settings(GUILD, error_channel_id=123, mention_policy="users")
    assert updated == GuildSettings(GUILD, error_channel_id=123, mention_policy="users")
    updated = await storage.update_guild_settings(GUILD, allow_bot_authors=True, error_channel_id=None)
    assert updated == GuildSettings(GUILD, mention_policy="users", allow_bot_authors=True)
    assert await storage.get_guild_settings(GUILD) == updated
    assert await storage.get_guild_settings(OTHER_GUILD) == GuildSettings(OTHER_GUILD)


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"prefix": "!"}, "unknown server setting 'prefix'"),
        ({"guild_id": 5}, "unknown server setting 'guild_id'"),
        ({"log_channel_id": "123"}, "must be a channel id"),
        ({"log_channel_id": True}, "must be a channel id"),
        ({"mention_policy": "everyone"}, "mention_policy must be one of none, users"),
        ({"allow_bot_authors": 1}, "must be true or false"),
        ({"mention_policy": "users", "error_channel_id": -1}, "must be a channel id"),
    ],
)
async def test_bad_guild_settings_are_refused_and_change_nothing(
    storage: Storage, changes: dict, message: str
) -> None:
    with pytest.raises(StorageError, match=message):
        await storage.update_guild_settings(GUILD, **changes)
    assert await storage.get_guild_settings(GUILD) == GuildSettings(GUILD)


# --- run log -------------------------------------------------------------------------------------------


async def test_run_log_is_newest_first_and_filters_by_script(storage: Storage) -> None:
    await storage.append_run_log(GUILD, "a", "print", "first")
    await storage.append_run_log_many(
        [RunLogLine(GUILD, "b", "error", "boom at line 3"), RunLogLine(GUILD, "a", "print", "second")]
    )
    await storage.append_run_log(OTHER_GUILD, "a", "print", "elsewhere")
    entries = await storage.recent_run_log(GUILD)
    assert [(e.script_name, e.kind, e.message) for e in entries] == [
        ("a", "print", "second"),
        ("b", "error", "boom at line 3"),
        ("a", "print", "first"),
    ]
    assert all(e.guild_id == GUILD for e in entries)
    assert [e.message for e in await storage.recent_run_log(GUILD, "a", limit=1)] == ["second"]
    with pytest.raises(StorageError, match="positive whole number"):
        await storage.recent_run_log(GUILD, limit=0)


async def test_run_log_keeps_the_newest_entries_of_each_guild(storage: Storage) -> None:
    await storage.append_run_log(OTHER_GUILD, "a", "print", "other guild")
    total = RUN_LOG_KEEP_PER_GUILD + 30
    for start in range(0, total, 50):
        await storage.append_run_log_many(
            RunLogLine(GUILD, "a", "print", f"line {n}") for n in range(start, min(start + 50, total))
        )
    kept = await storage.recent_run_log(GUILD, limit=total)
    assert [e.message for e in kept] == [f"line {n}" for n in reversed(range(30, total))]
    assert [e.message for e in await storage.recent_run_log(OTHER_GUILD)] == ["other guild"]


async def test_a_batch_with_a_bad_kind_writes_nothing(storage: Storage) -> None:
    with pytest.raises(StorageError, match="run log kind must be one of error, print"):
        await storage.append_run_log_many(
            [RunLogLine(GUILD, "a", "print", "ok"), RunLogLine(GUILD, "a", "debug", "bad")]
        )
    assert await storage.recent_run_log(GUILD) == []


async def test_long_run_log_messages_are_clipped(storage: Storage) -> None:
    await storage.append_run_log(GUILD, "a", "print", "x" * (RUN_LOG_MESSAGE_MAX_CHARS + 500))
    (entry,) = await storage.recent_run_log(GUILD)
    assert len(entry.message) == RUN_LOG_MESSAGE_MAX_CHARS
    assert entry.message.endswith("…")


# --- KV administration ---------------------------------------------------------------------------------


async def test_kv_admin_sees_what_scripts_wrote_and_can_delete_it(storage: Storage) -> None:
    kv = storage.kv_store
    kv.set(GUILD, "warnings:1", 2)
    kv.set(GUILD, "warnings:2", 1)
    kv.set(GUILD, "config", {"strict": True})
    kv.set(OTHER_GUILD, "warnings:3", 5)
    assert await storage.kv_list(GUILD) == ["config", "warnings:1", "warnings:2"]
    assert await storage.kv_list(GUILD, "warnings:", limit=1) == ["warnings:1"]
    assert await storage.kv_get(GUILD, "config") == {"strict": True}
    assert await storage.kv_delete(GUILD, "warnings:1") is True
    assert await storage.kv_delete(GUILD, "warnings:1") is False
    assert kv.get(GUILD, "warnings:1") is None
    with pytest.raises(KVError, match="empty"):
        await storage.kv_get(GUILD, "")


async def test_kv_admin_applies_the_stores_expiry(storage: Storage, tmp_path: Path) -> None:
    # A store whose clock runs 100 s behind writes a key that expired 90 s ago in real time.
    with KVStore(tmp_path / "warden.db", LIMITS, clock=lambda: time.time() - 100) as behind:
        behind.set(GUILD, "stale", 1, ttl_seconds=10)
        behind.set(GUILD, "fresh", 1, ttl_seconds=1000)
    assert await storage.kv_list(GUILD) == ["fresh"]
    assert await storage.kv_get(GUILD, "stale") is None
    assert await storage.kv_delete(GUILD, "stale") is False


# --- concurrency ---------------------------------------------------------------------------------------


async def test_concurrent_saves_get_distinct_consecutive_versions(storage: Storage) -> None:
    saves = [storage.save_script(GUILD, "busy", f"return {{}} -- {n}", n, ["message"]) for n in range(30)]
    records = await asyncio.gather(*saves)
    assert sorted(r.version for r in records) == list(range(1, 31))
    history = await storage.script_history(GUILD, "busy")
    assert [v.version for v in history] == list(range(30, 0, -1))
    assert (await storage.get_script(GUILD, "busy")).version == 30


async def test_concurrent_creates_cannot_pass_the_script_quota_together(storage: Storage) -> None:
    saves = [storage.save_script(GUILD, f"s{n}", "return {}", AUTHOR, ["message"]) for n in range(12)]
    results = await asyncio.gather(*saves, return_exceptions=True)
    assert sum(isinstance(r, QuotaExceeded) for r in results) == 12 - LIMITS.max_scripts_per_guild
    assert len(await storage.list_scripts(GUILD)) == LIMITS.max_scripts_per_guild


async def test_two_connections_saving_at_once_never_share_a_version(tmp_path: Path) -> None:
    path = tmp_path / "warden.db"
    async with await Storage.open(path, LIMITS) as one, await Storage.open(path, LIMITS) as two:
        saves = [
            (one if n % 2 else two).save_script(GUILD, "busy", f"return {{}} -- {n}", n, ["message"])
            for n in range(20)
        ]
        records = await asyncio.gather(*saves)
        assert sorted(r.version for r in records) == list(range(1, 21))
        creates = [
            (one if n % 2 else two).save_script(OTHER_GUILD, f"s{n}", "return {}", n, ["message"])
            for n in range(10)
        ]
        results = await asyncio.gather(*creates, return_exceptions=True)
        assert sum(not isinstance(r, BaseException) for r in results) == LIMITS.max_scripts_per_guild


async def test_cancelled_saves_leave_whole_versions_and_a_usable_storage(storage: Storage) -> None:
    for delay in range(12):
        task = asyncio.create_task(storage.save_script(GUILD, "s", f"return {{}} -- {delay}", 1, ["message"]))
        for _ in range(delay):
            await asyncio.sleep(0)
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
    final = await storage.save_script(GUILD, "s", "return {} -- final", 1, ["message"])
    history = await storage.script_history(GUILD, "s")
    assert [v.version for v in history] == list(range(final.version, 0, -1))
    assert (await storage.get_script(GUILD, "s")).source == "return {} -- final"


# --- durability ----------------------------------------------------------------------------------------


async def test_writes_survive_close_and_reopen(tmp_path: Path) -> None:
    path = tmp_path / "warden.db"
    async with await Storage.open(path, LIMITS) as storage:
        await storage.save_script(GUILD, "s", "return {}", AUTHOR, ["message"], ["discord:reply"])
        await storage.update_guild_settings(GUILD, log_channel_id=77)
        await storage.append_run_log(GUILD, "s", "error", "oops")
        storage.kv_store.set(GUILD, "k", [1, 2])
    async with await Storage.open(path, LIMITS) as storage:
        assert (await storage.get_script(GUILD, "s")).capabilities == ("discord:reply",)
        assert (await storage.get_guild_settings(GUILD)).log_channel_id == 77
        assert [e.message for e in await storage.recent_run_log(GUILD)] == ["oops"]
        assert await storage.kv_get(GUILD, "k") == [1, 2]


def kill_after_acknowledgements(path: Path, mode: str, wanted: int) -> int:
    """Run the durability child, SIGKILL it as soon as it has acknowledged ``wanted`` writes, and
    return the last number it acknowledged."""
    child = subprocess.Popen(
        [sys.executable, "-m", "tests.support.durability_child", str(path), mode],
        cwd=REPO_ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        last = 0
        for _ in range(wanted):
            line = child.stdout.readline()
            assert line.startswith("ack "), f"child said {line!r}; stderr: {child.stderr.read()}"
            last = int(line.split()[1])
        child.kill()
    finally:
        child.kill()
        child.wait(timeout=30)
        child.stdout.close()
        child.stderr.close()
    return last


def check_integrity(path: Path) -> None:
    with contextlib.closing(sqlite3.connect(path)) as conn:
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"


@pytest.mark.slow
def test_kv_writes_acknowledged_before_a_sigkill_are_kept(tmp_path: Path) -> None:
    path = tmp_path / "warden.db"
    with contextlib.closing(sqlite3.connect(path, isolation_level=None)) as conn:
        migrate(conn)
    acknowledged = kill_after_acknowledgements(path, "kv", 25)
    assert acknowledged == 25
    check_integrity(path)
    with KVStore(path, LIMITS) as kv:
        assert kv.get(durability_child.GUILD_ID, durability_child.COUNTER_KEY) >= acknowledged


@pytest.mark.slow
async def test_script_saves_acknowledged_before_a_sigkill_are_kept(tmp_path: Path) -> None:
    path = tmp_path / "warden.db"
    acknowledged = await asyncio.to_thread(kill_after_acknowledgements, path, "scripts", 25)
    assert acknowledged == 25
    await asyncio.to_thread(check_integrity, path)
    async with await Storage.open(path, LIMITS) as storage:
        script = await storage.get_script(durability_child.GUILD_ID, durability_child.SCRIPT_NAME)
        assert script.version >= acknowledged
        history = await storage.script_history(durability_child.GUILD_ID, durability_child.SCRIPT_NAME)
        assert [v.version for v in history] == list(range(script.version, 0, -1))
