"""Attacks on the ``task`` library: scripts that try to outrun its bounds with threads and timers.

Each case is a guild of its own with the attack and the usual witness (see ``attack.py``): the
attack gets a message event, then its timers run a few times on a virtual clock, then the witness
must still be served. Every case must end bounded, with the right kind of error.

Timers need steps that ``tests/support/sandbox_child.py`` does not have, so this module is its own
child process too: ``python -m tests.sandbox.test_task_attacks`` reads a plan on stdin, with the
child's CPU cap (``cap_resources``), and prints one JSON line per step.
"""

from __future__ import annotations

import json
import sys
from dataclasses import asdict, dataclass
from typing import Any

import pytest

from lua_runtime.events import sample_payload
from lua_runtime.guild_vm import GuildVM, ScriptSource
from lua_runtime.limits import SandboxLimits
from lua_runtime.results import ScriptError
from tests.sandbox.attack import (
    CASE_CPU_SECONDS,
    CHILD_CPU_SECONDS,
    SMALL,
    WITNESS_EVENT,
    WITNESS_OUTPUT,
    WITNESS_SOURCE,
    assert_stopped,
    handler,
    run_plan,
)
from tests.support.sandbox_child import cap_resources, emit

#: Timer steps each case gets after its event, and the virtual seconds each one moves the clock.
TIMER_STEPS = 3
STEP_SECONDS = 1.0
#: Runs of due timers one step makes at most (a run stops after one event budget of CPU).
RUNS_PER_STEP = 20


# --- the child -------------------------------------------------------------------------------------


class VirtualClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def _result_record(guild: int, step: str, results: list, vm: GuildVM) -> dict[str, Any]:
    record: dict[str, Any] = {"guild": guild, "step": step, "errors": [], "actions": [], "output": []}
    for result in results:
        record["errors"] += [asdict(error) for error in result.errors]
        record["actions"] += result.actions
        record["output"] += [line.text for line in result.output]
    record["pending"] = vm.pending_timers
    return record


def child_main() -> None:
    plan = json.load(sys.stdin)
    cap_resources(plan["cpu_seconds"])
    limits = SandboxLimits(**plan["limits"])
    clocks: dict[int, VirtualClock] = {}
    vms: dict[int, GuildVM] = {}
    for guild, scripts in plan["guilds"].items():
        clocks[int(guild)] = clock = VirtualClock()
        vms[int(guild)] = GuildVM(
            int(guild), [ScriptSource(*script) for script in scripts], limits, clock=clock
        )
        emit({"guild": int(guild), "load_errors": [asdict(e) for e in vms[int(guild)].load_errors]})
    for guild, step in plan["steps"]:
        vm, clock = vms[guild], clocks[guild]
        if step == "timers":
            clock.now += STEP_SECONDS
            results = []
            for _ in range(RUNS_PER_STEP):
                due = vm.next_timer_due
                if due is None or due > clock.now:
                    break
                results.append(vm.run_timers())
            emit(_result_record(guild, step, results, vm))
        else:
            emit(_result_record(guild, step, [vm.dispatch(step, sample_payload(step))], vm))
    emit({"done": True})


# --- the parent ------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Step:
    errors: list[ScriptError]
    actions: list[dict[str, Any]]
    output: list[str]
    pending: int

    def error_of(self, script: str) -> ScriptError | None:
        return next((error for error in self.errors if error.script == script), None)


@dataclass(frozen=True, slots=True)
class TaskAttack:
    load_errors: list[ScriptError]
    event: Step
    timers: list[Step]
    witness: Step

    def check_witness(self) -> None:
        assert self.load_errors == [], self.load_errors
        assert self.witness.errors == [], f"the witness failed after the attack: {self.witness.errors}"
        assert self.witness.output == [WITNESS_OUTPUT]
        assert [action["type"] for action in self.witness.actions] == ["kick"]

    def attack_errors(self) -> list[ScriptError]:
        steps = [self.event, *self.timers]
        return [error for step in steps for error in step.errors if error.script == "attack"]


