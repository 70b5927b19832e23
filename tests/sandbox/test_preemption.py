"""Asynchronous preemption: runs of single costly instructions end in the time limit on time.

The count hook looks at the clock every HOOK_PERIOD instructions, and some single instructions
cost time proportional to a string's length (``a < b`` on megabytes of NUL bytes calls ``strcoll``
once per NUL), so a loop of them would run for minutes between two looks. The watchdog of
``lua_runtime/preemption.py`` makes the hook fire at the next instruction once a call is past its
deadline. The attacks run in children (``attack.py``): each must end in ``time_limit`` within the
child's CPU allowance, wherever the loop hides (coroutines, task threads, protected calls, C
functions that call back into Lua, a script's top level, a timer, a worker process), and the VM must
still serve the witness. A control run without preemption shows the attacks are real.

The watchdog writes into the interpreter's memory from another thread, so it must never touch a
call that has ended: a stress test races thousands of short calls against it in threads, building
and dropping VMs as it goes, and another checks it leaves a finished call's threads alone.
"""

from __future__ import annotations

import ctypes
import json
import sys
import threading
import time
from typing import Any

import pytest

from lua_runtime import guild_vm, preemption
from lua_runtime.events import sample_payload
from lua_runtime.guild_vm import GuildVM, ScriptSource
from lua_runtime.limits import MiB, SandboxLimits
from lua_runtime.pool import InMemoryScripts, PoolConfig, VmPool
from tests.sandbox.attack import (
    CHILD_CPU_SECONDS,
    Attack,
    Case,
    ChildDied,
    assert_stopped,
    handler,
    run_attacks,
    run_plan,
)
from tests.sandbox.test_task_attacks import TaskAttack, run_task_attacks
from tests.support.sandbox_child import cap_resources, emit

#: Room for megabyte strings, and the small attacks' CPU budget.
LIMITS = SandboxLimits(cpu_ms_per_event=50, max_memory=16 * MiB)

#: A megabyte of NUL bytes: one comparison of it with itself costs about a million strcoll calls.
NULS = "local a = string.rep('\\0', 2^20)"

#: Handler bodies (line 2) that loop over single costly instructions.
COSTLY_LOOPS = {
    "<": f"{NULS} local n = 0 while true do if a < a then n += 1 end end",
    "<=": f"{NULS} local n = 0 while true do if a <= a then n += 1 end end",
    ">": f"{NULS} local n = 0 while true do if a > a then n += 1 end end",
    "== on long equal strings made apart": (
        "local a, b = string.rep('x', 2^22), string.rep('x', 2^21) .. string.rep('x', 2^21) "
        "local n = 0 while true do if a == b then n += 1 end end"
    ),
    "..": "local a = string.rep('x', 2^20) while true do local _ = a .. a end",
    "tonumber of a long string": "local s = string.rep(' ', 2^22) .. '1' while true do local _ = tonumber(s) end",
    "a table.sort comparator in Lua": (
        f"{NULS} local t = {{}} for i = 1, 300 do t[i] = 301 - i end "
        "table.sort(t, function(x, y) return a < a or x < y end)"
    ),
    "in a coroutine": f"{NULS} coroutine.wrap(function() while true do local _ = a < a end end)()",
    "100 coroutines deep": (
        f"{NULS} local function f(d) if d == 0 then while true do local _ = a < a end end "
        "coroutine.wrap(f)(d - 1) end f(100)"
    ),
    "after a thousand short coroutines": (
        f"{NULS} for _ = 1, 1000 do coroutine.wrap(function() end)() end "
        "coroutine.wrap(function() while true do local _ = a < a end end)()"
    ),
    "in a generator's body": f"{NULS} for _ in coroutine.wrap(function() while true do local _ = a < a end end) do end",
    "in a task.spawn thread": f"{NULS} task.spawn(function() while true do local _ = a < a end end)",
    "in a deferred thread": f"{NULS} task.defer(function() while true do local _ = a < a end end)",
    "under pcall": f"{NULS} pcall(function() while true do local _ = a < a end end)",
    "in a loop of pcalls": f"{NULS} while true do pcall(function() local _ = a < a end) end",
    "in an xpcall message handler": f"{NULS} xpcall(error, function() while true do local _ = a < a end end)",
    "in __index": f"{NULS} local _ = setmetatable({{}}, {{ __index = function() while true do local _ = a < a end end }}).x",
    "in a gsub replacement function": f"{NULS} string.gsub('abc', '.', function() while true do local _ = a < a end end)",
}


