"""What the VM pool counts, per guild, per script and per worker, and the snapshots it hands out.

The facade counts on the event loop, from the replies it resolves: that is where a request's whole
latency (queueing included) is known, and where counts survive the VM or the worker that produced
them. :meth:`VmPool.stats` turns the live counters into frozen snapshots for ``/script stats`` and
for logs.
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

from lua_runtime.results import EventResult

if TYPE_CHECKING:  # strategy.py counts with the classes below
    from lua_runtime.pool.strategy import WorkerHandle

#: Upper bounds of the latency buckets, in seconds: 0.1 ms doubling up to about 13 s; one more
#: bucket counts everything slower.
LATENCY_BOUNDS: tuple[float, ...] = tuple(0.0001 * 2**i for i in range(18))


def latency_bucket(seconds: float) -> int:
    """The index of the bucket ``seconds`` falls in."""
    return bisect_left(LATENCY_BOUNDS, seconds)


@dataclass(frozen=True, slots=True)
class LatencyHistogram:
    """Request latencies, from the call into the pool to the resolved result.

    ``counts[i]`` counts latencies in ``(bounds[i-1], bounds[i]]``; the last count is for latencies
    above ``bounds[-1]``.
    """

    bounds: tuple[float, ...]
    counts: tuple[int, ...]

    @property
    def total(self) -> int:
        return sum(self.counts)

    def quantile(self, q: float) -> float | None:
        """The upper bound of the bucket holding quantile ``q`` (0 < q <= 1); None when empty.

        For the last, open bucket the answer is ``inf``.
        """
        if not 0 < q <= 1:
            raise ValueError(f"quantile must be in (0, 1], got {q}")
        total = self.total
        if total == 0:
            return None
        rank = q * total
        seen = 0
        for i, count in enumerate(self.counts):
            seen += count
            if seen >= rank:
                return self.bounds[i] if i < len(self.bounds) else float("inf")
        return float("inf")


@dataclass(frozen=True, slots=True)
class ScriptStats:
    """One script's share of its guild's events.

    ``cpu_seconds`` is the CPU time of the events the script ran in, split equally among the scripts
    that ran for each event: the VM measures CPU per event, not per script, so this is exact for a
    guild with one script handling the event and an even split otherwise.
    """

    script: str
    events: int
    errors: int
    time_limit_hits: int
    cpu_seconds: float


@dataclass(frozen=True, slots=True)
class GuildStats:
    """One guild's counters since the pool started."""

    guild_id: int
    #: The worker holding the guild's VM, or None when it has none (never used, evicted, crashed).
    worker_id: int | None
    #: True while its VM lives on the slow lane (its events hit the CPU limits; see ``facade.py``).
    slow_lane: bool
    #: Events its scripts ran (dropped and failed ones are counted apart), runs of its timers included.
    events: int
    #: Script errors, summed over its scripts.
    errors: int
    #: Events that ran out of CPU time (each counts once, however many scripts it stopped).
    time_limit_hits: int
    #: Worker CPU spent on its events, VM builds, reloads and dry runs.
    cpu_seconds: float
    #: Requests waiting for or running on its worker right now.
    queue_depth: int
    dropped_queue_full: int
    dropped_cpu_budget: int
    #: Events that failed: its worker crashed, its VM failed, or its scripts could not be read.
    failed: int
    vm_builds: int
    evictions: int
    #: Runs of its timers (resumptions after task.wait, task.delay calls): each is also one of
    #: ``events``, with its errors and CPU time counted as an event's.
    timer_runs: int
    #: Bytes its VM holds, or None when it has no VM.
    memory_bytes: int | None
    latency: LatencyHistogram
    scripts: tuple[ScriptStats, ...]


@dataclass(frozen=True, slots=True)
class WorkerStats:
    """One live worker's counters since it started."""

    worker_id: int
    #: True for the thread pool's slow lane, the worker for guilds whose events hit the CPU limits.
    slow_lane: bool
    #: True for the check lane, the worker that checks uploads and runs dry runs (it holds no VM).
    checks: bool
    #: Guilds placed on the worker.
    guilds: int
    #: Guild VMs it holds, and their heap bytes in total.
    resident_vms: int
    memory_bytes: int
    events: int
    errors: int
    time_limit_hits: int
    cpu_seconds: float
    #: Requests sent to it and not answered yet.
    queue_depth: int
    latency: LatencyHistogram


@dataclass(frozen=True, slots=True)
class PoolStats:
    """A snapshot of the pool: its live workers and the guilds asked about."""

    strategy: str
    workers: tuple[WorkerStats, ...]
    guilds: tuple[GuildStats, ...]
    worker_crashes: int
    dropped_queue_full: int
    dropped_cpu_budget: int


