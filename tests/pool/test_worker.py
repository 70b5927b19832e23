"""The worker loop on its own: plain messages in, plain records out, no thread or event loop needed.

This is what a worker process will run: every message here crosses a pickle round trip, as it
would over a pipe.
"""

from __future__ import annotations

import pickle

from lua_runtime.guild_vm import ScriptSource
from lua_runtime.limits import MiB, SandboxLimits
from lua_runtime.pool.messages import (
    DispatchEvent,
    DryRunScript,
    InjectFault,
    LoadReport,
    ReloadGuild,
    Reply,
    ReportStats,
    ResetGuild,
    Shutdown,
    VmBuilt,
    WorkerExit,
    WorkerRecord,
    WorkerReport,
)
from lua_runtime.pool.provider import InMemoryScripts, SharedProvider
from lua_runtime.pool.worker import WorkerSettings, serve
from tests.pool.conftest import LIMITS, SPINNER, counter, message, printed, printing

SETTINGS = WorkerSettings(LIMITS, cpu_seconds=10.0, cpu_window_seconds=10.0)


class PickledInbox:
    """Hands the loop the next batch, through pickle, each time it has finished the previous one
    and waits for more."""

    def __init__(self, batches: list[list]) -> None:
        self._batches = [pickle.dumps(batch) for batch in batches]

    def take(self, timeout: float | None) -> list:
        if timeout == 0:
            return []
        assert self._batches, "the loop waited for more than the test sent"
        return pickle.loads(self._batches.pop(0))


class PickledOutbox:
    def __init__(self) -> None:
        self.records: list[WorkerRecord] = []

    def send(self, records: list[WorkerRecord]) -> None:
        self.records.extend(pickle.loads(pickle.dumps(records)))


def _replies(outbox: PickledOutbox) -> dict[int, Reply]:
    return {r.request_id: r for r in outbox.records if isinstance(r, Reply)}


def test_the_loop_serves_every_kind_of_request_through_pickled_messages() -> None:
    scripts = InMemoryScripts({5: [counter()]})
    inbox = PickledInbox(
        [
            [DispatchEvent(1, 5, "message", message("a")), DispatchEvent(2, 5, "message", message("b"))],
            [ReportStats(3), DryRunScript(4, 5, printing("probe", "probing"), "message", None)],
            [ReloadGuild(5, 5), DispatchEvent(6, 5, "message", message("c"))],
            [ResetGuild(7, 5), DispatchEvent(8, 5, "message", message("d")), Shutdown(0, 5.0)],
        ]
    )
    outbox = PickledOutbox()
    serve(3, inbox, outbox, SharedProvider(pickle.loads(pickle.dumps(scripts))), SETTINGS)
    replies = _replies(outbox)
    assert [printed(replies[i].value) for i in (1, 2, 6, 8)] == [["a:1"], ["b:2"], ["c:1"], ["d:1"]]
    assert all(replies[i].cpu_seconds > 0 for i in (1, 2, 6, 8))
    report = replies[3].value
    assert isinstance(report, WorkerReport) and report.worker_id == 3 and set(report.vm_memory) == {5}
    assert replies[4].value.output == ["probing"]
    assert isinstance(replies[5].value, LoadReport) and replies[5].value.scripts == ("counter",)
    assert replies[7].value is None
    builds = [r for r in outbox.records if isinstance(r, VmBuilt)]
    assert len(builds) == 2  # the first event, and the event after the reset; not the reload
    assert outbox.records[-1] == WorkerExit(3, None)


def test_a_crash_delivers_the_finished_replies_then_says_what_killed_the_worker() -> None:
    scripts = InMemoryScripts({5: [counter()]})
    inbox = PickledInbox(
        [
            [DispatchEvent(1, 5, "message", message("a"))],
            [DispatchEvent(2, 5, "message", message("b")), InjectFault(0, "drill")],
        ]
    )
    outbox = PickledOutbox()
    serve(4, inbox, outbox, SharedProvider(scripts), SETTINGS)
    replies = _replies(outbox)
    assert printed(replies[1].value) == ["a:1"]
    assert 2 not in replies  # queued with the fault, never run
    assert outbox.records[-1] == WorkerExit(4, "InjectedFault: drill")