def run_task_attacks(cases: dict[str, str], limits: SandboxLimits = SMALL) -> dict[str, TaskAttack]:
    names = list(cases)
    guilds = {
        str(i): [["attack", cases[name]], ["witness", WITNESS_SOURCE]] for i, name in enumerate(names, 1)
    }
    steps: list[list[Any]] = []
    for i in range(1, len(names) + 1):
        steps += [[i, "message"]] + [[i, "timers"]] * TIMER_STEPS + [[i, WITNESS_EVENT]]
    # Each timer step may spend a few budgets, as the event may: a generous allowance per case.
    cpu_seconds = CHILD_CPU_SECONDS + len(names) * (CASE_CPU_SECONDS + TIMER_STEPS * 0.1)
    plan = {"cpu_seconds": cpu_seconds, "limits": asdict(limits), "guilds": guilds, "steps": steps}
    records = [json.loads(line) for line in run_plan("tests.sandbox.test_task_attacks", plan, cpu_seconds)]
    loads = {r["guild"]: [ScriptError(**e) for e in r["load_errors"]] for r in records if "load_errors" in r}
    by_guild: dict[int, list[Step]] = {}
    for r in records:
        if "step" in r:
            errors = [ScriptError(**e) for e in r["errors"]]
            by_guild.setdefault(r["guild"], []).append(Step(errors, r["actions"], r["output"], r["pending"]))
    return {
        name: TaskAttack(loads[i], by_guild[i][0], by_guild[i][1:-1], by_guild[i][-1])
        for i, name in enumerate(names, 1)
    }


# --- the cases -------------------------------------------------------------------------------------

#: Attacks (handler bodies on line 2) that must end in ``kind``, in the event or in a timer.
BOUNDED = {
    "a spawn bomb": ("while true do task.spawn(function() end) end", "time_limit"),
    "a spawn bomb of waiting threads": ("while true do task.spawn(task.wait, 1) end", "limit"),
    "a defer bomb": ("while true do task.defer(print) end", "limit"),
    "a delay bomb": ("while true do task.delay(1, print) end", "limit"),
    "recursive defer": ("local function f() task.defer(f) end f()", "time_limit"),
    "recursive defer that loops a little": (
        "local function f() for i = 1, 100 do end task.defer(f) end f()",
        "time_limit",
    ),
    "defer from a deferred thread that loops": ("task.defer(function() while true do end end)", "time_limit"),
    "a delayed thread that loops": ("task.delay(0, function() while true do end end)", "time_limit"),
    "a waiting handler that loops after its wait": ("task.wait(0) while true do end", "time_limit"),
    "a delayed thread that fills the heap": (
        "task.delay(0, function() local t = {} while true do t[#t + 1] = string.rep('x', 1e4) .. #t end end)",
        "memory_limit",
    ),
    "a longer wait than allowed": ("task.wait(1e308)", "limit"),
    "an infinite wait": ("task.wait(math.huge)", "limit"),
}

#: Threads that run forever, one resumption per turn of the worker (they wait at least a frame
#: each time): no error, never more than one run per due time.
ENDLESS_BUT_PATIENT = {
    "a wait loop": "while true do task.wait() end",
    "a delay(0) loop": "local function again() task.delay(0, again) end again()",
    "a wait loop that defers": "while true do task.defer(print, 'deferred') task.wait() end",
}

#: Places a wait cannot park: each is a runtime error on line 2, and the handler stops there.
CANNOT_PARK = {
    "in __tostring": "tostring(setmetatable({}, { __tostring = function() task.wait() return '' end }))",
    "in a table.sort comparator": "table.sort({3, 2, 1}, function(a, b) task.wait() return a < b end)",
    "in a coroutine.wrap": "coroutine.wrap(task.wait)(1)",
    "in a coroutine.create": "local ok, e = coroutine.resume(coroutine.create(task.wait), 1) error(e, 0)",
    "in a __close handler": "setmetatable({}, { __close = function() task.wait() end })",
    "in a __gc handler": "setmetatable({}, { __gc = function() task.wait() end })",
    "after cancelling the running thread": "task.cancel(coroutine.running())",
    "by yielding a task thread": "task.spawn(coroutine.yield, 'fake')",
}

#: Places a wait can park (Lua 5.4 yields across them): the handler resumes there, a second later.
PARKS = {
    "in pcall": "print(pcall(task.wait, 1))",
    "in an xpcall message handler": "print(xpcall(error, function(e) task.wait(1) return 'handled' end, 'x'))",
    "in an __index metamethod": "print(setmetatable({}, { __index = function() task.wait(1) return 'indexed' end }).x)",
    "in a generic for iterator": "for v in function(_, c) if not c then task.wait(1) return 'looped' end end do print(v) end",
    "in a spawned thread of a __tostring": (
        "print(tostring(setmetatable({}, { __tostring = function() task.spawn(function() task.wait(1) "
        "print('spawned') end) return 'str' end })))"
    ),
}