def worker_snapshot(worker: WorkerHandle, vm_memory: Mapping[int, int]) -> WorkerStats:
    """The stats of ``worker``, whose guild VMs hold ``vm_memory`` (heap bytes by guild)."""
    counters = worker.counters
    return WorkerStats(
        worker_id=worker.worker_id,
        slow_lane=worker.slow_lane,
        checks=worker.checks,
        guilds=len(worker.guilds),
        resident_vms=len(vm_memory),
        memory_bytes=sum(vm_memory.values()),
        events=counters.events,
        errors=counters.errors,
        time_limit_hits=counters.time_limit_hits,
        cpu_seconds=counters.cpu_seconds,
        queue_depth=len(worker.pending),
        latency=counters.histogram(),
    )


# --- live counters (event-loop side) ----------------------------------------------------------


class ScriptCounters:
    __slots__ = ("cpu_seconds", "errors", "events", "time_limit_hits")

    def __init__(self) -> None:
        self.events = 0
        self.errors = 0
        self.time_limit_hits = 0
        self.cpu_seconds = 0.0

    def snapshot(self, script: str) -> ScriptStats:
        return ScriptStats(script, self.events, self.errors, self.time_limit_hits, self.cpu_seconds)


class EventCounters:
    """Counts of finished events and their latencies: what guilds and workers both keep."""

    __slots__ = ("cpu_seconds", "errors", "events", "latency", "time_limit_hits")

    def __init__(self) -> None:
        self.events = 0
        self.errors = 0
        self.time_limit_hits = 0
        self.cpu_seconds = 0.0
        self.latency = [0] * (len(LATENCY_BOUNDS) + 1)

    def record(self, result: EventResult, cpu_seconds: float, latency_bucket: int | None = None) -> bool:
        """Count one finished event, and its latency when a bucket is given (runs of timers have
        none); True when it ran out of CPU time."""
        self.events += 1
        self.cpu_seconds += cpu_seconds
        if latency_bucket is not None:
            self.latency[latency_bucket] += 1
        errors = result.errors
        if errors:
            self.errors += len(errors)
            if any(error.kind == "time_limit" for error in errors):
                self.time_limit_hits += 1
                return True
        return False

    def histogram(self) -> LatencyHistogram:
        return LatencyHistogram(LATENCY_BOUNDS, tuple(self.latency))


class GuildCounters(EventCounters):
    """A guild's counters, with its per-script counts and what happened to its VM and requests."""

    __slots__ = (
        "dropped_cpu_budget",
        "dropped_queue_full",
        "evictions",
        "failed",
        "scripts",
        "timer_runs",
        "unlogged_drops",
        "vm_builds",
    )

    def __init__(self) -> None:
        super().__init__()
        self.dropped_queue_full = 0
        self.dropped_cpu_budget = 0
        self.failed = 0
        self.vm_builds = 0
        self.evictions = 0
        #: Runs of the guild's timers; the facade counts one for each TimerResult, besides record().
        self.timer_runs = 0
        #: Drops not yet written to the log (the pool logs them periodically, not one by one).
        self.unlogged_drops = 0
        self.scripts: dict[str, ScriptCounters] = {}

    def record(self, result: EventResult, cpu_seconds: float, latency_bucket: int | None = None) -> bool:
        # The base class by name, not super(): this runs once per event.
        timed_out = EventCounters.record(self, result, cpu_seconds, latency_bucket)
        scripts = self.scripts
        names = result.scripts
        share = cpu_seconds / len(names) if names else 0.0
        for name in names:
            counters = scripts.get(name)
            if counters is None:
                counters = scripts[name] = ScriptCounters()
            counters.events += 1
            counters.cpu_seconds += share
        errors = result.errors
        if errors:
            blamed = False
            for error in errors:
                counters = scripts.get(error.script)
                if counters is None:
                    counters = scripts[error.script] = ScriptCounters()
                counters.errors += 1
                # The first time-limit error names the script that spent the budget; the ones
                # after it are scripts that did not get to run.
                if error.kind == "time_limit" and not blamed:
                    counters.time_limit_hits += 1
                    blamed = True
        return timed_out

    def snapshot(
        self,
        guild_id: int,
        worker_id: int | None,
        slow_lane: bool,
        queue_depth: int,
        memory_bytes: int | None,
    ) -> GuildStats:
        return GuildStats(
            guild_id=guild_id,
            worker_id=worker_id,
            slow_lane=slow_lane,
            events=self.events,
            errors=self.errors,
            time_limit_hits=self.time_limit_hits,
            cpu_seconds=self.cpu_seconds,
            queue_depth=queue_depth,
            dropped_queue_full=self.dropped_queue_full,
            dropped_cpu_budget=self.dropped_cpu_budget,
            failed=self.failed,
            vm_builds=self.vm_builds,
            evictions=self.evictions,
            timer_runs=self.timer_runs,
            memory_bytes=memory_bytes,
            latency=self.histogram(),
            scripts=tuple(counters.snapshot(name) for name, counters in sorted(self.scripts.items())),
        )
