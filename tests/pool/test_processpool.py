"""The ``processpool`` strategy: the same pool, with each worker a process that can die alone.

Faults are real: a worker SIGKILLs itself in the middle of an event, aborts through lupa's
out-of-memory panic, or stalls in Lua's C pattern matcher until the supervisor kills it. Worker
processes take a while to start, so two pools are shared by the module's tests; each test uses its
own guild ids and compares crash counts with what it found, so that the tests stay independent.
"""

from __future__ import annotations

import asyncio
import functools
import multiprocessing
import sqlite3
import threading
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import pytest_asyncio

from bot.storage import Storage, StoredScripts
from lua_runtime.guild_vm import ScriptSource
from lua_runtime.kv_store import DryRunKV, KVStore
from lua_runtime.limits import SandboxLimits
from lua_runtime.pool import InMemoryScripts, PoolConfig, VmPool, WorkerCrashed
from lua_runtime.pool.processpool import WorkerDeadline
from tests.pool.conftest import LIMITS, SPINNER, counter, eventually, message, printed

pytestmark = pytest.mark.asyncio(loop_scope="module")

#: Counts its events, keeps each message's count in KV, and spins on "slow" messages for up to
#: ``slow`` seconds of CPU (well under the event budget), so that a kill lands in the middle.
KV_COUNTER = """
local kv = require("@warden/kv")
local seen = 0
return {
  message = function(msg)
    seen += 1
    kv.set(msg.content, seen)
    if msg.content == "slow" then
      local started = os.clock()
      while os.clock() - started < 1.5 do end
    end
    print(`{msg.content}:{seen}`)
  end,
}
"""

#: A budget that lets a "slow" event spin for its 1.5 s.
KV_LIMITS = SandboxLimits(cpu_ms_per_event=2000)

#: Guild ids of the stored pool's guilds.
STORED_GUILDS = range(100, 112)


