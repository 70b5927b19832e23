"""Checking uploads and dry runs on the check lane, and translating in a child for the thread pool.

An upload is code nobody has run yet: its parsing, its translation and its top level all run on
what an admin sent. They run on the *check lane*, a worker that holds no guild's VM, so that a check
which takes its worker down (the supervisor's deadline kill, a crash) costs no guild anything but
that check. Under the thread strategies, translations are also made in a child process with a
deadline and a memory rlimit, so that a translation holding the GIL never holds the bot's process.
"""

from __future__ import annotations

import pytest

from lua_runtime.guild_vm import ScriptRejected, ScriptSource, translate_script
from lua_runtime.limits import SandboxLimits
from lua_runtime.luau import LuauSyntaxError, cached_translation
from lua_runtime.pool import InMemoryScripts, PoolConfig, VmPool, WorkerCrashed
from lua_runtime.translation_process import TranslationAborted, TranslationProcess
from tests.pool.conftest import COUNTER, counter, message, printed

#: A top level that never ends, under a budget the sandbox would allow for half a minute: only the
#: supervisor's deadline (set short below) can end it, which is what a stall in C code looks like.
ENDLESS_TOP_LEVEL = "while true do end\nreturn {}"
PATIENT = SandboxLimits(cpu_ms_per_event=30_000)
#: About 50 KiB of honest Luau: its translation takes far longer than the deadlines below allow.
BIG_SOURCE = "".join(f"local v{i}: number = ({i} + 1) * 2 -- {i}\n" for i in range(1500))


def _quick_deadline(strategy: str, **overrides: object) -> PoolConfig:
    settings: dict[str, object] = {
        "workers": 1,
        "guild_cpu_seconds": 600.0,
        "worker_deadline_seconds": 0.3,
        "worker_deadline_factor": 0.00001,
    }
    return PoolConfig(strategy=strategy, **(settings | overrides))  # type: ignore[arg-type]


async def test_an_upload_is_checked_on_the_check_lane_which_holds_no_vm() -> None:
    scripts = InMemoryScripts({1: [counter()]})
    async with VmPool(scripts, SandboxLimits(), PoolConfig(strategy="processpool", workers=1)) as pool:
        assert printed(await pool.dispatch(1, "message", message("a"))) == ["a:1"]
        run = await pool.load_script(1, ScriptSource("fresh", 'print("top")\n' + COUNTER))
        assert run.error is None and run.handled_events == ["message"] and run.output == ["top"]
        bad = await pool.load_script(1, ScriptSource("bad", "local x = = 1"))
        assert bad.error is not None and bad.error.kind == "syntax" and bad.error.line == 1
        stats = await pool.stats()
        [lane] = [worker for worker in stats.workers if worker.checks]
        assert lane.guilds == 0 and lane.resident_vms == 0
        # The guild's VM is where it was, untouched by the checks.
        assert printed(await pool.dispatch(1, "message", message("b"))) == ["b:2"]


async def test_a_check_that_outlives_its_deadline_costs_the_check_lane_only() -> None:
    scripts = InMemoryScripts({1: [counter()], 2: [counter()]})
    async with VmPool(scripts, PATIENT, _quick_deadline("processpool")) as pool:
        for guild in (1, 2):
            assert printed(await pool.dispatch(guild, "message", message("a"))) == ["a:1"]
        with pytest.raises(WorkerCrashed) as crashed:
            await pool.load_script(1, ScriptSource("endless", ENDLESS_TOP_LEVEL))
        assert crashed.value.caused_here and crashed.value.overran
        # Nobody lost a VM: both guilds' counters go on.
        for guild in (1, 2):
            assert printed(await pool.dispatch(guild, "message", message("b"))) == ["b:2"]
        # The next check starts a new check lane.
        run = await pool.load_script(2, ScriptSource("fine", COUNTER))
        assert run.error is None
        # A dry run is a check too: the same lane, the same deadline.
        with pytest.raises(WorkerCrashed) as crashed:
            await pool.dry_run(2, ScriptSource("endless", ENDLESS_TOP_LEVEL), "message")
        assert crashed.value.caused_here
        assert printed(await pool.dispatch(2, "message", message("c"))) == ["c:3"]


