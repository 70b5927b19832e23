"""The synchronous KV store: round trips, value rules, quotas, expiry, atomic incr across threads."""

from __future__ import annotations

import contextlib
import math
import sqlite3
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bot.storage import migrate
from lua_runtime.kv_store import MAX_VALUE_DEPTH, DryRunKV, KVError, KVQuotaExceeded, KVStore
from lua_runtime.limits import SandboxLimits

GUILD = 1
OTHER_GUILD = 2
SMALL = SandboxLimits(kv_max_keys=3, kv_max_key_bytes=8, kv_max_value_bytes=64, kv_max_total_bytes=100)


class FakeClock:
    """Unix time that tests move by hand, so expiry is tested without sleeping."""

    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    path = tmp_path / "warden.db"
    with contextlib.closing(sqlite3.connect(path, isolation_level=None)) as conn:
        migrate(conn)
    return path


@pytest.fixture
def store(db_path: Path) -> Iterator[KVStore]:
    with KVStore(db_path, SandboxLimits()) as kv:
        yield kv


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def timed(db_path: Path, clock: FakeClock) -> Iterator[KVStore]:
    with KVStore(db_path, SandboxLimits(), clock=clock) as kv:
        yield kv


@pytest.fixture
def small(db_path: Path) -> Iterator[KVStore]:
    with KVStore(db_path, SMALL) as kv:
        yield kv


def usage_in_table(path: Path, guild_id: int) -> tuple[int, int]:
    with contextlib.closing(sqlite3.connect(path)) as conn:
        row = conn.execute(
            "SELECT key_count, total_bytes FROM kv_usage WHERE guild_id = ?", (guild_id,)
        ).fetchone()
    return row or (0, 0)


def usage_recomputed(path: Path, guild_id: int) -> tuple[int, int]:
    with contextlib.closing(sqlite3.connect(path)) as conn:
        return conn.execute(
            "SELECT count(*), coalesce(sum(length(CAST(key AS BLOB)) + length(CAST(value AS BLOB))), 0)"
            " FROM kv WHERE guild_id = ?",
            (guild_id,),
        ).fetchone()


def rows_in_table(path: Path, guild_id: int) -> int:
    with contextlib.closing(sqlite3.connect(path)) as conn:
        return conn.execute("SELECT count(*) FROM kv WHERE guild_id = ?", (guild_id,)).fetchone()[0]


# --- round trips -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "value",
    ["text", "", "ünïcødé ✓", 0, -7, 2**63 - 1, -(2**63), 1.5, 1.0, True, False, [1, "a", [True]],
     {"nested": {"list": [1.25, {"deep": "yes"}]}, "n": 3}, [], {}],
)  # fmt: skip
def test_values_come_back_equal_and_of_the_same_type(store: KVStore, value: object) -> None:
    store.set(GUILD, "k", value)
    got = store.get(GUILD, "k")
    assert got == value
    assert type(got) is type(value)


plain_values = st.recursive(
    st.text(max_size=10)
    | st.integers(min_value=-(2**63), max_value=2**63 - 1)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.booleans(),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=5), children, max_size=4)
    ),
    max_leaves=12,
)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(value=plain_values)
def test_any_plain_value_round_trips(store: KVStore, value: object) -> None:
    store.set(GUILD, "value", value)
    assert store.get(GUILD, "value") == value


def test_missing_key_reads_as_none(store: KVStore) -> None:
    assert store.get(GUILD, "nothing") is None


def test_set_replaces_and_delete_reports_whether_a_key_was_there(store: KVStore) -> None:
    store.set(GUILD, "k", "first")
    store.set(GUILD, "k", "second")
    assert store.get(GUILD, "k") == "second"
    assert store.delete(GUILD, "k") is True
    assert store.get(GUILD, "k") is None
    assert store.delete(GUILD, "k") is False


def test_guilds_do_not_see_each_others_keys(store: KVStore) -> None:
    store.set(GUILD, "shared-name", "mine")
    store.set(OTHER_GUILD, "shared-name", "theirs")
    assert store.get(GUILD, "shared-name") == "mine"
    assert store.get(OTHER_GUILD, "shared-name") == "theirs"
    store.delete(GUILD, "shared-name")
    assert store.get(OTHER_GUILD, "shared-name") == "theirs"


def test_writes_are_there_for_a_new_connection_after_close(db_path: Path) -> None:
    with KVStore(db_path, SandboxLimits()) as kv:
        kv.set(GUILD, "kept", {"a": 1})
    with KVStore(db_path, SandboxLimits()) as kv:
        assert kv.get(GUILD, "kept") == {"a": 1}


# --- value and key rules ---------------------------------------------------------------------------------


