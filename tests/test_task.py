"""The ``task`` library: the guild VM's timers on a hand-moved clock, and the worker loop that wakes them.

Nothing here sleeps: the VM and the loop read a clock the test moves, and the loop's inbox is a
script of batches that also records how long the loop asked to wait.
"""

from __future__ import annotations

import pickle

import pytest

from lua_runtime.dry_run import dry_run
from lua_runtime.events import sample_payload
from lua_runtime.guild_vm import GuildVM, ScriptSource
from lua_runtime.limits import MIN_TASK_WAIT_SECONDS, SandboxLimits
from lua_runtime.pool.messages import (
    DispatchEvent,
    ReloadGuild,
    ResetGuild,
    Shutdown,
    TimerResult,
    TimersPending,
    WorkerRecord,
)
from lua_runtime.pool.provider import InMemoryScripts, SharedProvider
from lua_runtime.pool.worker import WorkerSettings, serve

LIMITS = SandboxLimits(cpu_ms_per_event=20)
MESSAGE = sample_payload("message")


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def vm_of(*scripts: tuple[str, str], limits: SandboxLimits = LIMITS, clock: Clock | None = None) -> GuildVM:
    vm = GuildVM(7, [ScriptSource(name, source) for name, source in scripts], limits, clock=clock or Clock())
    assert vm.load_errors == []
    return vm


def texts(result) -> list[str]:
    return [line.text for line in result.output]


def kinds(result) -> list[tuple[str, str, int | None]]:
    return [(error.kind, error.message, error.line) for error in result.errors]


def handler(body: str) -> str:
    """A script whose message handler is ``body``, starting on line 3."""
    return f'local discord = require("@warden/discord")\nreturn {{ message = function(msg)\n{body}\nend }}'


# --- the library -------------------------------------------------------------------------------------


def test_a_wait_parks_the_handler_and_its_actions_after_the_wait_run_when_it_is_due() -> None:
    clock = Clock()
    vm = vm_of(
        (
            "cleanup",
            handler(
                'discord.reply(msg, "warning")\n'
                "local waited = task.wait(10)\n"
                'print("waited", waited)\n'
                "discord.delete_message(msg.channel_id, msg.id)"
            ),
        ),
        clock=clock,
    )
    first = vm.dispatch("message", MESSAGE)
    assert first.ok and [a["type"] for a in first.actions] == ["reply"]
    assert (vm.pending_timers, vm.next_timer_due) == (1, 1010.0)
    clock.now = 1009.0
    assert vm.run_timers().actions == [] and vm.pending_timers == 1  # not due yet
    clock.now = 1012.5
    later = vm.run_timers()
    assert later.event == "timer" and later.ok and later.scripts == ["cleanup"]
    assert later.actions == [
        {
            "channel_id": MESSAGE["channel_id"],
            "message_id": MESSAGE["id"],
            "script": "cleanup",
            "type": "delete_message",
        }
    ]
    assert texts(later) == ["waited\t12.5"]
    assert (vm.pending_timers, vm.next_timer_due) == (0, None)


def test_delay_spawn_and_defer_run_when_roblox_runs_them() -> None:
    clock = Clock()
    vm = vm_of(
        (
            "order",
            handler(
                'task.delay(5, function(a, b) print("delayed", a, b) end, "x", 2)\n'
                'task.defer(function(a) print("deferred", a) end, "d")\n'
                'task.spawn(function() print("spawned") task.wait(1) print("spawn resumed") end)\n'
                'print("handler ends")'
            ),
        ),
        clock=clock,
    )
    now = vm.dispatch("message", MESSAGE)
    assert texts(now) == ["spawned", "handler ends", "deferred\td"]
    assert vm.pending_timers == 2 and vm.next_timer_due == 1001.0
    clock.now = 1010.0
    assert texts(vm.run_timers()) == ["spawn resumed", "delayed\tx\t2"]  # in due order


