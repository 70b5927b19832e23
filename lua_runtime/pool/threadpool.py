"""Worker threads, and the two strategies that spread guild VMs over them.

``threadpool`` runs a fixed set of worker threads, each holding many guild VMs; a new guild goes to
the thread holding the fewest, and stays there for the life of its VM. It also has a *slow lane*:
one more thread, started when first needed, for guilds whose events hit the CPU limits, so that a
guild burning its whole budget on every event shares a thread only with guilds like it (the facade
decides who moves there). ``thread-per-guild`` (the legacy mode) is the same machinery with one
guild per thread: a thread starts when its guild first needs a VM and stops when that VM is closed;
every guild is already alone, so it needs no slow lane.

lupa releases the GIL while Lua runs, so worker threads run guest code in parallel with the event
loop and with each other; the Python around each call (payload conversion, results) still takes
turns on the GIL. So that it does not change hands at every guest call, the thread pool's workers
share an :class:`~lua_runtime.pool.turn.InterpreterTurn` (see ``turn.py``). Thread-per-guild does
without: its workers serve one guild each, a request or two at a time, and handing a turn over that
often to a sleeping thread would cost more than the GIL's own hand-offs (measured: 0.14 of the bare
call rate for 100 guilds with a turn, 0.20 without).
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import threading
import time
from collections import deque
from collections.abc import Callable

from lua_runtime.pool.messages import NO_REPLY, Shutdown, VmAction, WorkerRecord
from lua_runtime.pool.provider import ScriptProviderFactory
from lua_runtime.pool.strategy import Deliver, WorkerHandle
from lua_runtime.pool.turn import InterpreterTurn
from lua_runtime.pool.worker import WorkerSettings, serve

log = logging.getLogger(__name__)


class ThreadInbox:
    """A worker thread's request channel: a deque the event loop appends to, and a wake-up.

    The wake-up is signalled only while the worker sleeps, so a busy worker costs the sender one
    ``deque.extend`` per batch of requests.
    """

    def __init__(self) -> None:
        self._queue: deque[VmAction] = deque()
        self._wake = threading.Event()
        self._sleeping = False

    def put(self, actions: list[VmAction]) -> None:
        self._queue.extend(actions)
        if self._sleeping:
            self._wake.set()

    def take(self, timeout: float | None) -> list[VmAction]:
        queue = self._queue
        if timeout != 0 and not queue:
            # Clear, announce, re-check, sleep: a request appended at any point in between is
            # either seen by the re-check or followed by a set() that ends the wait.
            self._wake.clear()
            self._sleeping = True
            if not queue:
                self._wake.wait(timeout)
            self._sleeping = False
        popleft = queue.popleft
        # Each popleft is atomic; draining by count never races the sender's appends.
        return [popleft() for _ in range(len(queue))]


class _LoopOutbox:
    """A worker thread's reply channel: hands each batch to the facade's ``deliver``, and tells the
    workers' turn, if they share one, that the event loop has work to catch up on."""

    def __init__(
        self,
        deliver: Deliver,
        worker_id: int,
        turn: InterpreterTurn | None,
        loop: asyncio.AbstractEventLoop,
    ) -> None:
        self._deliver = deliver
        self._worker_id = worker_id
        self._turn = turn
        self._loop = loop

    def send(self, records: list[WorkerRecord]) -> None:
        self._deliver(self._worker_id, records)
        if self._turn is not None:
            self._turn.records_delivered(self._loop)