def nested(depth: int) -> list:
    value: list = []
    for _ in range(depth):
        value = [value]
    return value


@pytest.mark.parametrize(
    ("value", "message"),
    [
        (None, "use kv.delete"),
        ([1, None], "holds nil"),
        ({"a": None}, "'a' in the value is nil"),
        ({1: "x"}, "table keys in values must be strings"),
        (math.nan, "finite"),
        ([math.inf], "finite"),
        (2**63, "64 bits"),
        (b"bytes", "got bytes"),
        (object(), "got object"),
        ((1, 2), "got tuple"),
        (nested(MAX_VALUE_DEPTH + 1), f"more than {MAX_VALUE_DEPTH} deep"),
        ("\ud800", "not valid UTF-8"),
    ],
)
def test_values_that_are_not_plain_data_are_refused(store: KVStore, value: object, message: str) -> None:
    with pytest.raises(KVError, match=message):
        store.set(GUILD, "k", value)
    assert store.get(GUILD, "k") is None


def test_nesting_up_to_the_limit_is_accepted(store: KVStore) -> None:
    store.set(GUILD, "deep", nested(MAX_VALUE_DEPTH))
    assert store.get(GUILD, "deep") == nested(MAX_VALUE_DEPTH)


@pytest.mark.parametrize(("key", "message"), [(5, "keys are strings, got number"), ("", "empty")])
def test_bad_keys_are_refused_by_every_call(store: KVStore, key: object, message: str) -> None:
    for call in (
        lambda: store.get(GUILD, key),
        lambda: store.set(GUILD, key, 1),
        lambda: store.delete(GUILD, key),
        lambda: store.incr(GUILD, key),
    ):
        with pytest.raises(KVError, match=message):
            call()


@pytest.mark.parametrize("ttl", [0, -1, math.inf, math.nan, True, "10"])
def test_ttl_must_be_a_positive_finite_number(store: KVStore, ttl: object) -> None:
    with pytest.raises(KVError, match="ttl must be a positive number"):
        store.set(GUILD, "k", 1, ttl_seconds=ttl)


# --- quotas --------------------------------------------------------------------------------------------


def test_key_length_counts_utf8_bytes(small: KVStore) -> None:
    small.set(GUILD, "12345678", 1)
    small.set(GUILD, "éééé", 1)  # 8 bytes
    with pytest.raises(KVQuotaExceeded, match="the key is 9 bytes long; the limit is 8"):
        small.set(GUILD, "ééééx", 1)
    with pytest.raises(KVQuotaExceeded):
        small.get(GUILD, "123456789")


def test_value_size_counts_encoded_utf8_bytes(small: KVStore) -> None:
    small.set(GUILD, "v", "x" * 62)  # 64 bytes with its quotes
    with pytest.raises(KVQuotaExceeded, match="the value is 65 bytes once encoded; the limit is 64"):
        small.set(GUILD, "v", "é" * 31 + "x")
    assert small.get(GUILD, "v") == "x" * 62


def test_key_count_quota_counts_only_new_keys(small: KVStore) -> None:
    for key in ("a", "b", "c"):
        small.set(GUILD, key, 1)
    with pytest.raises(KVQuotaExceeded, match=r"kv quota: this server has 3 keys \(the limit\)"):
        small.set(GUILD, "d", 1)
    with pytest.raises(KVQuotaExceeded):
        small.incr(GUILD, "d")
    small.set(GUILD, "a", 2)  # replacing a key is not a new key
    small.set(OTHER_GUILD, "d", 1)  # another guild has its own quota
    small.delete(GUILD, "b")
    small.set(GUILD, "d", 1)
    assert small.keys(GUILD) == ["a", "c", "d"]


def test_total_bytes_quota_covers_keys_and_values(small: KVStore, db_path: Path) -> None:
    small.set(GUILD, "a", "x" * 47)  # 1 + 49 = 50 bytes
    small.set(GUILD, "b", "y" * 47)  # 100 bytes: exactly the limit
    with pytest.raises(KVQuotaExceeded, match="bring this server's kv data to 102 bytes; the limit is 100"):
        small.set(GUILD, "c", 1)
    with pytest.raises(KVQuotaExceeded):
        small.set(GUILD, "b", "y" * 48)
    small.set(GUILD, "b", "short")  # shrinking is always allowed
    small.set(GUILD, "c", 1)
    assert usage_in_table(db_path, GUILD) == (3, 50 + 8 + 2)


def test_writes_that_do_not_grow_the_total_pass_above_a_lowered_limit(db_path: Path) -> None:
    with KVStore(db_path, SandboxLimits()) as roomy:
        roomy.set(GUILD, "big", "x" * 200)
    with KVStore(db_path, SMALL) as lowered:
        lowered.set(GUILD, "big", "x" * 10)
        assert lowered.get(GUILD, "big") == "x" * 10