def test_timers_due_together_run_in_the_order_they_were_set() -> None:
    clock = Clock()
    vm = vm_of(("order", handler("for i = 1, 5 do task.delay(3, print, i) end")), clock=clock)
    vm.dispatch("message", MESSAGE)
    clock.now += 3
    assert texts(vm.run_timers()) == ["1", "2", "3", "4", "5"]


def test_a_short_wait_waits_one_frame_and_reports_how_long_it_waited() -> None:
    clock = Clock()
    vm = vm_of(("frame", handler("print(task.wait(0))")), clock=clock)
    vm.dispatch("message", MESSAGE)
    assert vm.next_timer_due == pytest.approx(1000 + MIN_TASK_WAIT_SECONDS)
    clock.now += 0.5
    assert texts(vm.run_timers()) == ["0.5"]


def test_cancel_stops_a_delay_and_a_waiting_handler() -> None:
    clock = Clock()
    vm = vm_of(
        (
            "cancel",
            handler(
                'local doomed = task.delay(1, print, "never")\n'
                "task.cancel(doomed)\n"
                "local me = coroutine.running()\n"
                "task.delay(2, function() task.cancel(me) end)\n"
                'task.wait(5) print("not after a cancel")'
            ),
        ),
        clock=clock,
    )
    vm.dispatch("message", MESSAGE)
    assert vm.pending_timers == 2  # the handler's wait and the canceller
    clock.now += 10
    result = vm.run_timers()
    assert result.ok and texts(result) == [] and vm.pending_timers == 0


def test_each_resumption_has_the_action_budget_of_an_event() -> None:
    clock = Clock()
    limits = SandboxLimits(cpu_ms_per_event=20, max_actions_per_event=2)
    vm = vm_of(
        (
            "busy",
            handler(
                'discord.send(msg.channel_id, "1") discord.send(msg.channel_id, "2")\n'
                "task.wait(1)\n"
                'discord.send(msg.channel_id, "3") discord.send(msg.channel_id, "4")\n'
                'discord.send(msg.channel_id, "5")'
            ),
        ),
        limits=limits,
        clock=clock,
    )
    assert len(vm.dispatch("message", MESSAGE).actions) == 2
    clock.now += 1
    later = vm.run_timers()
    assert [a["content"] for a in later.actions] == ["3", "4"]
    assert kinds(later) == [("limit", "too many actions in one event (the limit is 2)", 6)]


# --- limits and clear errors -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "kind", "message"),
    [
        (
            "task.wait(901)",
            "limit",
            "task.wait(901): the longest wait is 900 seconds",
        ),
        (
            "task.delay(3600, print)",
            "limit",
            "task.delay(3600): the longest wait is 900 seconds",
        ),
        (
            "for i = 1, 101 do task.delay(1, print) end",
            "limit",
            "too many pending timers (the limit is 100 per server: waits, delays and defers not run yet)",
        ),
        (
            "for i = 1, 101 do task.defer(print) end",
            "limit",
            "too many pending timers (the limit is 100 per server: waits, delays and defers not run yet)",
        ),
        ("task.wait('soon')", "runtime", 'task.wait takes a number of seconds, got "soon"'),
        ("task.wait(0/0)", "runtime", "task.wait takes a number of seconds, got nan"),
        ("task.delay(1, 'print')", "runtime", 'task.delay takes a function to run, got "print"'),
        ("task.spawn(nil)", "runtime", "task.spawn takes a function to run, got nil"),
        (
            "task.cancel(1)",
            "runtime",
            "task.cancel takes a thread (what task.delay, task.spawn and task.defer return), got 1",
        ),
        (
            "coroutine.wrap(function() task.wait(1) end)()",
            "runtime",
            "task.wait cannot wait inside a coroutine made with coroutine.create or coroutine.wrap; "
            "run that code with task.spawn or task.delay instead",
        ),
        (
            "tostring(setmetatable({}, { __tostring = function() task.wait(1) return '' end }))",
            "runtime",
            "task.wait cannot wait here: it was called from code that cannot be suspended (a metamethod "
            "such as __tostring, or a function called by a library function such as table.sort)",
        ),
        (
            "table.sort({3, 2, 1}, function(a, b) task.wait() return a < b end)",
            "runtime",
            "task.wait cannot wait here: it was called from code that cannot be suspended (a metamethod "
            "such as __tostring, or a function called by a library function such as table.sort)",
        ),
    ],
)
def test_each_misuse_and_limit_is_an_error_at_the_authors_line(body: str, kind: str, message: str) -> None:
    vm = vm_of(("bad", handler(f"local x = 1\n{body}")))
    result = vm.dispatch("message", MESSAGE)
    assert kinds(result) == [(kind, message, 4)]