def _config(**overrides: object) -> PoolConfig:
    # The tests count VM builds and crashes: no CPU budget gets in their way.
    return PoolConfig(strategy="processpool", workers=2, guild_cpu_seconds=60.0, **overrides)  # type: ignore[arg-type]


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def database(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[tuple[Path, Storage]]:
    path = tmp_path_factory.mktemp("processpool") / "warden.db"
    storage = await Storage.open(path, KV_LIMITS)
    for guild in STORED_GUILDS:
        await storage.save_script(guild, "counter", KV_COUNTER, 1, ["message"])
    yield path, storage
    await storage.close()


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def stored_pool(database: tuple[Path, Storage]) -> AsyncIterator[VmPool]:
    """Scripts and KV in a real SQLite file, each worker with its own connection, as the bot runs."""
    path, _ = database
    async with VmPool(functools.partial(StoredScripts, path, KV_LIMITS), KV_LIMITS, _config()) as pool:
        yield pool


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def quick_pool() -> AsyncIterator[VmPool]:
    """A 20 ms event budget and a 1 s deadline: stalls and noisy guilds cost little time."""
    scripts = InMemoryScripts({guild: [counter()] for guild in range(200, 210)})
    scripts.set(210, [ScriptSource("spin", SPINNER)])
    async with VmPool(scripts, LIMITS, _config(worker_deadline_seconds=1.0)) as pool:
        yield pool


async def _placement(pool: VmPool, guilds: range) -> dict[int, int]:
    """guild -> worker id, for the guilds that have a VM."""
    return {g.guild_id: g.worker_id for g in (await pool.stats()).guilds if g.guild_id in guilds}


def _workers() -> list[multiprocessing.Process]:
    return [p for p in multiprocessing.active_children() if p.name.startswith("warden-vm-")]


def _exists(pid: int) -> bool:
    """Whether the process is there, even as a zombie nobody reaped."""
    return Path(f"/proc/{pid}").exists()


# --- the pool's ordinary work ----------------------------------------------------------------------


async def test_events_reloads_resets_dry_runs_and_stats_work_from_worker_processes(
    stored_pool: VmPool, database: tuple[Path, Storage]
) -> None:
    pool, (_, storage) = stored_pool, database
    guilds = range(100, 104)
    # Each guild's events in one turn: they run in order, whatever else its worker runs.
    sent = {g: [pool.submit(g, "message", message(f"m{i}")) for i in range(20)] for g in guilds}
    for guild, futures in sent.items():
        assert [printed(await f) for f in futures] == [[f"m{i}:{i + 1}"] for i in range(20)], guild

    stats = await pool.stats()
    assert stats.strategy == "processpool"
    assert len({g.worker_id for g in stats.guilds if g.guild_id in guilds}) == 2  # spread over both
    assert all(w.resident_vms >= 2 and w.memory_bytes > 0 for w in stats.workers)

    await storage.save_script(
        100, "counter", 'return { message = function() print("v2") end }', 1, ["message"]
    )
    report = await pool.reload(100)
    assert report.ok and report.scripts == ("counter",)
    assert printed(await pool.dispatch(100, "message", message("x"))) == ["v2"]

    await pool.reset(101)
    assert printed(await pool.dispatch(101, "message", message("x"))) == ["x:1"]

    run = await pool.dry_run(
        102, ScriptSource("probe", 'return { message = function() print("probing") end }'), "message"
    )
    assert run.output == ["probing"]
    assert printed(await pool.dispatch(102, "message", message("x"))) == ["x:21"]  # its VM untouched


async def test_a_request_that_does_not_pickle_fails_alone(stored_pool: VmPool) -> None:
    with pytest.raises(ValueError, match="not plain data"):
        await stored_pool.dispatch(104, "message", {**message("x"), "content": threading.Lock()})
    assert printed(await stored_pool.dispatch(104, "message", message("y"))) == ["y:1"]


async def test_timers_run_in_the_worker_process_and_their_results_come_back() -> None:
    delayed = ScriptSource(
        "delayed", 'return { message = function(msg) task.delay(0.1, print, "later", msg.content) end }'
    )
    results: asyncio.Queue = asyncio.Queue()
    pool = VmPool(InMemoryScripts({1: [delayed]}), LIMITS, _config())
    pool.on_timer_result = lambda guild_id, result: results.put_nowait((guild_id, printed(result)))
    async with pool:
        assert printed(await pool.dispatch(1, "message", message("x"))) == []
        assert await asyncio.wait_for(results.get(), timeout=30) == (1, ["later\tx"])
        [guild] = (await pool.stats(1)).guilds
        assert (guild.events, guild.timer_runs) == (2, 1)


# --- a worker killed in the middle of an event --------------------------------------------------


async def test_a_worker_killed_mid_event_costs_its_open_requests_and_keeps_what_was_acknowledged(
    stored_pool: VmPool, database: tuple[Path, Storage]
) -> None:
    pool, (path, _) = stored_pool, database
    guilds = range(105, 111)
    await asyncio.gather(*(pool.dispatch(g, "message", message("a")) for g in guilds))
    placed = await _placement(pool, guilds)
    victim = 105
    doomed = sorted(g for g, w in placed.items() if w == placed[victim])
    spared = sorted(g for g, w in placed.items() if w != placed[victim])
    assert spared, "the guilds were spread over both workers"
    crashes = (await pool.stats()).worker_crashes

    # The victim's worker starts its 1.5 s "slow" event and dies 0.2 s into it; its other guilds'
    # events wait behind it and die too. The other worker's guilds go on meanwhile.
    slow = pool.submit(victim, "message", message("slow"))
    queued = {g: pool.submit(g, "message", message("b")) for g in doomed}
    meanwhile = {g: pool.submit(g, "message", message("b")) for g in spared}
    await pool.inject_fault(victim, "kill", delay_seconds=0.2)

    with pytest.raises(WorkerCrashed, match=r"crashed \(died: SIGKILL \(signal 9\)\)"):
        await slow
    for future in queued.values():
        with pytest.raises(WorkerCrashed):
            await future
    assert {g: printed(await f) for g, f in meanwhile.items()} == {g: ["b:2"] for g in spared}

    # What the acknowledged event wrote is in the database file, as any process sees it.
    store = KVStore(path, KV_LIMITS)
    try:
        assert store.get(victim, "a") == 1
    finally:
        store.close()

    # The crashed guilds start fresh VMs on live workers; the others keep theirs.
    after = await asyncio.gather(*(pool.dispatch(g, "message", message("c")) for g in guilds))
    assert {g: printed(r) for g, r in zip(guilds, after, strict=True)} == {
        g: ["c:1"] if g in doomed else ["c:3"] for g in guilds
    }
    stats = await pool.stats()
    assert stats.worker_crashes == crashes + 1
    workers = [w for w in stats.workers if not w.checks]
    assert len(workers) == 2 and placed[victim] not in {w.worker_id for w in workers}


# --- failures that only a process can contain ---------------------------------------------------


async def test_an_out_of_memory_abort_takes_down_only_its_own_worker(quick_pool: VmPool) -> None:
    pool = quick_pool
    guilds = range(200, 206)
    await asyncio.gather(*(pool.dispatch(g, "message", message("a")) for g in guilds))
    placed = await _placement(pool, guilds)
    victim = 200
    doomed = {g for g, w in placed.items() if w == placed[victim]}
    crashes = (await pool.stats()).worker_crashes

    in_flight = pool.submit(victim, "message", message("b"))
    await pool.inject_fault(victim, "abort")
    with pytest.raises(WorkerCrashed, match=r"died: SIGABRT \(signal 6\)"):
        await in_flight

    after = await asyncio.gather(*(pool.dispatch(g, "message", message("c")) for g in guilds))
    assert {g: printed(r) for g, r in zip(guilds, after, strict=True)} == {
        g: ["c:1"] if g in doomed else ["c:2"] for g in guilds
    }
    assert (await pool.stats()).worker_crashes == crashes + 1


async def test_a_stall_in_c_is_ended_by_the_deadline(quick_pool: VmPool) -> None:
    pool = quick_pool
    guilds = range(206, 210)
    await asyncio.gather(*(pool.dispatch(g, "message", message("a")) for g in guilds))
    placed = await _placement(pool, guilds)
    victim = 206
    doomed = {g for g, w in placed.items() if w == placed[victim]}

    # The stall and an event go to the worker in one batch (the fault's task sends first, in the
    # same turn): the event waits behind the stall and fails when the supervisor kills the worker.
    # The bound makes a missing supervisor fail the test instead of hanging it.
    neighbour = min(doomed - {victim})
    stall = asyncio.ensure_future(pool.inject_fault(victim, "stall"))
    in_flight = pool.submit(victim, "message", message("b"))
    beside_it = pool.submit(neighbour, "message", message("b"))
    await asyncio.wait_for(stall, timeout=30)
    with pytest.raises(WorkerCrashed, match=r"this server's script ran past the worker's deadline"):
        await in_flight
    # The neighbour is told it was someone else's script, and not whose.
    with pytest.raises(WorkerCrashed, match=r"stopped because another server's script ran past") as caught:
        await beside_it
    assert str(victim) not in str(caught.value)

    after = await asyncio.gather(*(pool.dispatch(g, "message", message("c")) for g in guilds))
    assert {g: printed(r) for g, r in zip(guilds, after, strict=True)} == {
        g: ["c:1"] if g in doomed else ["c:2"] for g in guilds
    }


async def test_a_guild_that_hits_the_cpu_limit_moves_to_a_slow_lane_process(quick_pool: VmPool) -> None:
    first = await quick_pool.dispatch(210, "message", message("spin"))
    # Its first time-limit hit sends it to the slow lane: a third process, started for it.
    second = await quick_pool.dispatch(210, "message", message("spin"))
    assert first.errors[0].kind == second.errors[0].kind == "time_limit"
    stats = await quick_pool.stats(210)
    [guild] = stats.guilds
    [lane] = [w for w in stats.workers if w.slow_lane]
    assert guild.slow_lane and guild.worker_id == lane.worker_id and lane.time_limit_hits == 1
    assert len(_workers()) >= 3


# --- starting and stopping ------------------------------------------------------------------------


async def test_closing_the_pool_leaves_no_process_and_no_thread(caplog: pytest.LogCaptureFixture) -> None:
    others = set(_workers())  # the shared pools' workers, and their threads
    other_threads = set(threading.enumerate())
    scripts = InMemoryScripts({1: [counter()], 2: [counter()]})
    pool = VmPool(scripts, LIMITS, _config())
    await pool.start()
    # Sent before the processes are up: the requests wait in their pipes.
    results = await asyncio.gather(*(pool.dispatch(g, "message", message("x")) for g in (1, 2)))
    assert [printed(r) for r in results] == [["x:1"], ["x:1"]]
    workers = set(_workers()) - others
    pids = [p.pid for p in workers]
    assert len(pids) == 2
    await pool.close()
    # Stopped cleanly (no crash reported) and reaped: not even a zombie is left.
    assert not [r for r in caplog.records if "crashed" in r.getMessage()]
    assert not [pid for pid in pids if _exists(pid)]
    assert set(_workers()) == others
    await eventually(lambda: set(threading.enumerate()) <= other_threads)


async def test_process_faults_need_the_process_pool() -> None:
    async with VmPool(
        InMemoryScripts({1: [counter()]}), LIMITS, PoolConfig(strategy="threadpool", workers=1)
    ) as pool:
        with pytest.raises(ValueError, match="only the processpool strategy"):
            await pool.inject_fault(1, "kill")


async def test_the_provider_must_pickle_and_the_deadline_must_be_positive() -> None:
    with pytest.raises(TypeError, match="must pickle"):
        VmPool(lambda: InMemoryScripts(), LIMITS, _config())
    # An in-memory provider's KV store stays behind in the bot: its scripts would lose @warden/kv.
    with pytest.raises(TypeError, match="KV store does not cross"):
        VmPool(InMemoryScripts({}, kv_store=DryRunKV(LIMITS)), LIMITS, _config())
    with pytest.raises(ValueError, match="worker_deadline_seconds"):
        _config(worker_deadline_seconds=0)
    assert WorkerDeadline(2.0, 10.0).seconds(0.1) == 2.0
    assert WorkerDeadline(2.0, 10.0).seconds(0.5) == 5.0


async def test_a_kv_write_waiting_for_the_database_lock_is_not_a_stall(tmp_path: Path) -> None:
    """SQLite's busy timeout (10 s) is longer than the supervisor's deadline: a write that waits for
    another connection's lock must not get its worker killed as if its script had stalled."""
    path = tmp_path / "warden.db"
    storage = await Storage.open(path, LIMITS)
    script = (
        'local kv = require("@warden/kv") return { message = function(msg) kv.set("k", msg.content) end }'
    )
    await storage.save_script(300, "writer", script, 1, ["message"])
    await storage.close()
    config = _config(worker_deadline_seconds=0.3, worker_deadline_factor=1.0)
    async with VmPool(functools.partial(StoredScripts, path, LIMITS), LIMITS, config) as pool:
        await pool.dispatch(300, "message", message("first"))  # the VM is built, its deadline 0.3 s
        locked, release = threading.Event(), threading.Event()

        def hold_the_write_lock() -> None:
            holder = sqlite3.connect(path, isolation_level=None)
            holder.execute("BEGIN IMMEDIATE")
            locked.set()
            release.wait(10)
            holder.execute("COMMIT")
            holder.close()

        holder = threading.Thread(target=hold_the_write_lock)
        holder.start()
        assert await asyncio.to_thread(locked.wait, 10)
        writing = pool.submit(300, "message", message("second"))
        await asyncio.sleep(1.0)  # the write waits on the lock, more than three deadlines long
        release.set()
        result = await asyncio.wait_for(writing, 10)
        holder.join(10)
        assert result.errors == []
        assert (await pool.stats()).worker_crashes == 0
    kv = KVStore(path, LIMITS)
    assert kv.get(300, "k") == "second"