kv_operations = st.lists(
    st.tuples(
        st.sampled_from(["set", "delete", "incr", "set_ttl"]),
        st.sampled_from(["a", "b", "ключ", "d"]),
        st.text(max_size=20),
        st.sampled_from([OTHER_GUILD, GUILD]),
    ),
    max_size=25,
)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(operations=kv_operations)
def test_usage_totals_always_match_the_rows(
    timed: KVStore, clock: FakeClock, db_path: Path, operations: list[tuple[str, str, str, int]]
) -> None:
    for operation, key, text, guild_id in operations:
        clock.now += 1
        with contextlib.suppress(KVError):  # incr on text is refused; the totals must still hold
            if operation == "set":
                timed.set(guild_id, key, text)
            elif operation == "set_ttl":
                timed.set(guild_id, key, [text], ttl_seconds=2)
            elif operation == "delete":
                timed.delete(guild_id, key)
            else:
                timed.incr(guild_id, key, 2)
    for guild_id in (GUILD, OTHER_GUILD):
        assert usage_in_table(db_path, guild_id) == usage_recomputed(db_path, guild_id)


# --- expiry --------------------------------------------------------------------------------------------


def test_keys_expire_after_their_ttl_and_are_purged(timed: KVStore, clock: FakeClock, db_path: Path) -> None:
    timed.set(GUILD, "temp", "soon gone", ttl_seconds=10)
    timed.set(GUILD, "kept", "stays")
    clock.now += 9.5
    assert timed.get(GUILD, "temp") == "soon gone"
    assert timed.keys(GUILD) == ["kept", "temp"]
    clock.now += 0.5
    assert timed.keys(GUILD) == ["kept"]
    assert rows_in_table(db_path, GUILD) == 2  # listing does not write
    assert timed.get(GUILD, "temp") is None
    assert rows_in_table(db_path, GUILD) == 1  # reading an expired key purged it
    assert usage_in_table(db_path, GUILD) == usage_recomputed(db_path, GUILD)


def test_expired_keys_hold_no_quota(db_path: Path, clock: FakeClock) -> None:
    with KVStore(db_path, SMALL, clock=clock) as kv:
        for key in ("a", "b", "c"):
            kv.set(GUILD, key, 1, ttl_seconds=5)
        clock.now += 5
        kv.set(GUILD, "d", 1)
        assert kv.keys(GUILD) == ["d"]


def test_set_without_ttl_clears_an_expiry(timed: KVStore, clock: FakeClock) -> None:
    timed.set(GUILD, "k", 1, ttl_seconds=5)
    timed.set(GUILD, "k", 2)
    clock.now += 100
    assert timed.get(GUILD, "k") == 2


def test_deleting_an_expired_key_reports_nothing_deleted(timed: KVStore, clock: FakeClock) -> None:
    timed.set(GUILD, "k", 1, ttl_seconds=5)
    clock.now += 6
    assert timed.delete(GUILD, "k") is False


# --- incr ----------------------------------------------------------------------------------------------


def test_incr_counts_from_zero_and_keeps_number_types(store: KVStore) -> None:
    assert store.incr(GUILD, "n") == 1
    assert store.incr(GUILD, "n", 4) == 5
    assert store.incr(GUILD, "n", -10) == -5
    assert type(store.get(GUILD, "n")) is int
    assert store.incr(GUILD, "f", 0.5) == 0.5
    assert store.incr(GUILD, "f", 2) == 2.5
    assert type(store.get(GUILD, "f")) is float


def test_incr_refuses_non_numbers(store: KVStore) -> None:
    store.set(GUILD, "text", "3")
    with pytest.raises(KVError, match="the value at 'text' is a string, not a number"):
        store.incr(GUILD, "text")
    store.set(GUILD, "flag", True)
    with pytest.raises(KVError, match="is a boolean, not a number"):
        store.incr(GUILD, "flag")
    with pytest.raises(KVError, match="the amount must be a number, got boolean"):
        store.incr(GUILD, "n", True)
    store.set(GUILD, "big", 2**63 - 1)
    with pytest.raises(KVError, match="64 bits"):
        store.incr(GUILD, "big")
    assert store.get(GUILD, "big") == 2**63 - 1


def test_incr_keeps_the_expiry_and_restarts_after_it(timed: KVStore, clock: FakeClock) -> None:
    timed.set(GUILD, "warnings", 2, ttl_seconds=60)
    clock.now += 30
    assert timed.incr(GUILD, "warnings") == 3
    clock.now += 30
    assert timed.get(GUILD, "warnings") is None
    assert timed.incr(GUILD, "warnings") == 1