def test_limit_errors_cannot_be_caught_with_pcall() -> None:
    vm = vm_of(("bad", handler('print(pcall(task.wait, 1000))\nprint("after")')))
    result = vm.dispatch("message", MESSAGE)
    assert texts(result) == [] and [e.kind for e in result.errors] == ["limit"]


def test_the_limits_come_from_the_sandbox_limits() -> None:
    limits = SandboxLimits(cpu_ms_per_event=20, max_pending_timers=2, max_timer_delay_seconds=60)
    vm = vm_of(("few", handler("task.delay(60, print)\ntask.delay(1, print)\ntask.wait(2)")), limits=limits)
    assert kinds(vm.dispatch("message", MESSAGE)) == [
        (
            "limit",
            "too many pending timers (the limit is 2 per server: waits, delays and defers not run yet)",
            5,
        )
    ]
    with pytest.raises(ValueError, match="max_pending_timers"):
        SandboxLimits(max_pending_timers=0)


def test_task_functions_are_refused_at_the_top_level() -> None:
    vm = GuildVM(7, [ScriptSource("top", "local x = 1\ntask.delay(1, print)\nreturn {}")], LIMITS)
    [error] = vm.load_errors
    assert (error.kind, error.line) == ("runtime", 2)
    assert error.message.startswith("task.delay works in event handlers only, not at the top level")


def test_a_thread_that_fails_is_reported_and_the_handler_goes_on() -> None:
    vm = vm_of(("spawner", handler('task.spawn(function()\nerror("boom")\nend)\nprint("goes on")')))
    result = vm.dispatch("message", MESSAGE)
    assert texts(result) == ["goes on"]
    assert kinds(result) == [("runtime", "boom", 4)]


def test_a_resumption_that_loops_forever_is_stopped_at_its_budget_and_the_next_event_runs() -> None:
    clock = Clock()
    vm = vm_of(
        (
            "looper",
            handler('if msg.content == "loop" then\ntask.wait(1)\nwhile true do end\nend\nprint("fine")'),
        ),
        clock=clock,
    )
    vm.dispatch("message", {**MESSAGE, "content": "loop"})
    clock.now += 1
    stopped = vm.run_timers()
    assert kinds(stopped) == [("time_limit", "time limit exceeded (20 ms of CPU per event)", 5)]
    assert texts(vm.dispatch("message", MESSAGE)) == ["fine"]


def test_a_run_of_timers_yields_the_worker_after_one_event_budget() -> None:
    clock = Clock()
    vm = vm_of(
        ("heavy", handler("for i = 1, 3 do task.delay(1, function() while true do end end) end")), clock=clock
    )
    vm.dispatch("message", MESSAGE)
    clock.now += 1
    first = vm.run_timers()
    assert [e.kind for e in first.errors] == ["time_limit"]  # one budget spent: the run stops
    assert vm.pending_timers == 2 and vm.next_timer_due <= clock.now  # still due
    assert [e.kind for e in vm.run_timers().errors] == ["time_limit"]
    assert [e.kind for e in vm.run_timers().errors] == ["time_limit"]
    assert vm.pending_timers == 0