@pytest.fixture(scope="module")
def runs() -> dict[str, Attack]:
    cases = {name: Case(handler(body)) for name, body in COSTLY_LOOPS.items()}
    cases["at the top level"] = Case(f"{NULS} while true do local _ = a < a end return {{}}")
    cases["in a coroutine parked in one event and resumed in the next"] = Case(
        f"{NULS} local co\n"
        "return { message = function()\n"
        "  if co then coroutine.resume(co) return end co = coroutine.create(function() coroutine.yield() while true do local _ = a < a end end) coroutine.resume(co)\n"
        "end }",
        events=2,
    )
    return run_attacks(cases, LIMITS)


@pytest.mark.parametrize("name", list(COSTLY_LOOPS))
def test_a_loop_of_costly_instructions_ends_in_the_time_limit(runs: dict[str, Attack], name: str) -> None:
    result = runs[name]
    result.check_witness()
    assert_stopped(result.error, "time_limit", LIMITS)
    assert result.error.line == 2


def test_a_loop_of_costly_instructions_at_the_top_level_ends_at_load(runs: dict[str, Attack]) -> None:
    result = runs["at the top level"]
    result.check_witness()
    assert_stopped(result.load_error, "time_limit", LIMITS)
    assert result.load_error.line == 1


def test_a_coroutine_resumed_in_a_later_event_is_preempted_there(runs: dict[str, Attack]) -> None:
    result = runs["in a coroutine parked in one event and resumed in the next"]
    result.check_witness()
    first, second = result.events
    assert first.errors == []
    assert_stopped(second.error_of("attack"), "time_limit", LIMITS)


def test_without_preemption_the_same_loop_outruns_the_child() -> None:
    # The control: the count hook alone would let this loop run for minutes.
    with pytest.raises(ChildDied, match="used up its"):
        run_attacks({"<": Case(handler(COSTLY_LOOPS["<"]))}, LIMITS, preemption=False)


def test_a_loop_of_costly_instructions_in_a_timer_ends_in_the_time_limit() -> None:
    runs: dict[str, TaskAttack] = run_task_attacks(
        {
            "delayed": handler(f"{NULS} task.delay(0, function() while true do local _ = a < a end end)"),
            "after a wait": handler(f"{NULS} task.wait(0) while true do local _ = a < a end"),
        },
        LIMITS,
    )
    for result in runs.values():
        result.check_witness()
        assert result.event.errors == []
        [error] = result.attack_errors()
        assert_stopped(error, "time_limit", LIMITS)


# --- in worker processes ----------------------------------------------------------------------------


@pytest.mark.asyncio
async def test_a_worker_process_preempts_its_call_instead_of_being_killed() -> None:
    # Killed at the deadline, the worker would fail the event with WorkerCrashed.
    source = handler(COSTLY_LOOPS["<"])
    config = PoolConfig(
        strategy="processpool", workers=1, guild_cpu_seconds=60.0, worker_deadline_seconds=2.0
    )
    async with VmPool(InMemoryScripts({1: [ScriptSource("attack", source)]}), LIMITS, config) as pool:
        result = await pool.dispatch(1, "message", sample_payload("message"))
        assert_stopped(result.errors[0], "time_limit", LIMITS)
        run = await pool.dry_run(2, ScriptSource("attack", source), "message")
        assert_stopped(run.error, "time_limit", LIMITS)
        assert (await pool.stats()).worker_crashes == 0


# --- the watchdog's safety ---------------------------------------------------------------------------


def _hookcount(address: str) -> int:
    offset = preemption._instance().hookcount_offset
    assert offset is not None
    return ctypes.c_int.from_address(int(address, 16) + offset).value


def _set_hookcount(address: str, value: int) -> None:
    offset = preemption._instance().hookcount_offset
    assert offset is not None
    ctypes.c_int.from_address(int(address, 16) + offset).value = value


def _wait_until(condition: Any, what: str) -> None:
    # A bound on waiting, not a timing assertion: the watchdog looks every LOOK_SECONDS.
    for _ in range(1000):
        if condition():
            return
        time.sleep(0.01)
    raise AssertionError(f"never saw {what}")