CASES = {
    **{name: handler(body) for name, (body, _) in BOUNDED.items()},
    **{f"wait {name}": handler(body) for name, body in CANNOT_PARK.items()},
    **{f"park {name}": handler(body) for name, body in PARKS.items()},
    **{f"patient {name}": handler(body) for name, body in ENDLESS_BUT_PATIENT.items()},
    "a deferred thread cannot resume the parked handler": (
        "local saved\nreturn { message = function()\n"
        "  saved = coroutine.running()\n"
        "  task.defer(function() print(coroutine.resume(saved)) print(pcall(coroutine.close, saved)) end)\n"
        "  task.wait(1) print('resumed by its timer')\n"
        "end }"
    ),
    "the library cannot be changed": handler(
        "local ok, e = pcall(function() task.wait = print end) print(ok, e, getmetatable(task), rawget(task, 'wait'))"
    ),
}


@pytest.fixture(scope="module")
def runs() -> dict[str, TaskAttack]:
    return run_task_attacks(CASES)


@pytest.mark.parametrize("name", list(BOUNDED))
def test_each_attack_ends_bounded_with_its_kind(runs: dict[str, TaskAttack], name: str) -> None:
    result = runs[name]
    result.check_witness()
    _, kind = BOUNDED[name]
    errors = result.attack_errors()
    assert errors, "the attack was not stopped"
    assert_stopped(errors[0], kind)
    assert len(errors) <= 1 + TIMER_STEPS


@pytest.mark.parametrize("name", list(ENDLESS_BUT_PATIENT))
def test_an_endless_thread_that_waits_takes_one_turn_per_due_time(
    runs: dict[str, TaskAttack], name: str
) -> None:
    result = runs[f"patient {name}"]
    result.check_witness()
    assert result.attack_errors() == []
    assert [step.pending for step in [result.event, *result.timers]] == [1] * (1 + TIMER_STEPS)


def test_a_thread_that_waits_in_a_loop_runs_once_per_due_time(runs: dict[str, TaskAttack]) -> None:
    result = runs["patient a wait loop that defers"]
    assert result.event.output == ["deferred"]
    assert [step.output for step in result.timers] == [["deferred"]] * TIMER_STEPS


@pytest.mark.parametrize("name", list(CANNOT_PARK))
def test_a_wait_where_it_cannot_park_is_a_runtime_error(runs: dict[str, TaskAttack], name: str) -> None:
    result = runs[f"wait {name}"]
    result.check_witness()
    [error] = result.attack_errors()
    assert (error.kind, error.line) == ("runtime", 2), error
    assert result.event.pending == 0


def test_the_messages_say_why_a_wait_cannot_park(runs: dict[str, TaskAttack]) -> None:
    def message(name: str) -> str:
        [error] = runs[f"wait {name}"].attack_errors()
        return error.message

    assert message("in __tostring").startswith("task.wait cannot wait here: it was called from code that")
    assert message("in a coroutine.wrap").startswith("task.wait cannot wait inside a coroutine made with")
    assert (
        message("in a __close handler") == "__gc and __close metamethods are not available in Warden scripts"
    )
    assert message("after cancelling the running thread") == "task.cancel cannot cancel a running thread"
    assert message("by yielding a task thread") == "attempt to yield from outside a coroutine"


@pytest.mark.parametrize("name", list(PARKS))
def test_a_wait_parks_across_protected_calls_and_metamethods(runs: dict[str, TaskAttack], name: str) -> None:
    result = runs[f"park {name}"]
    result.check_witness()
    assert result.attack_errors() == []
    assert result.event.pending == 1
    assert result.timers[0].pending == 0 and result.timers[0].output != []


def test_what_parked_waits_return(runs: dict[str, TaskAttack]) -> None:
    assert runs["park in pcall"].timers[0].output == ["true\t1"]
    assert runs["park in an xpcall message handler"].timers[0].output == ["false\thandled"]
    assert runs["park in an __index metamethod"].timers[0].output == ["indexed"]
    assert runs["park in a generic for iterator"].timers[0].output == ["looped"]
    spawned = runs["park in a spawned thread of a __tostring"]
    assert spawned.event.output == ["str"] and spawned.timers[0].output == ["spawned"]


def test_a_parked_handler_is_resumed_by_its_timer_only(runs: dict[str, TaskAttack]) -> None:
    result = runs["a deferred thread cannot resume the parked handler"]
    result.check_witness()
    assert result.event.output == [
        "false\tcannot resume a coroutine that Warden runs (a handler's or a task's)",
        "false\tcannot close a thread that waits for its timer; use task.cancel",
    ]
    assert result.timers[0].output == ["resumed by its timer"] and result.attack_errors() == []


def test_the_task_library_is_read_only(runs: dict[str, TaskAttack]) -> None:
    result = runs["the library cannot be changed"]
    result.check_witness()
    assert result.event.output == ["false\tattack:2: attempt to modify a readonly table\tfalse\tnil"]


if __name__ == "__main__":
    child_main()