def test_dropped_timers_are_each_reported_with_the_line_that_set_them() -> None:
    clock = Clock()
    vm = vm_of(("dropped", handler("task.delay(1, print)\ntask.wait(2)\ntask.delay(5, print)")), clock=clock)
    vm.dispatch("message", MESSAGE)
    clock.now += 3
    result = vm.drop_due_timers("timer dropped")
    assert kinds(result) == [("limit", "timer dropped", 3), ("limit", "timer dropped", 4)]
    assert vm.pending_timers == 0


# --- guests cannot touch the kernel's threads -----------------------------------------------------


def test_a_parked_handler_cannot_be_resumed_or_closed_by_the_guest() -> None:
    clock = Clock()
    vm = vm_of(
        (
            "sneaky",
            "local saved\n"
            "return { message = function(msg)\n"
            '  if msg.content == "park" then saved = coroutine.running() task.wait(5) print("resumed on time") return end\n'
            "  print(coroutine.resume(saved))\n"
            "  print(pcall(coroutine.close, saved))\n"
            "  print(coroutine.status(saved))\n"
            "  task.spawn(function() print(coroutine.resume(saved)) end)\n"
            "end }",
        ),
        clock=clock,
    )
    vm.dispatch("message", {**MESSAGE, "content": "park"})
    probe = vm.dispatch("message", MESSAGE)
    assert texts(probe) == [
        "false\tcannot resume a coroutine that Warden runs (a handler's or a task's)",
        "false\tcannot close a thread that waits for its timer; use task.cancel",
        "suspended",
        "false\tcannot resume a coroutine that Warden runs (a handler's or a task's)",
    ]
    clock.now += 5
    assert texts(vm.run_timers()) == ["resumed on time"]


# --- dry runs ----------------------------------------------------------------------------------------


def test_a_dry_run_runs_the_timers_in_virtual_time_and_says_when() -> None:
    script = ScriptSource(
        "later",
        handler(
            'discord.reply(msg, "warning")\n'
            "task.wait(10)\n"
            "discord.delete_message(msg.channel_id, msg.id)\n"
            'task.delay(50, discord.send, msg.channel_id, "a minute on")'
        ),
    )
    run = dry_run(script, "message", None, SandboxLimits())
    assert run.ok and run.pending_timers == 0
    assert [(a["type"], a.get("after")) for a in run.actions] == [
        ("reply", None),
        ("delete_message", 10.0),
        ("send", 60.0),
    ]
    assert run.to_json()["actions"][1]["after"] == 10.0


def test_a_dry_run_of_an_endless_wait_loop_stops_and_counts_what_is_left() -> None:
    script = ScriptSource("ticker", handler('while true do task.wait(1) print("tick") end'))
    run = dry_run(script, "message", None, SandboxLimits())
    assert run.ok and run.pending_timers == 1 and 0 < len(run.output) <= 100


# --- the worker loop --------------------------------------------------------------------------------

SETTINGS = WorkerSettings(LIMITS, cpu_seconds=10.0, cpu_window_seconds=10.0)


class ScriptedInbox:
    """Hands the loop one batch (through pickle) each time it would wait, after moving the clock by
    the batch's ``advance``; records every wait the loop asked for."""

    def __init__(self, clock: Clock, steps: list[tuple[float, list]]) -> None:
        self._clock = clock
        self._steps = [(advance, pickle.dumps(batch)) for advance, batch in steps]
        self.waits: list[float | None] = []

    def take(self, timeout: float | None) -> list:
        if timeout == 0:
            return []
        self.waits.append(timeout)
        assert self._steps, "the loop waited for more than the test sent"
        advance, batch = self._steps.pop(0)
        self._clock.now += advance
        return pickle.loads(batch)


class Outbox:
    def __init__(self) -> None:
        self.records: list[WorkerRecord] = []

    def send(self, records: list[WorkerRecord]) -> None:
        self.records.extend(pickle.loads(pickle.dumps(records)))

    def timer_texts(self, guild_id: int) -> list[str]:
        return [
            line.text
            for r in self.records
            if isinstance(r, TimerResult) and r.guild_id == guild_id
            for line in r.result.output
        ]