async def test_a_guild_whose_event_took_its_worker_down_moves_to_the_slow_lane() -> None:
    stuck = "return { message = function(msg) if msg.content == 'stall' then while true do end end end }"
    scripts = InMemoryScripts({1: [ScriptSource("stuck", stuck)], 2: [counter()]})
    async with VmPool(scripts, PATIENT, _quick_deadline("processpool")) as pool:
        assert printed(await pool.dispatch(2, "message", message("a"))) == ["a:1"]
        await pool.dispatch(1, "message", message("warm up"))
        with pytest.raises(WorkerCrashed) as crashed:
            await pool.dispatch(1, "message", message("stall"))
        assert crashed.value.caused_here and crashed.value.overran
        # Guild 2 shared the worker and lost its VM with it (the deadline is the second wall);
        # guild 1's next VM is built on the slow lane, away from it.
        await pool.dispatch(1, "message", message("calm"))
        assert printed(await pool.dispatch(2, "message", message("b"))) == ["b:1"]
        stats = await pool.stats()
        where = {guild.guild_id: guild.slow_lane for guild in stats.guilds}
        assert where == {1: True, 2: False}
        # Its replacement was not held back as a worker that died at setup would be.
        assert any(not w.slow_lane and not w.checks for w in stats.workers)


async def test_thread_pool_checks_translate_in_a_child_with_a_deadline() -> None:
    config = _quick_deadline("threadpool", worker_deadline_seconds=0.000001)
    source = COUNTER + BIG_SOURCE
    async with VmPool(InMemoryScripts({}), SandboxLimits(), config) as pool:
        run = await pool.load_script(1, ScriptSource("slow", source))
    assert run.error is not None and run.error.kind == "limit"
    assert "took too long to compile" in run.error.message
    assert cached_translation(source) is None


async def test_thread_pool_checks_translate_once_and_the_bot_caches_the_result() -> None:
    source = COUNTER + "\n-- translated in the child: " + "y" * 40
    async with VmPool(
        InMemoryScripts({}), SandboxLimits(), PoolConfig(strategy="threadpool", workers=1)
    ) as pool:
        run = await pool.load_script(1, ScriptSource("fresh", source))
    assert run.error is None and run.handled_events == ["message"]
    assert cached_translation(source) is not None


def test_the_translation_child_answers_syntax_errors_and_comes_back_after_a_kill() -> None:
    translator = TranslationProcess(deadline_seconds=30)
    try:
        with pytest.raises(LuauSyntaxError) as error:
            translator.translate("local a = 1\nlocal = 2\n")
        assert error.value.line == 2
        assert translator.started == 1
        translator.deadline_seconds = 0  # no wait at all: the answer cannot be there yet
        with pytest.raises(TranslationAborted, match="took too long to compile"):
            translator.translate(BIG_SOURCE)
        translator.deadline_seconds = 30
        assert "local c" in translator.translate("local c = 3\n")
        assert translator.started == 2
    finally:
        translator.close()


def test_a_translation_that_runs_out_of_memory_costs_the_child_only() -> None:
    # An address space too small for anything more: the child fails as soon as the translation of
    # a big source needs memory.
    translator = TranslationProcess(deadline_seconds=30, memory_bytes=1)
    try:
        with pytest.raises(TranslationAborted, match="memory"):
            translator.translate(BIG_SOURCE + "-- for the memory test\n")
    finally:
        translator.close()


def test_a_translation_that_runs_out_of_memory_in_a_worker_process_rejects_the_script() -> None:
    # In a worker process, the memory rlimit turns a hostile translation into a MemoryError.
    def exhausted(source: str) -> str:
        raise MemoryError

    with pytest.raises(ScriptRejected) as rejected:
        translate_script(ScriptSource("huge", "local x = 1"), SandboxLimits(), exhausted)
    assert rejected.value.error.kind == "limit"
    assert rejected.value.error.message == (
        "this script needs too much memory to compile (11 bytes); simplify or split it"
    )
