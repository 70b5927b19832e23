"""The VM pool as the bot sees it: ``await pool.dispatch(guild_id, event, payload)``.

:class:`VmPool` routes each request to the worker that holds the guild's VM, through the
strategy chosen in :class:`PoolConfig`. It keeps, per guild, only a handle on that worker, the
count of requests still open, and the guild's counters (its :class:`GuildRecord`); the VMs belong to
the workers. Which guilds have a VM where, and when one is closed, is ``residency.py``'s part;
failing the requests a dead worker held, ``failures.py``'s.

The per-event path is one future and one message on the event loop. Messages leave for each worker
in one batch per turn of the loop; workers answer in batches too (see ``worker.py``), and each
batch is resolved by one callback on the loop.

Results and failures:

* ``dispatch`` returns the :class:`EventResult`, or raises a :class:`PoolError` that the bot can
  show the guild's admins as it is: :class:`EventDropped` (queue full, CPU budget spent),
  :class:`WorkerCrashed`, :class:`VmFailed`, :class:`ScriptsUnavailable`, :class:`PoolClosed`; or
  ``ValueError`` for an unknown event or a payload that is not plain data.
* ``reload`` returns the :class:`LoadReport` of the new VM, so the command that changed the scripts
  can show its load errors at once. A VM built because an event needed one (first use, after an
  eviction or a crash) has nobody waiting on its load: its errors and top-level output go to the
  ``on_load_errors(guild_id, errors, output)`` callback, on the event loop, before the event's own
  result is delivered.
* Timers (``task.wait``, ``task.delay``) run on the guild's worker when they are due, with nobody
  waiting on them: what a run produced goes to the ``on_timer_result(guild_id, result)`` callback,
  on the event loop, and counts in the guild's stats like an event. A guild with timers pending is
  not idle, so idle eviction keeps its VM (and its timers); closing VMs to make room past
  ``max_resident_vms``, a move to the slow lane and a worker crash drop them, and say so in the log.

Ordering: a guild's requests all go to one worker, which serves them in order. A guild moves to
another worker only when it has no request open (eviction), when its worker is gone (crash), or
when it moves to the slow lane (below), where its requests not started yet follow it in order
before any newer one is sent; so its order holds across moves too.

Noisy neighbours: each worker serves its guilds round-robin and drops the events of a guild whose
CPU budget is spent (``guild_slot.py``), which bounds what a noisy guild can take. With the thread and process
pools, a guild whose event runs out of CPU time or whose budget runs dry also moves, at once, to the *slow
lane*: a worker for guilds like it, where it no longer delays the quick guilds it shared a worker
with. Its old worker hands back the requests it had not started (:class:`ReleaseGuild`); they go to
the slow lane, followed by those that arrived during the move. Like any move, it starts there with
a fresh VM, and it goes back to an ordinary worker when that VM is next closed (idle, or to make
room).
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from lua_runtime.dry_run import DryRun
from lua_runtime.events import EVENT_NAMES
from lua_runtime.guild_vm import ScriptSource
from lua_runtime.limits import SandboxLimits
from lua_runtime.pool.config import PoolConfig, build_strategy
from lua_runtime.pool.errors import EventDropped, PoolClosed, WorkerCrashed, error_for
from lua_runtime.pool.failures import fail_held, fail_open_requests
from lua_runtime.pool.messages import (
    NO_REPLY,
    DispatchEvent,
    DryRunScript,
    FaultKind,
    InjectFault,
    LoadReport,
    LoadScript,
    ReleaseGuild,
    ReloadGuild,
    Reply,
    ReportStats,
    ResetGuild,
    Shutdown,
    TimerResult,
    TimersPending,
    VmAction,
    VmBuilt,
    WorkerExit,
    WorkerRecord,
    WorkerReport,
)
from lua_runtime.pool.provider import ScriptProvider, ScriptProviderFactory, provider_factory
from lua_runtime.pool.residency import GuildRecord, Residency
from lua_runtime.pool.stats import PoolStats, latency_bucket, worker_snapshot
from lua_runtime.pool.strategy import Strategy, WorkerHandle
from lua_runtime.pool.worker import WorkerSettings
from lua_runtime.results import EventResult, OutputLine, ScriptError

log = logging.getLogger(__name__)

#: ``on_load_errors(guild_id, errors, output)``: a VM was built for an event and loading its
#: scripts failed or printed something.
LoadErrorsCallback = Callable[[int, list[ScriptError], list[OutputLine]], None]

#: ``on_timer_result(guild_id, result)``: a run of the guild's timers produced actions, output or
#: errors (``result`` is an :class:`EventResult` for the event ``"timer"``).
TimerResultCallback = Callable[[int, EventResult], None]

#: Longest wait between two rounds of housekeeping (idle eviction, drop logging).
HOUSEKEEPING_SECONDS = 10.0
#: After a close's drain time, how long to wait for workers to report their exit.
EXIT_GRACE_SECONDS = 5.0

_EVENTS = frozenset(EVENT_NAMES)


def _not_started() -> asyncio.Future[Any]:
    raise RuntimeError("the pool is not started: use `async with VmPool(...)` or await start()")


class VmPool:
    """Guild VMs on workers, behind one async interface. Use ``async with`` or start()/close()."""

    def __init__(
        self,
        scripts: ScriptProvider | ScriptProviderFactory,
        limits: SandboxLimits | None = None,
        config: PoolConfig | None = None,
        *,
        on_load_errors: LoadErrorsCallback | None = None,
        on_timer_result: TimerResultCallback | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        """``scripts`` is a provider shared by all workers (thread-safe) or a factory called on
        each worker. ``clock`` (seconds, monotonic) times idleness, the CPU budget windows and
        timers."""
        self.config = config = config or PoolConfig()
        self.limits = limits = limits or SandboxLimits()
        settings = WorkerSettings(
            limits,
            config.guild_cpu_seconds,
            config.guild_cpu_window_seconds,
            translation_deadline_seconds=config.translation_deadline(limits),
            memory_bytes=config.worker_memory_bytes,
        )
        factory = provider_factory(scripts)
        self._strategy: Strategy = build_strategy(config, factory, settings, clock)
        #: Called on the event loop with (guild_id, errors, output) when a VM built for an event had
        #: load errors; the bot sets it to report them to the guild.
        self.on_load_errors = on_load_errors
        #: Called on the event loop with (guild_id, result) when a run of a guild's timers produced
        #: actions, output or errors; the bot sets it to carry them out and report them.
        self.on_timer_result = on_timer_result
        self._clock = clock
        self._guilds: dict[int, GuildRecord] = {}
        self._residency = Residency(self._strategy, config, clock)
        #: The residency's guilds, least recently used first: _send, on the per-event path, keeps
        #: the order.
        self._resident = self._residency.resident
        #: Request ids: 0 is NO_REPLY, so they start at 1.
        self._request_ids = itertools.count(1)
        self._queue_size = config.guild_queue_size
        self._loop: asyncio.AbstractEventLoop | None = None
        self._create_future: Callable[[], asyncio.Future[Any]] = _not_started
        self._housekeeping: asyncio.Task[None] | None = None
        self._exit_waiters: dict[int, list[asyncio.Future[None]]] = {}
        self._closing = False
        self._worker_crashes = 0
        self._unlogged: set[int] = set()

    # --- life cycle ----------------------------------------------------------------------------

    async def start(self) -> None:
        """Start the workers and the housekeeping task, on the running event loop."""
        if self._loop is not None:
            raise RuntimeError("the pool is already started")
        self._loop = loop = asyncio.get_running_loop()
        self._create_future = loop.create_future
        call_soon_threadsafe = loop.call_soon_threadsafe
        on_records = self._on_records

        def deliver(worker_id: int, records: list[WorkerRecord]) -> None:
            try:
                call_soon_threadsafe(on_records, worker_id, records)
            except RuntimeError:
                log.debug("VM worker %s answered after the event loop closed", worker_id)

        self._strategy.start(loop, deliver)
        self._housekeeping = loop.create_task(self._housekeep(), name="warden-vm-pool-housekeeping")
        log.info("VM pool started: strategy %s", self._strategy.name)

    async def close(self, drain_seconds: float = 5.0) -> None:
        """Stop taking requests; let workers finish what they hold for up to ``drain_seconds``.

        Every open request is resolved before this returns: with its result if its worker got to
        it, else with :class:`PoolClosed`.
        """
        if self._loop is None or self._closing:
            return
        self._closing = True
        if self._housekeeping is not None:
            self._housekeeping.cancel()
        workers = self._strategy.workers()
        exits = [self._exit_waiter(worker.worker_id) for worker in workers]
        for worker in workers:
            worker.send(Shutdown(NO_REPLY, drain_seconds))
        if exits:
            _, late = await asyncio.wait(exits, timeout=drain_seconds + EXIT_GRACE_SECONDS)
            if late:
                log.warning("%d VM workers did not stop in time; failing their requests", len(late))
        for worker in self._strategy.workers():
            fail_open_requests(worker, PoolClosed)
        for guild in self._guilds.values():
            if guild.moving:
                held, guild.moving = guild.moving, []
                fail_held(guild, held)
        log.info("VM pool closed")

    async def __aenter__(self) -> VmPool:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    # --- requests ------------------------------------------------------------------------------

    def submit(self, guild_id: int, event: str, payload: Mapping[str, Any]) -> asyncio.Future[Any]:
        """Queue ``event`` for the guild; the future resolves to its :class:`EventResult`.

        Raises at once (rather than through the future) when the request cannot be queued:
        ``ValueError`` for an unknown event, :class:`EventDropped` when the guild's queue is full,
        :class:`PoolClosed` when the pool is closing. This is the per-event path: it creates no
        coroutine and no task.
        """
        if event not in _EVENTS:
            raise ValueError(f"unknown event {event!r}; events are {', '.join(EVENT_NAMES)}")
        guild = self._guilds.get(guild_id) or self._guild(guild_id)
        if guild.pending >= self._queue_size:
            counters = guild.counters
            counters.dropped_queue_full += 1
            counters.unlogged_drops += 1
            self._unlogged.add(guild_id)
            raise EventDropped(
                guild_id,
                "queue_full",
                f"skipped: this server already has {guild.pending} events waiting for its scripts",
            )
        return self._send(guild, DispatchEvent(next(self._request_ids), guild_id, event, payload), True)

    def dispatch(self, guild_id: int, event: str, payload: Mapping[str, Any]) -> asyncio.Future[Any]:
        """Run ``event`` through the guild's scripts: ``await pool.dispatch(...)`` returns the
        :class:`EventResult`. The future itself is returned, not a coroutine wrapping it, so that
        an event costs no coroutine; a request that cannot be queued raises here, as from
        :meth:`submit`."""
        return self.submit(guild_id, event, payload)

    async def reload(self, guild_id: int) -> LoadReport:
        """Swap the guild's VM for one built from its stored scripts now, between two events.

        Events queued before the reload see the old scripts, events after it the new ones. Read
        failures raise :class:`ScriptsUnavailable` and leave the old VM in place.
        """
        guild = self._guild(guild_id)
        report: LoadReport = await self._send(guild, ReloadGuild(next(self._request_ids), guild_id), False)
        guild.counters.vm_builds += 1
        guild.counters.cpu_seconds += report.cpu_seconds
        return report

    async def reset(self, guild_id: int) -> None:
        """Close the guild's VM after its queued requests; its next event builds a fresh one."""
        guild = self._guild(guild_id)
        if guild.worker is not None:
            await self._send(guild, ResetGuild(next(self._request_ids), guild_id), False)

    async def dry_run(
        self,
        guild_id: int,
        script: ScriptSource,
        event: str,
        payload: Mapping[str, Any] | None = None,
    ) -> DryRun:
        """Run ``script`` against ``event`` in a fresh sandbox on the check lane, executing nothing
        (``/script test``); a sample payload when ``payload`` is None."""
        guild = self._guild(guild_id)
        action = DryRunScript(next(self._request_ids), guild_id, script, event, payload)
        run: DryRun = await self._send_check(guild, action)
        guild.counters.cpu_seconds += run.cpu_ms / 1000
        return run

    async def load_script(self, guild_id: int, script: ScriptSource) -> DryRun:
        """Check an upload on the check lane: translate ``script``, compile it and run its top
        level in a fresh sandbox with an empty store (``/script upload``, ``edit``, ``rollback``).

        The returned run's ``error`` is the first problem with the script. A source that stalls or
        exhausts its worker fails with :class:`WorkerCrashed` whose ``culprit`` is this guild (under
        ``processpool``: the supervisor killed the check lane's process; the next check starts a
        new one). No guild's VM lives on the check lane, so no other guild loses anything but a
        check of its own that was queued there.
        """
        guild = self._guild(guild_id)
        run: DryRun = await self._send_check(guild, LoadScript(next(self._request_ids), guild_id, script))
        guild.counters.cpu_seconds += run.cpu_ms / 1000
        return run

    async def inject_fault(
        self, guild_id: int, kind: FaultKind = "raise", delay_seconds: float = 0.0
    ) -> None:
        """Crash the worker holding the guild's VM and wait until the pool has recovered.

        Fault injection for tests and recovery drills: the worker fails as ``kind`` says (see
        :data:`~lua_runtime.pool.messages.FaultKind`; all but ``raise`` end a worker process, so
        they need the ``processpool`` strategy), its guilds lose their VMs, its open requests fail
        with :class:`WorkerCrashed`, and a replacement starts. ``delay_seconds`` lets a ``kill`` or
        ``abort`` land in the middle of the events sent just before.
        """
        self._check_open()
        if kind != "raise" and self.config.strategy != "processpool":
            raise ValueError(
                f"a {kind} fault ends the worker's process: only the processpool strategy survives it"
            )
        guild = self._guild(guild_id)
        worker = guild.worker or self._residency.place(guild)
        exited = self._exit_waiter(worker.worker_id)
        reason = f"fault injected for guild {guild_id}"
        worker.send(InjectFault(NO_REPLY, reason, kind, delay_seconds, guild_id))
        await exited

    async def stats(self, guild_id: int | None = None) -> PoolStats:
        """Counters of every live worker, and of one guild (or of every guild known)."""
        self._check_open()
        workers = self._strategy.workers()
        # A replacement still waiting out the restart back-off holds nothing yet: not asked.
        now = time.monotonic()
        asked = [worker for worker in workers if worker.starts_at <= now]
        futures: list[asyncio.Future[WorkerReport]] = []
        for worker in asked:
            request_id = next(self._request_ids)
            future = self._create_future()
            worker.pending[request_id] = (future, None, time.perf_counter(), False)
            worker.send(ReportStats(request_id))
            futures.append(future)
        # A worker that crashes meanwhile answers with an exception: its row shows no VMs.
        answers = dict(zip(asked, await asyncio.gather(*futures, return_exceptions=True), strict=True))
        memory: dict[int, int] = {}
        worker_stats = []
        for worker in workers:
            report = answers.get(worker)
            vm_memory = report.vm_memory if isinstance(report, WorkerReport) else {}
            memory.update(vm_memory)
            worker_stats.append(worker_snapshot(worker, vm_memory))
        if guild_id is None:
            chosen: Sequence[GuildRecord] = list(self._guilds.values())
        else:
            chosen = [self._guild(guild_id)]
        guild_stats = tuple(guild.stats(memory.get(guild.guild_id)) for guild in chosen)
        every = self._guilds.values()
        return PoolStats(
            strategy=self._strategy.name,
            workers=tuple(worker_stats),
            guilds=guild_stats,
            worker_crashes=self._worker_crashes,
            dropped_queue_full=sum(guild.counters.dropped_queue_full for guild in every),
            dropped_cpu_budget=sum(guild.counters.dropped_cpu_budget for guild in every),
        )

    def evict_idle(self) -> int:
        """Close the VMs of guilds idle for ``idle_seconds`` (those with nothing open and no timers
        pending: see ``residency.py``); returns how many were closed. The housekeeping task calls
        this periodically."""
        return self._residency.evict_idle()

    # --- routing -------------------------------------------------------------------------------

    def _check_open(self) -> None:
        if self._loop is None:
            raise RuntimeError("the pool is not started: use `async with VmPool(...)` or await start()")
        if self._closing:
            raise PoolClosed(None, "the bot is shutting down")

    def _guild(self, guild_id: int) -> GuildRecord:
        guild = self._guilds.get(guild_id)
        if guild is None:
            guild = self._guilds[guild_id] = GuildRecord(guild_id)
        return guild

    def _send(self, guild: GuildRecord, action: VmAction, is_event: bool) -> asyncio.Future[Any]:
        """Send a guild request to the guild's worker (placing the guild first if needed)."""
        if self._closing or self._loop is None:
            self._check_open()
        future = self._create_future()
        entry = (future, guild, time.perf_counter(), is_event)
        guild.pending += 1
        guild.last_used = self._clock()
        if guild.moving is not None:
            guild.moving.append((action, entry))
            return future
        worker = guild.worker
        if worker is None:
            worker = self._residency.place(guild, slow_lane=guild.slow_lane_next)
        else:
            self._resident.move_to_end(guild.guild_id)
        worker.pending[action.request_id] = entry
        worker.send(action)
        return future

    def _send_check(self, guild: GuildRecord, action: VmAction) -> asyncio.Future[Any]:
        """Send a check of code nobody has run yet (an upload, a dry run) to the check lane: a
        worker that holds no guild's VM, so that a check that takes its worker down costs no VM."""
        self._check_open()
        future = self._create_future()
        guild.pending += 1
        worker = self._strategy.check_lane()
        worker.pending[action.request_id] = (future, guild, time.perf_counter(), False)
        worker.send(action)
        return future

    def _move_to_slow_lane(self, guild: GuildRecord, old: WorkerHandle) -> None:
        """Take the guild off ``old`` now; :meth:`_finish_move` completes the move."""
        guild.moving = []
        request_id = next(self._request_ids)
        released = self._create_future()
        old.pending[request_id] = (released, None, time.perf_counter(), False)
        old.send(ReleaseGuild(request_id, guild.guild_id))
        released.add_done_callback(lambda done: self._finish_move(guild, old, done))

    def _finish_move(self, guild: GuildRecord, old: WorkerHandle, released: asyncio.Future[Any]) -> None:
        """Place the guild on the slow lane and send it, in order, the requests ``old`` handed back,
        then those that arrived during the move. If ``old`` crashed meanwhile, its requests already
        failed and only the newer ones remain."""
        unstarted = released.result() if released.exception() is None else []
        held, guild.moving = guild.moving or [], None
        if guild.worker is old:
            self._residency.release(guild)  # its timers ended with its VM there, which logged them
        requests = [(a, old.pending.pop(a.request_id)) for a in unstarted if a.request_id in old.pending]
        requests += held
        if self._closing:
            fail_held(guild, requests)
            return
        worker = self._residency.place(guild, slow_lane=True)
        for action, entry in requests:
            worker.pending[action.request_id] = entry
            worker.send(action)
        log.info(
            "guild %s: its events hit the CPU limits; moved to the slow lane with %d requests",
            guild.guild_id,
            len(requests),
        )

    def _exit_waiter(self, worker_id: int) -> asyncio.Future[None]:
        future = self._create_future()
        self._exit_waiters.setdefault(worker_id, []).append(future)
        return future

    # --- what workers send back ----------------------------------------------------------------

    def _on_records(self, worker_id: int, records: list[WorkerRecord]) -> None:
        """Resolve one batch of a worker's records, in order (runs on the event loop)."""
        worker = self._strategy.get(worker_id)
        if worker is None:
            return
        pending = worker.pending
        now = time.perf_counter()
        for record in records:
            if type(record) is Reply:
                entry = pending.pop(record.request_id, None)
                if entry is None:
                    continue
                future, guild, sent_at, is_event = entry
                if guild is not None:
                    guild.pending -= 1
                if is_event:
                    self._count_event(worker, guild, record, now - sent_at)
                if future.done():
                    continue  # the caller gave up waiting
                failure = record.failure
                if failure is None:
                    future.set_result(record.value)
                else:
                    future.set_exception(error_for(guild.guild_id if guild is not None else None, failure))
            elif type(record) is VmBuilt:
                self._vm_built(record)
            elif type(record) is TimerResult:
                self._timer_result(worker, record)
            elif type(record) is TimersPending:
                guild = self._guilds.get(record.guild_id)
                # From a worker the guild has left, the count is stale: its VM there is gone.
                if guild is not None and guild.worker is worker:
                    guild.timers = record.count
            elif type(record) is WorkerExit:
                self._worker_exited(worker, record)

    def _count_event(self, worker: WorkerHandle, guild: GuildRecord, reply: Reply, latency: float) -> None:
        counters = guild.counters
        if reply.failure is None:
            bucket = latency_bucket(latency)
            timed_out = counters.record(reply.value, reply.cpu_seconds, bucket)
            worker.counters.record(reply.value, reply.cpu_seconds, bucket)
            if timed_out:
                self._noisy(guild, worker)
        elif reply.failure.kind == "cpu_budget":
            counters.dropped_cpu_budget += 1
            counters.unlogged_drops += 1
            self._unlogged.add(guild.guild_id)
            self._noisy(guild, worker)
        elif reply.failure.kind in ("vm_failed", "scripts_unavailable"):
            counters.failed += 1

    def _noisy(self, guild: GuildRecord, worker: WorkerHandle) -> None:
        """The guild's event on ``worker`` hit the CPU limits: send it to the slow lane if it can go."""
        if (
            self._strategy.has_slow_lane
            and not worker.slow_lane
            and guild.worker is worker
            and guild.moving is None
        ):
            self._move_to_slow_lane(guild, worker)

    def _vm_built(self, record: VmBuilt) -> None:
        report = record.report
        guild = self._guild(record.guild_id)
        guild.counters.vm_builds += 1
        guild.counters.cpu_seconds += report.cpu_seconds
        if not (report.errors or report.output):
            return
        if self.on_load_errors is None:
            for error in report.errors:
                log.info("guild %s: loading %s failed: %s", record.guild_id, error.script, error)
            return
        try:
            self.on_load_errors(record.guild_id, list(report.errors), list(report.output))
        except Exception:
            log.exception("guild %s: the on_load_errors callback failed", record.guild_id)

    def _timer_result(self, worker: WorkerHandle, record: TimerResult) -> None:
        """Count a run of the guild's timers like an event, and hand over what it produced."""
        guild = self._guilds.get(record.guild_id)
        if guild is None:
            return
        result = record.result
        timed_out = guild.counters.record(result, record.cpu_seconds)
        guild.counters.timer_runs += 1
        worker.counters.record(result, record.cpu_seconds)
        if timed_out:
            self._noisy(guild, worker)
        if not (result.actions or result.output or result.errors):
            return
        if self.on_timer_result is None:
            for error in result.errors:
                log.info("guild %s: a timer of %s failed: %s", record.guild_id, error.script, error)
            return
        try:
            self.on_timer_result(record.guild_id, result)
        except Exception:
            log.exception("guild %s: the on_timer_result callback failed", record.guild_id)

    def _worker_exited(self, worker: WorkerHandle, record: WorkerExit) -> None:
        """Drop every handle on a worker that exited, fail what it still held, replace it if it
        crashed: the next event of each of its guilds builds a fresh VM on a live worker."""
        crashed = record.crash is not None
        replace = crashed and not self._closing
        overran = record.culprit is not None and record.overran
        self._strategy.remove(worker.worker_id, replace=replace, killed_for_overrun=overran)
        culprit = self._guilds.get(record.culprit) if record.culprit is not None else None
        if culprit is not None and self._strategy.has_slow_lane and not worker.checks:
            # Its work took a worker down: its next VM goes where it can only cost guilds like it.
            culprit.slow_lane_next = True
        for guild_id in worker.guilds:
            self._residency.forget(self._guilds[guild_id])
        if crashed:
            self._worker_crashes += 1
            log.error(
                "VM worker %s crashed (%s): %d guilds lose their VMs, %d requests fail",
                worker.worker_id,
                record.crash,
                len(worker.guilds),
                len(worker.pending),
            )
            fail_open_requests(worker, WorkerCrashed, record.crash, record.culprit, record.overran)
        else:
            fail_open_requests(worker, PoolClosed)
        for waiter in self._exit_waiters.pop(worker.worker_id, ()):
            if not waiter.done():
                waiter.set_result(None)

    # --- housekeeping --------------------------------------------------------------------------

    async def _housekeep(self) -> None:
        interval = min(HOUSEKEEPING_SECONDS, self.config.idle_seconds / 2)
        while True:
            await asyncio.sleep(interval)
            try:
                self.evict_idle()
                self._log_drops(interval)
            except Exception:
                log.exception("VM pool housekeeping failed")

    def _log_drops(self, interval: float) -> None:
        """Log the events dropped since the last round, one line per guild."""
        for guild_id in self._unlogged:
            counters = self._guilds[guild_id].counters
            log.warning(
                "guild %s: events dropped in the last %g s: %d (in all: %d queue full, %d CPU budget)",
                guild_id,
                interval,
                counters.unlogged_drops,
                counters.dropped_queue_full,
                counters.dropped_cpu_budget,
            )
            counters.unlogged_drops = 0
        self._unlogged.clear()