def run_loop(scripts: dict[int, list[ScriptSource]], steps: list[tuple[float, list]], settings=SETTINGS):
    clock = Clock()
    inbox = ScriptedInbox(clock, [*steps, (0, [Shutdown(0, 5.0)])])
    outbox = Outbox()
    serve(1, inbox, outbox, SharedProvider(InMemoryScripts(scripts)), settings, clock)
    return inbox, outbox


WAITER = ScriptSource("waiter", handler('task.wait(tonumber(msg.content))\nprint("done " .. msg.content)'))


def test_the_loop_sleeps_until_the_next_timer_and_sends_its_result() -> None:
    inbox, outbox = run_loop(
        {1: [WAITER]}, [(0, [DispatchEvent(1, 1, "message", {**MESSAGE, "content": "30"})]), (30, [])]
    )
    assert inbox.waits[0] is None  # nothing pending: wait for a request
    assert inbox.waits[1] == pytest.approx(30)  # then until the timer
    assert outbox.timer_texts(1) == ["done 30"]
    assert [r.count for r in outbox.records if isinstance(r, TimersPending)] == [1, 0]


def test_a_reload_drops_the_old_vms_timers_and_the_new_vm_sets_its_own() -> None:
    content = {**MESSAGE, "content": "5"}
    _, outbox = run_loop(
        {1: [WAITER]},
        [
            (0, [DispatchEvent(1, 1, "message", content), ReloadGuild(2, 1)]),
            (10, [DispatchEvent(3, 1, "message", content)]),
            (10, []),
        ],
    )
    assert outbox.timer_texts(1) == ["done 5"]  # the new VM's timer only
    assert [r.count for r in outbox.records if isinstance(r, TimersPending)] == [1, 0, 1, 0]


def test_a_reset_drops_the_timers() -> None:
    _, outbox = run_loop(
        {1: [WAITER]},
        [(0, [DispatchEvent(1, 1, "message", {**MESSAGE, "content": "5"}), ResetGuild(2, 1)]), (10, [])],
    )
    assert outbox.timer_texts(1) == []
    assert [r.count for r in outbox.records if isinstance(r, TimersPending)] == [1, 0]


def test_a_guild_whose_cpu_budget_is_spent_has_its_due_timers_dropped_with_an_error() -> None:
    spender = ScriptSource("spender", handler("task.wait(1)\nprint('ran')"))
    settings = WorkerSettings(LIMITS, cpu_seconds=1e-9, cpu_window_seconds=1e9)
    _, outbox = run_loop({1: [spender]}, [(0, [DispatchEvent(1, 1, "message", MESSAGE)]), (1, [])], settings)
    [timer] = [r for r in outbox.records if isinstance(r, TimerResult)]
    assert timer.result.output == []
    [error] = timer.result.errors
    assert (error.script, error.kind, error.line) == ("spender", "limit", 3)
    assert error.message.startswith("timer dropped: this server's scripts used their CPU budget")


def test_timers_of_one_guild_never_delay_another_guilds_timers() -> None:
    # Both guilds' timers fall due together. Guild 1's five each spend a whole budget, and a run of
    # timers stops after one budget: guild 2's run takes its round-robin turn after one of them.
    heavy = ScriptSource(
        "heavy", handler("for i = 1, 5 do task.delay(1, function() while true do end end) end")
    )
    _, outbox = run_loop(
        {1: [heavy], 2: [WAITER]},
        [
            (
                0,
                [
                    DispatchEvent(1, 1, "message", MESSAGE),
                    DispatchEvent(2, 2, "message", {**MESSAGE, "content": "1"}),
                ],
            ),
            (1, []),
        ],
    )
    runs = [(r.guild_id, len(r.result.errors)) for r in outbox.records if isinstance(r, TimerResult)]
    assert runs == [(1, 1), (2, 0), (1, 1), (1, 1), (1, 1), (1, 1)]
    assert outbox.timer_texts(2) == ["done 1"]