def test_a_guild_that_spent_its_cpu_budget_is_dropped_until_its_window_refills(clock) -> None:
    # 30 ms of CPU per 100 s window; each event spends the whole 20 ms per-event limit.
    settings = WorkerSettings(LIMITS, cpu_seconds=0.03, cpu_window_seconds=100)
    scripts = InMemoryScripts({1: [ScriptSource("spin", SPINNER)], 2: [counter()]})
    batches = [
        [DispatchEvent(i, 1, "message", message("x")) for i in range(1, 5)]
        + [DispatchEvent(10 + i, 2, "message", message(str(i))) for i in range(3)],
        [DispatchEvent(20, 1, "message", message("x"))],
        [Shutdown(0, 5.0)],
    ]

    class ClockedInbox(PickledInbox):
        def take(self, timeout: float | None) -> list:
            if timeout != 0 and len(self._batches) == 2:
                clock.now += 100  # once the first batch is done, a whole window passes
            return super().take(timeout)

    outbox = PickledOutbox()
    serve(1, ClockedInbox(batches), outbox, SharedProvider(scripts), settings, clock)
    replies = _replies(outbox)
    outcome = [replies[i].failure.kind if replies[i].failure else "ran" for i in (1, 2, 3, 4, 20)]
    assert outcome == ["ran", "ran", "cpu_budget", "cpu_budget", "ran"]
    assert replies[1].value.errors[0].kind == "time_limit"
    assert [printed(replies[10 + i].value) for i in range(3)] == [["0:1"], ["1:2"], ["2:3"]]


def test_a_provider_factory_runs_on_the_worker_and_its_failure_is_a_crash_at_setup() -> None:
    def broken_factory():
        raise RuntimeError("cannot open the database")

    outbox = PickledOutbox()
    serve(9, PickledInbox([]), outbox, broken_factory, SETTINGS)
    assert outbox.records == [WorkerExit(9, "RuntimeError: cannot open the database")]


def test_the_watchdog_is_armed_with_each_requests_budget_and_disarmed_when_idle() -> None:
    class RecordingWatchdog:
        def __init__(self) -> None:
            self.calls: list[object] = []

        def arm(self, cpu_budget_seconds: float, guild_id: int) -> None:
            assert guild_id == 1
            self.calls.append(cpu_budget_seconds)

        def disarm(self) -> None:
            self.calls.append("disarm")

    two_scripts = InMemoryScripts({1: [printing("a", "1"), printing("b", "2")]})
    watchdog = RecordingWatchdog()
    batches = [[DispatchEvent(1, 1, "message", message("x")), DispatchEvent(2, 1, "message", message("y"))]]
    serve(
        1,
        PickledInbox([*batches, [Shutdown(0, 5.0)]]),
        PickledOutbox(),
        SharedProvider(two_scripts),
        SETTINGS,
        watchdog=watchdog,
    )
    event = LIMITS.cpu_ms_per_event / 1000
    # The first event builds the VM: two top levels and the build itself, each worth one event's budget.
    # (A slow machine may end the slice between the two events: the watchdog is then disarmed there too.)
    assert [call for call in watchdog.calls if call != "disarm"] == [event, 3 * event, event]
    assert watchdog.calls[-1] == "disarm" and watchdog.calls[1] == 3 * event


def test_an_event_that_rebuilds_an_untrusted_vm_arms_the_watchdog_with_a_builds_budget() -> None:
    class RecordingWatchdog:
        def __init__(self) -> None:
            self.armed: list[float] = []

        def arm(self, cpu_budget_seconds: float, guild_id: int) -> None:
            self.armed.append(cpu_budget_seconds)

        def disarm(self) -> None:
            pass

    hoarder = ScriptSource(
        "hoarder",
        "local keep = {} return { message = function() "
        "while true do keep[#keep + 1] = string.rep('x', 4096) end end }",
    )
    limits = SandboxLimits(max_memory=2 * MiB)
    watchdog = RecordingWatchdog()
    batches = [
        [DispatchEvent(1, 1, "message", message("fill"))],
        [DispatchEvent(2, 1, "message", message("after"))],
        [Shutdown(0, 5.0)],
    ]
    outbox = PickledOutbox()
    settings = WorkerSettings(limits, cpu_seconds=10.0, cpu_window_seconds=10.0)
    serve(
        1,
        PickledInbox(batches),
        outbox,
        SharedProvider(InMemoryScripts({1: [hoarder]})),
        settings,
        watchdog=watchdog,
    )
    event = limits.cpu_ms_per_event / 1000
    # The first event, its VM's build (one script and the build), then the second event, which
    # finds the VM untrusted and rebuilds it first.
    assert watchdog.armed == [event, 2 * event, event, 2 * event]
    assert any(isinstance(r, VmBuilt) for r in outbox.records[2:])