def test_the_watchdog_pokes_a_call_past_its_deadline_and_never_one_that_ended() -> None:
    assert preemption.available(), "preemption must work on the platform the tests run on"
    vm = GuildVM(1, [ScriptSource("quiet", "return { message = function() end }")], LIMITS)
    vm.dispatch("message", sample_payload("message"))  # the runner exists and is registered
    watch = vm._sandbox.watch
    runner = watch.runner
    assert runner != "0"
    watchdog = preemption._instance()

    # A call attached to this thread, already past its deadline: the runner's count goes to 1.
    _set_hookcount(runner, 5000)
    slot = preemption.enter_call(watch, time.thread_time() - 1)
    try:
        _wait_until(lambda: _hookcount(runner) == 1, "the poke")
    finally:
        preemption.leave_call(slot, watch)

    # Ended: however long the watchdog goes on looking, it does not write there again. (Another
    # call, far from its deadline, keeps it looking.)
    _set_hookcount(runner, 5000)
    looks = watchdog.looks
    other = preemption.ThreadWatch()
    slot = preemption.enter_call(other, time.thread_time() + 60)
    try:
        _wait_until(lambda: watchdog.looks >= looks + 5, "five more looks")
    finally:
        preemption.leave_call(slot, other)
    assert _hookcount(runner) == 5000
    # And the VM is fine: the next event runs (the hook fires early once, harmlessly).
    assert vm.dispatch("message", sample_payload("message")).errors == []


#: The stress test's scripts: one stopped by its hook, one that only a poke stops, one that ends
#: near its deadline (racing the watchdog), one that makes and forgets coroutines.
STRESS_SCRIPTS = {
    "spin": "while true do end",
    "costly": "local a = string.rep('\\0', 2^16) while true do local _ = a < a end",
    "racing": "local a = string.rep('\\0', 2^14) for _ = 1, 40 do local _ = a < a end",
    "threads": "for _ = 1, 200 do coroutine.wrap(function() coroutine.yield() end)() end",
}


def stress_main() -> None:
    """The stress child: threads run short guest calls (budgets of 1 ms, VMs built and dropped as
    they go) while the watchdog looks every 2 ms; every poke checks that its call is attached."""
    plan = json.load(sys.stdin)
    cap_resources(plan["cpu_seconds"])
    preemption.LOOK_SECONDS = 0.002
    counts = {"pokes": 0, "stray": 0, "calls": 0, "time_limits": 0}
    poke = preemption._Watchdog._poke

    def checked_poke(self: preemption._Watchdog, watch: preemption.ThreadWatch) -> None:
        # Called under the lock: the call must still be attached to some thread's slot.
        counts["pokes"] += 1
        if not any(slot.watch is watch for slot in self.slots):
            counts["stray"] += 1
        poke(self, watch)

    preemption._Watchdog._poke = checked_poke  # type: ignore[method-assign]
    limits = SandboxLimits(cpu_ms_per_event=1)
    sources = [ScriptSource(name, handler(body)) for name, body in STRESS_SCRIPTS.items()]
    lock = threading.Lock()

    def worker(seed: int) -> None:
        payload = sample_payload("message")
        vm = None
        for i in range(plan["calls"]):
            if vm is None or (i + seed) % 7 == 0:
                vm = None  # its runtime, and every lua_State in it, are freed here
                vm = GuildVM(seed, [sources[(i + seed) % len(sources)]], limits)
            result = vm.dispatch("message", payload)
            with lock:
                counts["calls"] += 1
                counts["time_limits"] += sum(error.kind == "time_limit" for error in result.errors)

    threads = [threading.Thread(target=worker, args=(seed,)) for seed in range(plan["threads"])]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    emit(counts)
    emit({"done": True})


def test_the_watchdog_never_touches_a_finished_call_under_racing_threads() -> None:
    plan = {"cpu_seconds": CHILD_CPU_SECONDS + 6, "threads": 4, "calls": 200}
    [line] = run_plan("tests.sandbox.test_preemption", plan, plan["cpu_seconds"])
    counts = json.loads(line)
    assert counts["calls"] == 4 * 200
    assert counts["stray"] == 0
    # The race was run: calls were stopped, many of them by a poke.
    assert counts["pokes"] > 50 and counts["time_limits"] > 200, counts


def test_the_kernel_tells_the_watch_which_threads_to_keep_and_forget(monkeypatch: pytest.MonkeyPatch) -> None:
    source = handler("for _ = 1, 300 do coroutine.wrap(function() coroutine.yield() end)() end")
    vm = GuildVM(1, [ScriptSource("threads", source)], LIMITS)
    watch = vm._sandbox.watch
    registered: list[int] = []

    def leave_call(slot: Any, left: preemption.ThreadWatch) -> bool:
        registered.append(len(left.threads))
        return preemption.leave_call(slot, left)

    monkeypatch.setattr(guild_vm, "leave_call", leave_call)
    for _ in range(2):
        assert vm.dispatch("message", sample_payload("message")).errors == []
        # 300 threads entered, compacted on the way; kernel.forget emptied the list after the call.
        assert 0 < registered.pop() < 300
        assert watch.threads == []


if __name__ == "__main__":
    stress_main()
