"""A guild's actions are capped per time window across its events and timers, not only per event.

Each timer's resumption has an event's quota of actions, so 100 pending timers of 20 actions each
gave 2,000 actions from one event. The worker keeps an action window per guild and passes what is
left of it into every call; the kernel stops a script that asks for more with a ``limit`` error
naming the window. A dry run has a window of its own, on its virtual clock.

The worker loop is driven here with a hand-moved clock: waiting for a timer moves the clock, so the
tests sleep through nothing.
"""

from __future__ import annotations

from lua_runtime.action_window import ActionWindow
from lua_runtime.dry_run import dry_run
from lua_runtime.guild_vm import ScriptSource
from lua_runtime.limits import SandboxLimits
from lua_runtime.pool.messages import DispatchEvent, DryRunScript, Reply, Shutdown, TimerResult
from lua_runtime.pool.provider import InMemoryScripts, SharedProvider
from lua_runtime.pool.worker import WorkerSettings, serve
from lua_runtime.results import EventResult
from tests.pool.conftest import FakeClock, message

GUILD = 7
LIMITS = SandboxLimits(cpu_ms_per_event=50)
WINDOW_MESSAGE = "too many actions: at most 60 per 10 s per server"
PER_EVENT_MESSAGE = "too many actions in one event (the limit is 20)"


def acting(body: str, name: str = "acting") -> ScriptSource:
    """A script whose message handler runs ``body`` with ``send(n)``: n actions, one call each."""
    return ScriptSource(
        name,
        'local d = require("@warden/discord")\n'
        "local function send(n) for i = 1, n do d.send('1100000000000000002', 'x' .. i) end end\n"
        f"return {{ message = function(m)\n{body}\nend }}",
    )


class ScriptedInbox:
    """Each time the loop waits for work, it gets the next step: a batch of requests, or a number of
    seconds that pass on the clock (the wait for a timer) with nothing arriving."""

    def __init__(self, clock: FakeClock, steps: list) -> None:
        self._clock = clock
        self._steps = steps

    def take(self, timeout: float | None) -> list:
        if timeout == 0:
            return []
        assert self._steps, "the loop waited for more than the test scripted"
        step = self._steps.pop(0)
        if isinstance(step, int | float):
            self._clock.now += step
            return []
        return step


class Outbox:
    def __init__(self) -> None:
        self.records: list = []

    def send(self, records: list) -> None:
        self.records.extend(records)


def run_worker(
    script: ScriptSource | list[ScriptSource], steps: list, limits: SandboxLimits = LIMITS
) -> list[EventResult]:
    """Serve ``steps`` for a guild with ``script`` (or scripts); the results of its events and runs
    of timers, in the order they came out."""
    clock = FakeClock()
    outbox = Outbox()
    settings = WorkerSettings(limits, cpu_seconds=100.0, cpu_window_seconds=10.0)
    provider = SharedProvider(InMemoryScripts({GUILD: script if isinstance(script, list) else [script]}))
    serve(1, ScriptedInbox(clock, [*steps, [Shutdown(0, 5.0)]]), outbox, provider, settings, clock)
    results = []
    for record in outbox.records:
        if isinstance(record, Reply) and isinstance(record.value, EventResult):
            results.append(record.value)
        elif isinstance(record, TimerResult):
            results.append(record.result)
    return results


def events(first_id: int, count: int) -> list[DispatchEvent]:
    return [DispatchEvent(first_id + i, GUILD, "message", message("x")) for i in range(count)]


def messages(result: EventResult) -> list[str]:
    return [error.message for error in result.errors]


# --- the window itself ------------------------------------------------------------------------------


def test_the_window_counts_what_was_recorded_in_its_last_seconds() -> None:
    window = ActionWindow(SandboxLimits(max_actions_per_window=10, action_window_seconds=5))
    assert window.allowance(100.0) == 10
    window.record(100.0, 4)
    window.record(101.0, 0)  # a call without actions leaves nothing behind
    window.record(102.0, 5)
    assert window.allowance(102.0) == 1
    window.record(102.5, 3)  # more than was allowed: never a negative allowance
    assert window.allowance(104.9) == 0
    assert window.allowance(105.0) == 2  # the 4 at 100.0 have left the window
    assert window.allowance(107.5) == 10
    assert window.allowance(99.0) == 10  # nothing recorded is left to count


# --- through the worker loop ------------------------------------------------------------------------


def test_events_in_a_tight_loop_share_one_window_until_it_moves_on() -> None:
    results = run_worker(acting("send(20)"), [events(1, 4), 10.0, events(5, 1)])
    assert [len(result.actions) for result in results] == [20, 20, 20, 0, 20]
    assert messages(results[3]) == [WINDOW_MESSAGE]
    assert [error.line for error in results[3].errors] == [2]  # where the script asked for the 61st
    assert all(messages(result) == [] for result in results[:3] + results[4:])


