"""A guild's counters as the facade keeps them and as /script stats sees them."""

from __future__ import annotations

from lua_runtime.pool.stats import GuildCounters
from lua_runtime.results import EventResult


def test_timer_runs_are_counted_apart_and_among_the_events() -> None:
    counters = GuildCounters()
    event = EventResult("message")
    event.scripts = ["greeter"]
    counters.record(event, 0.002)
    timers = EventResult("timer")
    timers.scripts = ["greeter"]
    # What the facade does with a TimerResult: record it like an event, and count the run.
    counters.record(timers, 0.001)
    counters.timer_runs += 1
    stats = counters.snapshot(7, worker_id=0, slow_lane=False, queue_depth=0, memory_bytes=None)
    assert (stats.events, stats.timer_runs) == (2, 1)
    assert stats.scripts[0].events == 2
    assert GuildCounters().snapshot(8, None, False, 0, None).timer_runs == 0