# --- keys ----------------------------------------------------------------------------------------------


def test_keys_filters_by_prefix_literally_and_in_order(store: KVStore) -> None:
    for key in ("warn:2", "warn:1", "Warn:3", "warm", "w*x", "w?y", "w[z", "other"):
        store.set(GUILD, key, 1)
    assert store.keys(GUILD, "warn:") == ["warn:1", "warn:2"]
    assert store.keys(GUILD, "w*") == ["w*x"]
    assert store.keys(GUILD, "w?") == ["w?y"]
    assert store.keys(GUILD, "w[") == ["w[z"]
    assert store.keys(GUILD, "warn:", limit=1) == ["warn:1"]
    assert store.keys(GUILD) == sorted(["warn:2", "warn:1", "Warn:3", "warm", "w*x", "w?y", "w[z", "other"])
    assert store.keys(OTHER_GUILD) == []


@pytest.mark.parametrize(("prefix", "limit"), [("", 0), ("", -1), ("", True), (3, 10)])
def test_keys_refuses_bad_arguments(store: KVStore, prefix: object, limit: object) -> None:
    with pytest.raises(KVError):
        store.keys(GUILD, prefix, limit)


# --- concurrency ---------------------------------------------------------------------------------------


def run_threads(count: int, work) -> list[BaseException]:
    """Run ``work(index)`` on ``count`` threads started together; return what they raised."""
    start = threading.Barrier(count)
    errors: list[BaseException] = []

    def body(index: int) -> None:
        start.wait()
        try:
            work(index)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=body, args=(i,)) for i in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return errors


def test_incr_from_many_connections_loses_no_update(db_path: Path) -> None:
    stores = [KVStore(db_path, SandboxLimits()) for _ in range(4)]
    seen: list[int] = []

    def work(index: int) -> None:
        for _ in range(50):
            seen.append(stores[index].incr(GUILD, "hits"))

    try:
        assert run_threads(4, work) == []
        assert stores[0].get(GUILD, "hits") == 200
        assert sorted(seen) == list(range(1, 201))
    finally:
        for kv in stores:
            kv.close()


def test_one_store_shared_by_threads_loses_no_update(store: KVStore) -> None:
    assert run_threads(4, lambda _: [store.incr(GUILD, "hits", 2) for _ in range(50)]) == []
    assert store.get(GUILD, "hits") == 400


def test_racing_new_keys_cannot_pass_the_key_quota_together(db_path: Path) -> None:
    stores = [KVStore(db_path, SMALL) for _ in range(6)]
    try:
        errors = run_threads(6, lambda index: stores[index].set(GUILD, f"k{index}", index))
        assert len(errors) == 3
        assert all(isinstance(error, KVQuotaExceeded) for error in errors)
        assert len(stores[0].keys(GUILD)) == 3
    finally:
        for kv in stores:
            kv.close()


@pytest.mark.slow
def test_kv_store_imports_neither_discord_nor_the_bot() -> None:
    code = (
        "import sys, lua_runtime.kv_store; "
        "leaked = sorted(m for m in sys.modules if m.split('.')[0] in ('discord', 'bot')); "
        "print(leaked); sys.exit(bool(leaked))"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr


# --- dry runs ---------------------------------------------------------------------------------------


def test_a_dry_run_meets_the_quotas_of_the_real_data_plus_its_own_writes(small: KVStore) -> None:
    small.set(GUILD, "a", 1)
    small.set(GUILD, "b", 1)
    run = DryRunKV(SMALL, small)
    run.set(GUILD, "a", 2)  # replaces a real key: no new key
    run.set(GUILD, "c", 1)
    with pytest.raises(KVQuotaExceeded, match=r"this server has 3 keys \(the limit\)"):
        run.set(GUILD, "d", 1)
    assert run.delete(GUILD, "b")
    run.set(GUILD, "d", 1)  # the run freed a key
    assert small.keys(GUILD) == ["a", "b"] and small.get(GUILD, "a") == 1  # nothing written


def test_a_dry_run_without_a_store_counts_its_own_writes() -> None:
    run = DryRunKV(SMALL)
    for key in ("a", "b", "c"):
        run.incr(GUILD, key)
    with pytest.raises(KVQuotaExceeded, match="3 keys"):
        run.incr(GUILD, "d")
    run.set(GUILD, "b", "x" * 40)
    with pytest.raises(KVQuotaExceeded, match="bring this server's kv data to 108 bytes"):
        run.set(GUILD, "a", "x" * 60)
    run.set(OTHER_GUILD, "a", 1)  # another guild has its own quota
