"""The worker loop that every VM distribution strategy runs: the seed's ``ThreadEntry``.

A strategy starts workers (threads or processes); each worker calls :func:`serve`, which
sets up the worker's script provider and runs a :class:`WorkerLoop` over a request channel
(:class:`Inbox`) and a reply channel (:class:`Outbox`). The loop owns its guild VMs outright: no
other object holds one, so when a worker dies its VMs go with it, and the facade's guild -> worker
handles are all that has to be dropped.

Per wake-up the loop takes everything queued for it, files each guild's requests in that guild's
own queue, then serves the queues round-robin, one request per guild per round, so a guild with a
long queue cannot hold back the others on its worker. Finished replies are sent back together, at
most every :data:`SLICE_SECONDS`, so that one hand-off to the event loop carries many results.
Worker threads that share a :class:`Turn` (the thread pool's) serve their light guilds' requests
holding it, so that one of them at a time runs Python (see ``turn.py``).

A guild leaves a worker in one of three ways: its VM is closed (:class:`ResetGuild`, for idleness or
to make room), the worker dies, or the facade takes the guild away at once (:class:`ReleaseGuild`,
to move a noisy guild to the slow lane), and the worker hands back the guild's requests it has not
started.

Each guild's place on its worker is a :class:`GuildSlot` (``guild_slot.py``): its VM, its queue,
its CPU budget (an event that finds it spent is dropped with the reason ``cpu_budget``) and its
action window. Checks of code nobody has run yet (an upload, a dry run) run in sandboxes of their
own, apart from the guild's VM (``checks.py``).

Timers (the ``task`` library) belong to the guild's VM; the loop only wakes them, when the
:class:`TimerHeap` (``timer_heap.py``) says they are due, with a run of them filed in the guild's own
queue. A run leaves as a :class:`TimerResult`; a change in a guild's number of pending timers as a
:class:`TimersPending`, which keeps the facade from closing the VM as idle.
"""

from __future__ import annotations

import logging
import time
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Protocol