class ThreadStrategy:
    """Starting, finding and removing worker threads: what both thread strategies share."""

    name = ""
    has_slow_lane = False

    def __init__(
        self,
        scripts: ScriptProviderFactory,
        settings: WorkerSettings,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._scripts = scripts
        self._settings = settings
        self._clock = clock
        self._ids = itertools.count(1)
        self._workers: dict[int, WorkerHandle] = {}
        self._deliver: Deliver | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        #: Shared by the workers, or None: see the module's docstring.
        self._turn: InterpreterTurn | None = None
        self._check_lane: WorkerHandle | None = None

    def start(self, loop: asyncio.AbstractEventLoop, deliver: Deliver) -> None:
        self._loop = loop
        self._deliver = deliver

    def get(self, worker_id: int) -> WorkerHandle | None:
        return self._workers.get(worker_id)

    def workers(self) -> list[WorkerHandle]:
        return list(self._workers.values())

    def check_lane(self) -> WorkerHandle:
        # Checks of uploads and dry runs run code that nobody has run before: on a worker of their
        # own, a check that takes its worker down (a deadline kill, a crash) costs no guild its VM.
        if self._check_lane is None:
            self._check_lane = self._spawn(checks=True)
        return self._check_lane

    def release(self, worker: WorkerHandle, guild_id: int) -> None:
        worker.guilds.discard(guild_id)

    def remove(
        self, worker_id: int, *, replace: bool, killed_for_overrun: bool = False
    ) -> WorkerHandle | None:
        worker = self._workers.pop(worker_id, None)
        if worker is not None and worker is self._check_lane:
            self._check_lane = None  # the next check starts a new one
        return worker

    def _spawn(self, slow_lane: bool = False, start_delay: float = 0.0, checks: bool = False) -> WorkerHandle:
        """Start a worker; with ``start_delay``, one that sets up that many seconds from now."""
        if self._deliver is None or self._loop is None:
            raise RuntimeError("the strategy has not been started")
        worker_id = next(self._ids)
        inbox = ThreadInbox()
        starts_at = time.monotonic() + start_delay
        worker = WorkerHandle(worker_id, inbox.put, self._loop.call_soon, slow_lane, starts_at, checks)
        outbox = _LoopOutbox(self._deliver, worker_id, self._turn, self._loop)
        thread = threading.Thread(
            target=serve,
            args=(worker_id, inbox, outbox, self._scripts, self._settings),
            kwargs={"clock": self._clock, "turn": self._turn, "start_at": starts_at},
            name=f"warden-vm-{worker_id}",
            # A worker never blocks the interpreter's exit: guest calls are bounded, and a pool
            # that was not closed has nobody left to answer.
            daemon=True,
        )
        self._workers[worker_id] = worker
        thread.start()
        return worker


class RestartBackoff:
    """How long a replacement worker waits before it starts: AntiRaid's supervisor rule.

    A worker that dies young (within :data:`STABLE_SECONDS` of its start) most likely died of
    something its replacement will meet too (a database it cannot open, a fault at setup), and
    replacing it at once, again and again, would spin. So the first young death waits
    ``first_seconds``, and each young death in a row triples the wait, up to ``max_seconds``. A
    worker that lived longer died of something rarer: it is replaced at once. The count starts afresh
    after a worker lives :data:`STABLE_SECONDS`, and once the replacement of the last young death
    has had the time to.
    """

    #: A worker that lived this long before it died was not failing to start.
    STABLE_SECONDS = 5.0
    FACTOR = 3.0
    FIRST_SECONDS = 1.0
    MAX_SECONDS = 10.0

    def __init__(self, first_seconds: float = FIRST_SECONDS, max_seconds: float = MAX_SECONDS) -> None:
        self.first_seconds = first_seconds
        self.max_seconds = max_seconds
        self._young_deaths = 0
        #: After this (time.monotonic), the last young death's replacement has lived STABLE_SECONDS.
        self._settled_at = 0.0

    def delay_after(self, lived_seconds: float, now: float) -> float:
        """The wait before replacing a worker that died ``lived_seconds`` after it started, at
        ``now`` (``time.monotonic``)."""
        if lived_seconds >= self.STABLE_SECONDS:
            self._young_deaths = 0
            return 0.0
        if now >= self._settled_at:
            self._young_deaths = 0  # the last young death's replacement lived: this one is a first
        self._young_deaths += 1
        delay = min(self.max_seconds, self.first_seconds * self.FACTOR ** (self._young_deaths - 1))
        self._settled_at = now + delay + self.STABLE_SECONDS
        return delay


class ThreadPoolStrategy(ThreadStrategy):
    """A fixed set of worker threads; a new guild VM goes to the one holding the fewest. Plus the
    slow lane, started on first use and restarted on the next use after a crash. A worker that
    crashes is replaced, after the :class:`RestartBackoff` if it died young."""

    name = "threadpool"
    has_slow_lane = True
    #: Whether the workers share an InterpreterTurn: threads do, processes have no need to.
    shares_turn = True

    def __init__(
        self,
        scripts: ScriptProviderFactory,
        settings: WorkerSettings,
        workers: int,
        clock: Callable[[], float] = time.monotonic,
        backoff: RestartBackoff | None = None,
    ) -> None:
        super().__init__(scripts, settings, clock)
        self._size = workers
        self._slow_lane: WorkerHandle | None = None
        self._turn = InterpreterTurn() if self.shares_turn else None
        self._backoff = backoff or RestartBackoff()

    def start(self, loop: asyncio.AbstractEventLoop, deliver: Deliver) -> None:
        super().start(loop, deliver)
        for _ in range(self._size):
            self._spawn()

    def place(self, guild_id: int, *, slow_lane: bool = False) -> WorkerHandle:
        if slow_lane:
            if self._slow_lane is None:
                self._slow_lane = self._spawn(slow_lane=True)
            worker = self._slow_lane
        else:
            # The fewest guilds, among the running workers first: a replacement still held back by
            # the restart back-off takes new guilds only when no worker runs.
            now = time.monotonic()
            worker = min(
                (w for w in self._workers.values() if not (w.slow_lane or w.checks)),
                key=lambda w: (w.starts_at > now, len(w.guilds)),
            )
        worker.guilds.add(guild_id)
        return worker

    def remove(
        self, worker_id: int, *, replace: bool, killed_for_overrun: bool = False
    ) -> WorkerHandle | None:
        worker = super().remove(worker_id, replace=replace)
        if worker is not None and worker.checks:
            return worker
        if worker is not None and worker.slow_lane:
            self._slow_lane = None  # the next guild sent there starts a new one
        elif replace:
            now = time.monotonic()
            lived = now - worker.starts_at if worker is not None else 0.0
            # A worker the supervisor killed for a guild's overrun served work: it did not fail
            # at setup, so its replacement does not wait (that guild moves to the slow lane).
            delay = 0.0 if killed_for_overrun else self._backoff.delay_after(lived, now)
            replacement = self._spawn(start_delay=delay)
            if delay:
                log.warning(
                    "VM worker %s replaces worker %s in %g s: that one died %.1f s after it started",
                    replacement.worker_id,
                    worker_id,
                    delay,
                    lived,
                )
            else:
                log.info("VM worker %s replaces worker %s", replacement.worker_id, worker_id)
        return worker


class ThreadPerGuildStrategy(ThreadStrategy):
    """One worker thread per guild, started on demand and stopped when its guild's VM closes."""

    name = "thread-per-guild"

    def place(self, guild_id: int, *, slow_lane: bool = False) -> WorkerHandle:
        worker = self._spawn()
        worker.guilds.add(guild_id)
        return worker

    def release(self, worker: WorkerHandle, guild_id: int) -> None:
        super().release(worker, guild_id)
        if not worker.guilds:
            # The thread finishes what it was sent (the close of the VM), then exits.
            worker.send(Shutdown(NO_REPLY, 0.0))