def test_the_window_has_the_operators_size_and_length() -> None:
    limits = SandboxLimits(cpu_ms_per_event=50, max_actions_per_window=30, action_window_seconds=5)
    results = run_worker(acting("send(20)"), [events(1, 2), 4.0, events(3, 1), 1.0, events(4, 1)], limits)
    assert [len(result.actions) for result in results] == [20, 10, 0, 20]
    assert messages(results[1]) == ["too many actions: at most 30 per 5 s per server"]


def test_timers_of_one_event_cannot_act_past_the_window() -> None:
    # The case: 100 pending timers of 20 actions each, set by one event that acts not once.
    script = acting("for i = 1, 100 do task.delay(0, function() send(20) end) end")
    results = run_worker(script, [events(1, 1), *[0.1] * 12])
    event, *timer_runs = results
    assert event.actions == [] and event.errors == []
    assert sum(len(run.actions) for run in timer_runs) == 60
    stopped = [message for run in timer_runs for message in messages(run)]
    assert stopped == [WINDOW_MESSAGE] * 97  # the 4th resumption is stopped at its 1st action, and the rest


def test_timers_act_again_once_the_window_has_moved_on() -> None:
    script = acting("for i = 1, 5 do task.delay(i * 6, function() send(20) end) end")
    results = run_worker(script, [events(1, 1), *[6.0] * 5])
    assert [len(result.actions) for result in results] == [0, 20, 20, 20, 20, 20]
    assert all(result.errors == [] for result in results)


def test_a_spawn_bomb_that_acts_is_stopped_by_the_quota_then_by_the_window() -> None:
    script = acting("for i = 1, 1000 do task.spawn(function() send(1) end) end")
    results = run_worker(script, [events(1, 4)])
    assert [len(result.actions) for result in results] == [20, 20, 20, 0]
    assert all(messages(result) == [PER_EVENT_MESSAGE] for result in results[:3])
    assert messages(results[3]) == [WINDOW_MESSAGE]


def test_deferred_threads_draw_on_the_same_window() -> None:
    script = acting("for i = 1, 30 do task.defer(function() send(1) end) end")
    results = run_worker(script, [events(1, 4)])
    assert [len(result.actions) for result in results] == [20, 20, 20, 0]
    # Each deferred thread stops at its first action; the errors of a turn's task threads are
    # reported up to nine, then summed up in one line (task.lua's MAX_THREAD_ERRORS).
    more = "more task threads failed in this turn; only the first 9 errors are reported"
    assert messages(results[3]) == [WINDOW_MESSAGE] * 9 + [more]


def test_several_scripts_draw_on_the_same_window() -> None:
    scripts = [acting("send(6)", "first"), acting("send(6)", "second"), acting("send(6)", "third")]
    results = run_worker(scripts, [events(1, 4)])
    assert [len(result.actions) for result in results] == [18, 18, 18, 6]
    assert [action["script"] for action in results[3].actions] == ["first"] * 6
    assert [(error.script, error.message) for error in results[3].errors] == [
        ("second", WINDOW_MESSAGE),
        ("third", WINDOW_MESSAGE),
    ]


def test_a_dry_run_has_a_window_of_its_own() -> None:
    # The guild's window is spent by its events; its admin can still test a script.
    steps = [events(1, 4), [DryRunScript(9, GUILD, acting("send(20)"), "message", None)]]
    clock = FakeClock()
    outbox = Outbox()
    settings = WorkerSettings(LIMITS, cpu_seconds=100.0, cpu_window_seconds=10.0)
    provider = SharedProvider(InMemoryScripts({GUILD: [acting("send(20)")]}))
    serve(1, ScriptedInbox(clock, [*steps, [Shutdown(0, 5.0)]]), outbox, provider, settings, clock)
    replies = {record.request_id: record.value for record in outbox.records if isinstance(record, Reply)}
    assert messages(replies[4]) == [WINDOW_MESSAGE]
    assert len(replies[9].actions) == 20 and replies[9].error is None


# --- dry runs, on their virtual clock ---------------------------------------------------------------


def test_a_dry_run_of_timers_that_act_stops_at_its_window() -> None:
    run = dry_run(
        acting("for i = 1, 100 do task.delay(1, function() send(20) end) end"), "message", None, LIMITS
    )
    assert len(run.actions) == 60
    assert run.error is not None and (run.error.kind, run.error.message) == ("limit", WINDOW_MESSAGE)


def test_a_dry_run_follows_the_window_in_virtual_time() -> None:
    # 20 actions every 5 virtual seconds stay within 60 per 10 s: nothing is refused.
    run = dry_run(
        acting("for i = 1, 10 do task.delay(i * 5, function() send(20) end) end"), "message", None, LIMITS
    )
    assert run.error is None
    assert len(run.actions) == 200