from lua_runtime.guild_vm import GuildVM, Translator
from lua_runtime.kv_store import KeyValueStore
from lua_runtime.limits import SandboxLimits
from lua_runtime.luau import translate
from lua_runtime.pool.checks import CHECKS
from lua_runtime.pool.errors import RequestFailed
from lua_runtime.pool.guild_slot import GuildSlot, RunTimers
from lua_runtime.pool.messages import (
    NO_REPLY,
    DispatchEvent,
    DryRunScript,
    Failure,
    GuildAction,
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
from lua_runtime.pool.provider import ScriptProvider, ScriptProviderFactory
from lua_runtime.pool.timer_heap import TimerHeap
from lua_runtime.pool.turn import Turn
from lua_runtime.pool.watchdog import KVOffTheClock, Watchdog
from lua_runtime.translation_process import DEFAULT_MEMORY_BYTES, shared_translator

log = logging.getLogger(__name__)

#: Longest a worker keeps finished replies before sending them back (unless one request runs
#: longer). Batching the hand-off is what keeps the event loop's per-event cost low.
SLICE_SECONDS = 0.002
#: Most requests served between two hand-offs.
SLICE_REQUESTS = 256


class Inbox(Protocol):
    """A worker's request channel."""

    def take(self, timeout: float | None) -> list[VmAction]:
        """Every request queued so far, in order. When none is queued, wait up to ``timeout``
        seconds for one: ``0`` does not wait, ``None`` waits until one arrives. May return an empty
        list once the time is up."""
        ...


class Outbox(Protocol):
    """A worker's reply channel."""

    def send(self, records: list[WorkerRecord]) -> None:
        """Hand ``records`` (in order) to the facade. Called from the worker; must not block long."""
        ...


@dataclass(frozen=True, slots=True)
class WorkerSettings:
    """What a worker needs to know, picklable so it can be handed to a worker process."""

    limits: SandboxLimits
    #: A guild's CPU budget: seconds of CPU per window.
    cpu_seconds: float
    cpu_window_seconds: float
    #: Worker threads of the bot's process translate Luau in a child process with this deadline
    #: (``translation_process.py``): a stalled translation must never hold the bot's GIL. None for
    #: worker processes, which translate themselves under the pool's supervisor.
    translation_deadline_seconds: float | None = None
    #: Address space of a translation child, or of a worker process, in bytes (an rlimit).
    memory_bytes: int = DEFAULT_MEMORY_BYTES

    def translator(self) -> Translator:
        """How this worker turns Luau into Lua: in a shared child process, or in-process."""
        if self.translation_deadline_seconds is None:
            return translate
        return shared_translator(self.translation_deadline_seconds, self.memory_bytes)


class InjectedFault(RuntimeError):
    """Raised by a worker that was sent :class:`InjectFault`."""


#: The requests that may be served holding the turn: what a light guild's scripts do all day.
_LIGHT_KINDS = frozenset({DispatchEvent, RunTimers})


def _load_report(vm: GuildVM, cpu_seconds: float) -> LoadReport:
    return LoadReport(
        guild_id=vm.guild_id,
        scripts=tuple(script.name for script in vm.scripts),
        errors=tuple(vm.load_errors),
        output=tuple(vm.load_output),
        handled_events=vm.handled_events,
        cpu_seconds=cpu_seconds,
    )


class WorkerLoop:
    """Serves requests for the guilds placed on one worker, until told to shut down.

    An exception that escapes :meth:`run` is a crash of the worker. Guest faults never raise (the
    VM turns them into errors in the result), and an unexpected error from one guild's VM costs
    only that VM; what escapes is a fault of the loop itself, or an injected one.
    """

    def __init__(
        self,
        worker_id: int,
        inbox: Inbox,
        outbox: Outbox,
        scripts: ScriptProvider,
        settings: WorkerSettings,
        clock: Callable[[], float] = time.monotonic,
        watchdog: Watchdog | None = None,
        turn: Turn | None = None,
    ) -> None:
        self.worker_id = worker_id
        self._inbox = inbox
        self._outbox = outbox
        self._scripts = scripts
        self._limits = settings.limits
        self._translate = settings.translator()
        self._budget = settings.cpu_seconds
        self._refill_rate = settings.cpu_seconds / settings.cpu_window_seconds
        self._clock = clock
        self._watchdog = watchdog
        self._turn = turn
        kv_store = scripts.kv_store
        #: The store the guild VMs get: the provider's, off the watchdog's clock when there is one.
        self._vm_kv: KeyValueStore | None = (
            KVOffTheClock(kv_store, watchdog) if kv_store is not None and watchdog is not None else kv_store
        )
        #: This thread's CPU time when guild work was last charged (see _charge).
        self._cpu_mark = 0.0
        self._event_budget = settings.limits.cpu_ms_per_event / 1000
        self._slots: dict[int, GuildSlot] = {}
        self._ready: deque[GuildSlot] = deque()
        self._records: list[WorkerRecord] = []
        self._stopping = False
        self._drain_deadline = 0.0
        self._timers = TimerHeap(clock)
        self._handlers: dict[type, Callable[[GuildSlot, GuildAction], None]] = {
            DispatchEvent: self._dispatch,  # type: ignore[dict-item]
            ReloadGuild: self._reload,  # type: ignore[dict-item]
            ResetGuild: self._reset,  # type: ignore[dict-item]
            DryRunScript: self._check,  # type: ignore[dict-item]
            LoadScript: self._check,  # type: ignore[dict-item]
            RunTimers: self._run_timers,  # type: ignore[dict-item]
        }

    # --- the loop ------------------------------------------------------------------------------

    def run(self, received: Iterable[VmAction] = ()) -> None:
        """Take requests and serve them until a :class:`Shutdown` has been carried out.
        ``received``: requests that arrived before the loop was built (a delayed start)."""
        for action in received:
            self._accept(action)
        while True:
            busy = self._ready or self._records or self._stopping
            self._take(0 if busy else self._timers.seconds_to_next())
            if self._timers and not self._stopping:
                self._wake_due_guilds()
            if self._stopping:
                if time.monotonic() >= self._drain_deadline:
                    self._fail_queued(Failure("pool_closed", "the bot is shutting down"))
                if not self._ready:
                    break
            self._run_slice()
        self._flush()

    def _take(self, timeout: float | None) -> None:
        """File what the inbox holds, waiting up to ``timeout`` for something (see Inbox.take)."""
        for action in self._inbox.take(timeout=timeout):
            self._accept(action)

    def abandon(self) -> list[WorkerRecord]:
        """Give up after a crash: drop every guild VM now, and return the records finished but not
        sent yet (a crashing worker still delivers them).

        The VMs are dropped here rather than left to the collector, because the crash's traceback
        (kept by a log handler, say) still refers to this loop.
        """
        for slot in self._slots.values():
            slot.vm = None
        self._slots.clear()
        self._ready.clear()
        self._timers.clear()
        records, self._records = self._records, []
        return records

    def _flush(self) -> None:
        if self._records:
            records, self._records = self._records, []
            self._outbox.send(records)

    def _accept(self, action: VmAction) -> None:
        kind = type(action)
        if kind in self._handlers:
            guild_id = action.guild_id  # type: ignore[union-attr]
            slot = self._slots.get(guild_id)
            if slot is None:
                slot = self._slots[guild_id] = GuildSlot(guild_id, self._budget, self._clock())
            slot.queue.append(action)  # type: ignore[arg-type]
            if not slot.scheduled:
                slot.scheduled = True
                self._ready.append(slot)
        elif kind is ReleaseGuild:
            self._release(action.guild_id, action.request_id)  # type: ignore[union-attr]
        elif kind is ReportStats:
            self._records.append(Reply(action.request_id, self._report()))
        elif kind is Shutdown:
            self._stopping = True
            self._drain_deadline = time.monotonic() + action.drain_seconds  # type: ignore[union-attr]
        elif kind is InjectFault:
            raise InjectedFault(action.reason)  # type: ignore[union-attr]
        else:
            raise TypeError(f"not a VmAction: {action!r}")

    def _release(self, guild_id: int, request_id: int) -> None:
        slot = self._slots.pop(guild_id, None)
        unstarted: list[GuildAction] = []
        if slot is not None:
            # The guild's timers go with its VM; a run of them is the loop's own, not the facade's.
            unstarted = [action for action in slot.queue if type(action) is not RunTimers]
            if slot.vm is not None and slot.vm.pending_timers:
                log.info("guild %s: %d pending timers dropped as it leaves", guild_id, slot.vm.pending_timers)
            if slot.scheduled:
                self._ready.remove(slot)
        self._records.append(Reply(request_id, unstarted))

    def _run_slice(self) -> None:
        """Serve queued requests round-robin, one per guild per round, for up to one slice, then
        send the records.

        With a :class:`Turn`, the slice asks for it once, when it meets the first light guild's
        event or timers, and serves holding it until it meets a request that is not light; what
        follows is served without it. The turn is left at the end of the slice whatever happens,
        after the records leave, so that the next holder knows the event loop has them to take in
        (see ``InterpreterTurn.enter``).
        """
        ready, slots, handlers, records = self._ready, self._slots, self._handlers, self._records
        watchdog, budget, turn = self._watchdog, self._event_budget, self._turn
        deadline = time.perf_counter() + SLICE_SECONDS
        in_turn = asked = False
        self._cpu_mark = time.thread_time()
        try:
            for _ in range(SLICE_REQUESTS):
                if not ready:
                    break
                if turn is not None:
                    light = ready[0].light and type(ready[0].queue[0]) in _LIGHT_KINDS
                    if in_turn and not light:
                        turn.leave()
                        in_turn = False
                    elif light and not asked:
                        asked = True
                        self._flush()  # what is finished need not wait for the turn
                        in_turn = turn.enter()
                        if in_turn:
                            # The slice's time is for serving: waiting for the turn does not count,
                            # and what arrived meanwhile is served in this turn, not the next one.
                            deadline = time.perf_counter() + SLICE_SECONDS
                            self._take(0)
                            self._cpu_mark = time.thread_time()  # taking requests is nobody's work
                            continue  # the front of the round may have changed: look again
                slot = ready.popleft()
                action = slot.queue.pop(0)
                if watchdog is not None:
                    watchdog.arm(budget, slot.guild_id)
                try:
                    handlers[type(action)](slot, action)
                except RequestFailed as failed:
                    if action.request_id != NO_REPLY:
                        records.append(Reply(action.request_id, failure=failed.failure))
                    self._cpu_mark = time.thread_time()  # a failed request costs its guild nothing
                if slot.timers_reported or (slot.vm is not None and slot.vm.pending_timers):
                    self._note_timers(slot)
                if slot.queue:
                    ready.append(slot)
                else:
                    slot.scheduled = False
                    if slot.vm is None:
                        del slots[slot.guild_id]
                if time.perf_counter() >= deadline:
                    break
            if watchdog is not None:
                watchdog.disarm()
            self._flush()
        finally:
            if in_turn:
                turn.leave()  # type: ignore[union-attr]

    def _fail_queued(self, failure: Failure) -> None:
        for slot in self._ready:
            for action in slot.queue:
                if action.request_id != NO_REPLY:
                    self._records.append(Reply(action.request_id, failure=failure))
            slot.queue.clear()
            slot.scheduled = False
        self._ready.clear()

    # --- the guild requests --------------------------------------------------------------------

    def _dispatch(self, slot: GuildSlot, action: DispatchEvent) -> None:
        if not slot.refill(self._clock(), self._refill_rate, self._budget):
            raise RequestFailed(
                Failure(
                    "cpu_budget",
                    f"skipped: this server's scripts used their CPU budget ({self._budget:g} s of CPU "
                    "per window); events run again as it refills",
                )
            )
        vm = slot.vm if slot.vm is not None else self._build_on_demand(slot)
        if self._watchdog is not None:
            self._arm_for_rebuild(self._watchdog, slot, vm)
        allowance = slot.action_allowance(self._clock, self._limits)
        try:
            result = vm.dispatch(action.event, action.payload, allowance)
        except ValueError as exc:
            raise RequestFailed(Failure("invalid_request", str(exc))) from None
        except Exception as exc:
            raise self._vm_failed(slot, exc, f"running the {action.event} event") from None
        cpu = self._charge(slot)
        slot.note_cost(cpu)
        if result.actions:
            slot.record_actions(self._clock(), len(result.actions), self._limits)
        if vm.rebuilds != slot.rebuilds:
            self._note_rebuild(slot, vm)
        self._records.append(Reply(action.request_id, result, None, cpu))

    def _arm_for_rebuild(self, watchdog: Watchdog, slot: GuildSlot, vm: GuildVM) -> None:
        """A VM that stopped being trustworthy rebuilds itself from its scripts before it runs
        anything: give the watchdog the budget of a build, not of one event."""
        if not vm.trusted:
            watchdog.arm(self._build_budget(len(vm.scripts)), slot.guild_id)

    def _build_budget(self, scripts: int) -> float:
        """The CPU budget of building a VM of ``scripts`` scripts: each script's top level runs under
        its own event budget, and the build itself costs about one more."""
        return (scripts + 1) * self._event_budget

    def _run_timers(self, slot: GuildSlot, action: RunTimers) -> None:
        slot.timers_queued = False
        vm = slot.vm
        if vm is None:
            self._charge(slot)
            return  # the VM was closed after the run was filed: its timers went with it
        if not slot.refill(self._clock(), self._refill_rate, self._budget):
            message = (
                f"timer dropped: this server's scripts used their CPU budget ({self._budget:g} s of "
                "CPU per window)"
            )
            dropped = vm.drop_due_timers(message)
            self._records.append(TimerResult(slot.guild_id, dropped, self._charge(slot)))
            return
        if self._watchdog is not None:
            # A run starts resumptions until it has used one event budget; the last may use another.
            self._watchdog.arm(2 * self._event_budget, slot.guild_id)
            self._arm_for_rebuild(self._watchdog, slot, vm)
        try:
            result = vm.run_timers(slot.action_allowance(self._clock, self._limits))
        except Exception as exc:
            raise self._vm_failed(slot, exc, "running its timers") from None
        cpu = self._charge(slot)
        slot.note_cost(cpu)
        if result.actions:
            slot.record_actions(self._clock(), len(result.actions), self._limits)
        if vm.rebuilds != slot.rebuilds:
            self._note_rebuild(slot, vm)
        self._records.append(TimerResult(slot.guild_id, result, cpu))

    def _reload(self, slot: GuildSlot, action: ReloadGuild) -> None:
        # The old VM keeps serving until the new one is complete: a failed read changes nothing.
        vm, report = self._build(slot)
        slot.replace_vm(vm)
        self._records.append(Reply(action.request_id, report, None, report.cpu_seconds))

    def _reset(self, slot: GuildSlot, action: ResetGuild) -> None:
        slot.replace_vm(None)
        self._charge(slot)  # freeing a big VM takes time too
        if action.request_id != NO_REPLY:
            self._records.append(Reply(action.request_id))

    def _check(self, slot: GuildSlot, action: DryRunScript | LoadScript) -> None:
        """Run a check of code nobody has run yet in a sandbox of its own (see checks.py)."""
        check = CHECKS[type(action)]
        if self._watchdog is not None:
            self._watchdog.arm(check.cpu_budgets * self._event_budget, slot.guild_id)
        run = check.carry_out(action, self._limits, self._translate, self._scripts.kv_store)
        self._records.append(Reply(action.request_id, run, None, self._charge(slot)))

    # --- timers --------------------------------------------------------------------------------

    def _wake_due_guilds(self) -> None:
        """File a run of timers in the queue of each guild whose earliest timer is due."""
        for slot in self._timers.take_due(self._slots):
            slot.timers_queued = True
            slot.queue.append(RunTimers(NO_REPLY, slot.guild_id))
            if not slot.scheduled:
                slot.scheduled = True
                self._ready.append(slot)

    def _note_timers(self, slot: GuildSlot) -> None:
        """After a request of the guild: tell the facade if its pending-timer count changed, and
        put its earliest timer in the heap unless a run of them is already filed."""
        vm = slot.vm
        pending = vm.pending_timers if vm is not None else 0
        if pending != slot.timers_reported:
            slot.timers_reported = pending
            self._records.append(TimersPending(slot.guild_id, pending))
        if vm is None or not pending or slot.timers_queued:
            return
        due = vm.next_timer_due
        if due is not None:
            self._timers.wake(slot, due)

    # --- guild VMs -----------------------------------------------------------------------------

    def _charge(self, slot: GuildSlot) -> float:
        """Take the CPU this thread used since the last charge from the guild's bucket; return it.

        The loop charges after each piece of guild work (a build, an event, a run of timers, a dry
        run, closing a VM) and marks the clock at the start of each slice, after taking requests
        mid-slice and after a failed request: one read of the CPU clock per request, where a read
        before and after would take two (each read is a system call of about half a microsecond, on
        the path of every event). The loop's own bookkeeping between two requests, a microsecond or
        two, is charged with the next one.
        """
        now = time.thread_time()
        cpu = now - self._cpu_mark
        self._cpu_mark = now
        slot.tokens -= cpu
        return cpu

    def _build(self, slot: GuildSlot) -> tuple[GuildVM, LoadReport]:
        """A new VM for the guild, from its stored scripts, and what loading them produced."""
        guild_id = slot.guild_id
        try:
            scripts = self._scripts.scripts_for(guild_id)
        except Exception as exc:
            log.exception("guild %s: cannot read its scripts", guild_id)
            raise RequestFailed(
                Failure("scripts_unavailable", f"this server's scripts could not be read ({exc})")
            ) from None
        if self._watchdog is not None:
            self._watchdog.arm(self._build_budget(len(scripts)), guild_id)
        try:
            vm = GuildVM(guild_id, scripts, self._limits, self._vm_kv, self._clock, self._translate)
        except Exception as exc:
            raise self._vm_failed(slot, exc, "building its VM") from None
        return vm, _load_report(vm, self._charge(slot))

    def _build_on_demand(self, slot: GuildSlot) -> GuildVM:
        vm, report = self._build(slot)
        slot.replace_vm(vm)
        self._records.append(VmBuilt(slot.guild_id, report))
        return vm

    def _note_rebuild(self, slot: GuildSlot, vm: GuildVM) -> None:
        """The VM rebuilt itself from its scripts after a memory-limit error: report the load."""
        slot.rebuilds = vm.rebuilds
        self._records.append(VmBuilt(slot.guild_id, _load_report(vm, 0.0)))

    def _vm_failed(self, slot: GuildSlot, exc: Exception, doing: str) -> RequestFailed:
        """Close a VM that raised what it never should: it costs this guild its VM, nothing more."""
        log.error("guild %s: its VM failed while %s; closing it", slot.guild_id, doing, exc_info=exc)
        slot.replace_vm(None)
        return RequestFailed(
            Failure(
                "vm_failed",
                f"this server's VM failed while {doing} ({type(exc).__name__}); "
                "it was closed and the next event starts a fresh one",
            )
        )

    def _report(self) -> WorkerReport:
        memory = {slot.guild_id: slot.vm.memory_used() for slot in self._slots.values() if slot.vm}
        queued = sum(len(slot.queue) for slot in self._ready)
        return WorkerReport(self.worker_id, memory, queued)


def _wait_to_start(inbox: Inbox, start_at: float) -> list[VmAction]:
    """Wait until ``start_at`` (``time.monotonic``), keeping what arrives, unless a
    :class:`Shutdown` arrives first."""
    received: list[VmAction] = []
    while (left := start_at - time.monotonic()) > 0:
        arrived = inbox.take(timeout=left)
        received.extend(arrived)
        if any(type(action) is Shutdown for action in arrived):
            break
    return received


def serve(
    worker_id: int,
    inbox: Inbox,
    outbox: Outbox,
    scripts: ScriptProviderFactory,
    settings: WorkerSettings,
    clock: Callable[[], float] = time.monotonic,
    watchdog: Watchdog | None = None,
    turn: Turn | None = None,
    start_at: float = 0.0,
) -> None:
    """Run one worker from setup to exit, and tell the facade how it ended.

    The worker's last record is always a :class:`WorkerExit`: ``crash`` is None after a shutdown,
    and says what escaped the loop otherwise. Replies finished before a crash are sent first, so
    only the requests the worker had not finished fail.

    ``start_at``: when to set up (on ``time.monotonic``, which worker processes share with the
    bot), for a replacement of workers that died young (the strategy's restart back-off). Requests
    that arrive before then wait for the loop; a :class:`Shutdown` ends the wait at once.
    """
    loop: WorkerLoop | None = None
    try:
        received = _wait_to_start(inbox, start_at)
        loop = WorkerLoop(worker_id, inbox, outbox, scripts(), settings, clock, watchdog, turn)
        loop.run(received)
    except Exception as exc:
        log.exception("VM worker %s crashed", worker_id)
        unsent = loop.abandon() if loop is not None else []
        outbox.send([*unsent, WorkerExit(worker_id, f"{type(exc).__name__}: {exc}")])
    else:
        outbox.send([WorkerExit(worker_id, None)])
