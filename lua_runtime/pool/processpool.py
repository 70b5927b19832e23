"""Worker processes: the ``processpool`` strategy.

Some failures cannot be contained inside one process: lupa aborting on an out-of-memory error
outside a protected call, a call into C code that no hook interrupts (a pathological pattern, a
huge ``table.concat``), a crash in a native library. This strategy runs each worker's loop
(:func:`lua_runtime.pool.worker.serve`, the same loop as the thread strategies) in its own process,
so such a failure costs one process: the guilds it held get fresh VMs at their next event, the
requests it had open fail with :class:`~lua_runtime.pool.WorkerCrashed`, everyone else goes on.

Placement is the thread pool's (it subclasses :class:`ThreadPoolStrategy`): ``workers`` processes,
a new guild on the one holding the fewest, pinned there for the life of its VM, and a slow-lane
process started on first use. Processes are started with ``spawn`` (never ``fork``: the parent has
threads and an event loop) and cost about a tenth of a second each; they start from a thread, so
neither :meth:`start` nor a replacement blocks the event loop, and requests sent meanwhile wait.

Each worker process has two one-way pipes, and two threads in the parent:

* the *sender* starts the process, then sends the requests the facade posts, one pickled message
  per batch (the batches queued while it was sending go together in the next message);
* the *watcher* receives the worker's record batches and hands them to the facade, and is the
  supervisor: the worker writes into shared memory, whenever it starts guest work, the
  ``CLOCK_MONOTONIC`` instant by which that work must be over (:class:`WorkerDeadline`), and the
  watcher SIGKILLs a worker past it. When the pipe closes, the watcher reaps the process and, if
  the worker could not say how it ended, tells the facade in its place (``WorkerExit`` with
  "killed: guild 123's work ran past the 2.0 s deadline" or "died: SIGABRT (signal 6)").

Host services work in the worker as they do in the bot: the script provider factory crosses into
the process pickled (``functools.partial(StoredScripts, path, limits)`` opens its own SQLite
connection there), and every ``@warden/kv`` write is committed in WAL mode before the call returns,
so a write whose event was acknowledged survives the worker being killed.

Workers ignore SIGINT and SIGTERM: a Ctrl-C or a service manager's stop reaches the whole process
group, and the bot's own shutdown drains them with ``Shutdown``. A worker left running after its
drain time and grace is killed; a worker whose request pipe closes (the bot is gone) stops at its
next turn; at interpreter exit, whatever is still running is killed.
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import logging
import multiprocessing
import multiprocessing.util  # registers its exit handler before ours, so ours runs first
import os
import pickle
import queue
import resource
import signal
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from multiprocessing.connection import Connection
from typing import Any

from lupa import lua54

from lua_runtime.pool.messages import (
    NO_REPLY,
    Failure,
    InjectFault,
    Reply,
    Shutdown,
    VmAction,
    WorkerExit,
    WorkerRecord,
)
from lua_runtime.pool.provider import ScriptProviderFactory, SharedProvider
from lua_runtime.pool.strategy import Deliver, WorkerHandle
from lua_runtime.pool.threadpool import RestartBackoff, ThreadPoolStrategy
from lua_runtime.pool.worker import WorkerSettings, serve

log = logging.getLogger(__name__)

_CONTEXT = multiprocessing.get_context("spawn")

#: How often the watcher looks at its worker's deadline when no records arrive.
WATCH_SECONDS = 0.05
#: After a ``Shutdown``'s drain time, how long a worker process has to exit before it is killed.
EXIT_GRACE_SECONDS = 5.0
#: How long a worker that closed its reply pipe has to exit before it is killed.
REAP_SECONDS = 5.0
#: The format of discord.py's ``setup_logging`` (without colours), so worker lines look like the bot's.
LOG_FORMAT = "[{asctime}] [{levelname:<8}] {name}: {message}"
LOG_DATE_FORMAT = "%Y-%m-%d %H:%M:%S"
#: How a worker process that died of the work it was running reads (see ``_WorkerProcess._reap``).
_FAULTS_OF_THE_WORK = tuple(f"died: {name} " for name in ("SIGABRT", "SIGSEGV", "SIGBUS", "SIGILL", "SIGFPE"))
#: The default :class:`WorkerDeadline`: at least 2 s, and at least 10 times the work's CPU budget.
DEADLINE_FLOOR_SECONDS = 2.0
DEADLINE_FACTOR = 10.0


@dataclass(frozen=True, slots=True)
class WorkerDeadline:
    """How much wall time a worker process gets for guest work run under a CPU budget before the
    supervisor kills it: ``max(floor_seconds, factor * budget)``.

    The sandbox stops guest code at its CPU budget; the deadline only catches what the sandbox
    cannot stop (a stall inside one C call). So it sits far above an honest run: at the default
    100 ms event budget, 2 s is 20 times the budget, where a full-budget event measured 0.44 s of
    wall time with the 2 cores 4 times oversubscribed and 0.82 s at 8 times.
    """

    floor_seconds: float = DEADLINE_FLOOR_SECONDS
    factor: float = DEADLINE_FACTOR

    def seconds(self, cpu_budget_seconds: float) -> float:
        return max(self.floor_seconds, self.factor * cpu_budget_seconds)


# --- inside the worker process -------------------------------------------------------------------


class _SharedDeadline:
    """The worker's half of the supervisor (a :class:`~lua_runtime.pool.watchdog.Watchdog`): writes
    into shared memory when its guest work must be over, for the watcher in the parent to read.

    ``cell[0]`` is the deadline (``time.monotonic``, which is ``CLOCK_MONOTONIC``, the same clock
    in every process), 0 when nothing runs; ``cell[1]`` the seconds it allowed, for the message;
    ``guild[0]`` the guild whose work it is (0 for the worker's own, such as a stall drill).
    """

    def __init__(self, cell: Any, guild: Any, deadline: WorkerDeadline) -> None:
        self._cell = cell
        self._guild = guild
        self._deadline = deadline
        #: While paused: the seconds the armed work had left, or None when nothing was armed.
        self._left: float | None = None

    def arm(self, cpu_budget_seconds: float, guild_id: int) -> None:
        seconds = self._deadline.seconds(cpu_budget_seconds)
        self._guild[0] = guild_id
        self._cell[1] = seconds
        self._cell[0] = time.monotonic() + seconds

    def disarm(self) -> None:
        self._cell[0] = 0.0

    def pause(self) -> None:
        armed_until = self._cell[0]
        self._left = armed_until - time.monotonic() if armed_until else None
        self._cell[0] = 0.0

    def resume(self) -> None:
        if self._left is not None:
            self._cell[0] = time.monotonic() + self._left
            self._left = None


class _PipeInbox:
    """A worker process's request channel: batches from the parent's sender, through a pipe.

    Faults that end the process (:class:`InjectFault` of any kind but ``raise``) strike as they
    arrive; the loop never sees them. A closed pipe means the bot is gone or gave up on this
    worker: it reads as a ``Shutdown`` without drain time.
    """

    def __init__(self, conn: Connection, watchdog: _SharedDeadline, event_budget: float) -> None:
        self._conn = conn
        self._watchdog = watchdog
        self._event_budget = event_budget
        self._closed = False

    def take(self, timeout: float | None) -> list[VmAction]:
        conn = self._conn
        if self._closed or not conn.poll(timeout):
            return []
        actions: list[VmAction] = []
        while True:
            try:
                batch: list[VmAction] = conn.recv()
            except EOFError:
                self._closed = True
                actions.append(Shutdown(NO_REPLY, 0.0))
                break
            for action in batch:
                if type(action) is InjectFault and action.kind != "raise":
                    self._strike(action)
                else:
                    actions.append(action)
            if not conn.poll(0):
                break
        return actions

    def _strike(self, fault: InjectFault) -> None:
        log.warning("VM worker process %s: %s (%s)", os.getpid(), fault.reason, fault.kind)
        if fault.kind == "stall":
            # Armed as an event is, so the supervisor sees what a script stalled in C looks like.
            self._watchdog.arm(self._event_budget, fault.guild_id)
            _stall_in_c()
            return
        act = _kill_self if fault.kind == "kill" else _abort_through_out_of_memory
        if fault.delay_seconds > 0:
            timer = threading.Timer(fault.delay_seconds, act)
            timer.daemon = True
            timer.start()
        else:
            act()


def _kill_self() -> None:
    os.kill(os.getpid(), signal.SIGKILL)


def _abort_through_out_of_memory() -> None:
    """lupa's real out-of-memory abort: fill a small Lua heap, then hand it a new string from Python.

    The push happens outside any protected call, so Lua panics and lupa calls ``abort()`` (SIGABRT):
    the failure the sandbox's memory headroom exists to prevent (sandbox.py), taken on purpose.
    """
    lua = lua54.LuaRuntime(max_memory=1 << 30, register_eval=False, register_builtins=False)
    fill = lua.eval("function() local t = {} _G.heap = t while true do t[#t + 1] = {} end end")
    keep = lua.eval("function(value) return value end")
    lua.set_max_memory(64 * 1024)
    with contextlib.suppress(lua54.LuaMemoryError):
        fill()
    keep("x" * 4096)


def _stall_in_c() -> None:
    """A call that does not return for ages inside Lua's C pattern matcher: ``.-`` six times over
    10,000 characters backtracks about 10^24 steps in one ``string.find``. No Lua hook runs inside
    a C function (the sandbox bounds patterns with its own engine for that reason) and lupa releases
    the GIL around it, so nothing in the process can stop it: only the supervisor can."""
    lua = lua54.LuaRuntime(register_eval=False, register_builtins=False)
    find = lua.eval("function(n) return string.find(string.rep('a', n), '.-.-.-.-.-.-b') end")
    find(10_000)


class _PipeOutbox:
    """A worker process's reply channel: each batch of records is one pickled message."""

    def __init__(self, conn: Connection) -> None:
        self._conn = conn
        self._gone = False

    def send(self, records: list[WorkerRecord]) -> None:
        if self._gone:
            return
        try:
            self._conn.send(records)
        except OSError:
            # The bot is gone (or killing this worker): nobody is left to answer.
            self._gone = True


def _worker_main(
    worker_id: int,
    requests: Connection,
    records: Connection,
    scripts: ScriptProviderFactory,
    settings: WorkerSettings,
    clock: Callable[[], float],
    cell: Any,
    guild: Any,
    deadline: WorkerDeadline,
    log_level: int,
    start_at: float,
) -> None:
    """The entry point of a worker process: the worker loop between two pipes."""
    # Guest-controlled work (a hostile source's translation, a runaway native call) that exhausts
    # memory costs this process, never the machine the bot runs on.
    resource.setrlimit(resource.RLIMIT_AS, (settings.memory_bytes, settings.memory_bytes))
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    logging.basicConfig(level=log_level, format=LOG_FORMAT, datefmt=LOG_DATE_FORMAT, style="{", force=True)
    watchdog = _SharedDeadline(cell, guild, deadline)
    inbox = _PipeInbox(requests, watchdog, settings.limits.cpu_ms_per_event / 1000)
    serve(worker_id, inbox, _PipeOutbox(records), scripts, settings, clock, watchdog, start_at=start_at)


# --- in the bot's process ------------------------------------------------------------------------

#: Worker processes not reaped yet, for the exit handler.
_LIVE: set[_WorkerProcess] = set()


@atexit.register
def _kill_leftovers() -> None:
    """At interpreter exit, kill the worker processes of pools that were never closed (they ignore
    SIGTERM, so multiprocessing's own exit handler, which runs after this one, would wait forever)."""
    for worker in list(_LIVE):
        worker.kill("killed: the bot exited")


class _WorkerProcess:
    """The parent's side of one worker process: the process, its pipes, its deadline cell, and its
    sender and watcher threads."""

    def __init__(
        self,
        worker_id: int,
        deliver: Deliver,
        scripts: ScriptProviderFactory,
        settings: WorkerSettings,
        clock: Callable[[], float],
        deadline: WorkerDeadline,
        start_at: float = 0.0,
        checks: bool = False,
    ) -> None:
        self.worker_id = worker_id
        self._deliver = deliver
        self._cell = _CONTEXT.RawArray("d", 2)
        # Snowflakes pass 2**53: the guild id needs an integer cell of its own.
        self._guild = _CONTEXT.RawArray("q", 1)
        child_requests, self._requests = _CONTEXT.Pipe(duplex=False)
        self._records, child_records = _CONTEXT.Pipe(duplex=False)
        self._child_ends = (child_requests, child_records)
        log_level = logging.getLogger("lua_runtime").getEffectiveLevel()
        self.process = _CONTEXT.Process(
            target=_worker_main,
            args=(
                worker_id,
                child_requests,
                child_records,
                scripts,
                settings,
                clock,
                self._cell,
                self._guild,
                deadline,
            ),
            kwargs={"log_level": log_level, "start_at": start_at},
            name=f"warden-{'checks' if checks else 'vm'}-{worker_id}",
            daemon=True,
        )
        self._outgoing: queue.SimpleQueue[list[VmAction] | None] = queue.SimpleQueue()
        self._start_failure: str | None = None
        #: Why the parent killed the process, once it did, and the guild whose work overran.
        self._killed: str | None = None
        self._culprit: int | None = None
        self._overran = False
        #: ``time.monotonic`` by which a worker told to shut down must have exited.
        self._stop_by: float | None = None
        self._started = threading.Event()

    def launch(self) -> None:
        _LIVE.add(self)
        name = self.process.name
        threading.Thread(target=self._send_loop, name=f"{name}-send", daemon=True).start()
        threading.Thread(target=self._watch_loop, name=f"{name}-watch", daemon=True).start()

    def post(self, batch: list[VmAction]) -> None:
        """Queue one turn's requests for the sender (on the event loop)."""
        for action in batch:
            if type(action) is Shutdown:
                self._stop_by = time.monotonic() + action.drain_seconds + EXIT_GRACE_SECONDS
        self._outgoing.put(batch)

    def kill(self, reason: str) -> None:
        """SIGKILL the process (from any thread); ``reason`` becomes its crash text."""
        if self._killed is None:
            self._killed = reason
        with contextlib.suppress(OSError, ValueError, AttributeError):
            self.process.kill()

    # --- the sender ---------------------------------------------------------------------------

    def _send_loop(self) -> None:
        try:
            self.process.start()
        except Exception as exc:
            log.exception("VM worker %s could not start", self.worker_id)
            self._start_failure = f"could not start: {type(exc).__name__}: {exc}"
        finally:
            # The child has its own copies now; without ours, its exit closes the pipes for good.
            for end in self._child_ends:
                end.close()
            self._started.set()
        conn = self._requests
        outgoing = self._outgoing
        try:
            while self._start_failure is None:
                batch = outgoing.get()
                if batch is None:
                    return
                stop = False
                while not stop and not outgoing.empty():
                    more = outgoing.get_nowait()
                    if more is None:
                        stop = True
                    else:
                        batch.extend(more)
                if not self._send(conn, batch) or stop:
                    return
        finally:
            conn.close()

    def _send(self, conn: Connection, batch: list[VmAction]) -> bool:
        """Send one batch; False once the worker can no longer be reached (its watcher reports why)."""
        try:
            data = pickle.dumps(batch, pickle.HIGHEST_PROTOCOL)
        except Exception:
            data = pickle.dumps(self._refuse_unpicklable(batch), pickle.HIGHEST_PROTOCOL)
        try:
            conn.send_bytes(data)
        except OSError:
            return False
        return True

    def _refuse_unpicklable(self, batch: list[VmAction]) -> list[VmAction]:
        """The requests of ``batch`` that pickle; the others fail as the thread pool fails a payload
        that is not plain data (``ValueError``)."""
        sendable: list[VmAction] = []
        refused: list[WorkerRecord] = []
        for action in batch:
            try:
                pickle.dumps(action, pickle.HIGHEST_PROTOCOL)
            except Exception as exc:
                message = f"the request is not plain data ({type(exc).__name__}: {exc})"
                refused.append(Reply(action.request_id, failure=Failure("invalid_request", message)))
            else:
                sendable.append(action)
        self._deliver(self.worker_id, refused)
        return sendable

    # --- the watcher --------------------------------------------------------------------------

    def _watch_loop(self) -> None:
        conn, deliver, worker_id = self._records, self._deliver, self.worker_id
        exited: WorkerExit | None = None
        self._started.wait()
        try:
            while self._start_failure is None:
                if not conn.poll(WATCH_SECONDS):
                    self._check_deadlines()
                    continue
                records: list[WorkerRecord] = conn.recv()
                if records and type(records[-1]) is WorkerExit:
                    # Its last record: reported once the process is gone, so that a closed pool
                    # leaves no process behind.
                    exited = records.pop()
                if records:
                    deliver(worker_id, records)
                self._check_deadlines()
        except (EOFError, OSError):
            pass
        finally:
            conn.close()
        armed_guild = int(self._guild[0]) if self._cell[0] else 0
        crash = self._reap()
        if exited is None and self._culprit is None and armed_guild and crash.startswith(_FAULTS_OF_THE_WORK):
            # It died of its own work (lupa's abort on a full heap, a native library's failed
            # allocation under the memory rlimit) while running this guild's: name it, as a deadline
            # kill does. A SIGKILL from outside (the OOM killer, an operator) names nobody.
            self._culprit = armed_guild
        self._outgoing.put(None)  # stops the sender
        if exited is None:
            exited = WorkerExit(worker_id, crash, self._culprit, self._overran)
        deliver(worker_id, [exited])

    def _check_deadlines(self) -> None:
        if self._killed is not None:
            return
        now = time.monotonic()
        armed_until = self._cell[0]
        if armed_until and now > armed_until:
            self._culprit = self._guild[0] or None
            self._overran = True
            whose = f"guild {self._culprit}'s work" if self._culprit else "its work"
            self.kill(f"killed: {whose} ran past the {self._cell[1]:.1f} s deadline")
            log.error("VM worker %s: %s ran past its deadline; killed", self.worker_id, whose)
        elif self._stop_by is not None and now > self._stop_by:
            self.kill("killed: it did not stop within the shutdown's drain time")
            log.warning("VM worker %s did not stop in time; killed", self.worker_id)

    def _reap(self) -> str:
        """Wait for the process to end (killing it if it lingers); what ended it, in words."""
        _LIVE.discard(self)
        if self._start_failure is not None:
            return self._start_failure
        process = self.process
        process.join(REAP_SECONDS)
        if process.exitcode is None:
            self.kill("killed: it closed its pipe but did not exit")
            process.join()
        code = process.exitcode
        process.close()
        if self._killed is not None:
            return self._killed
        if code is not None and code < 0:
            return f"died: {signal.Signals(-code).name} (signal {-code})"
        return f"died: exit status {code}"


class ProcessPoolStrategy(ThreadPoolStrategy):
    """The thread pool's placement over worker processes, with a supervisor that kills a worker
    stuck past its :class:`WorkerDeadline`.

    ``scripts``, ``settings`` and ``clock`` cross into each worker process, so they must pickle;
    each worker gets its own copy (a ``clock`` moved by hand in the bot's process does not move the
    workers' copies: it only suits clocks that read the system's time).
    """

    name = "processpool"
    shares_turn = False  # each worker process runs Python on an interpreter of its own

    def __init__(
        self,
        scripts: ScriptProviderFactory,
        settings: WorkerSettings,
        workers: int,
        clock: Callable[[], float] = time.monotonic,
        *,
        deadline: WorkerDeadline = WorkerDeadline(),
        backoff: RestartBackoff | None = None,
    ) -> None:
        try:
            crossed = pickle.loads(pickle.dumps((scripts, settings, clock)))[0]
        except Exception as exc:
            raise TypeError(
                "the processpool strategy hands the script provider (or its factory), the limits and "
                f"the clock to each worker process, so they must pickle: {exc}"
            ) from exc
        kv_stays_behind = (
            isinstance(scripts, SharedProvider)
            and scripts.provider.kv_store is not None
            and crossed.provider.kv_store is None
        )
        if kv_stays_behind:
            # Scripts would lose @warden/kv in the workers: refuse rather than change its meaning.
            raise TypeError(
                "this script provider's KV store does not cross into a worker process; give the "
                "pool a factory that opens one in each worker, such as "
                "functools.partial(StoredScripts, path, limits)"
            )
        super().__init__(scripts, settings, workers, clock, backoff)
        self._deadline = deadline
        self._processes: dict[int, _WorkerProcess] = {}

    def start(self, loop: asyncio.AbstractEventLoop, deliver: Deliver) -> None:
        super().start(loop, deliver)
        log.info("VM worker processes starting: %d", len(self._processes))

    def remove(
        self, worker_id: int, *, replace: bool, killed_for_overrun: bool = False
    ) -> WorkerHandle | None:
        self._processes.pop(worker_id, None)
        return super().remove(worker_id, replace=replace, killed_for_overrun=killed_for_overrun)

    def _spawn(self, slow_lane: bool = False, start_delay: float = 0.0, checks: bool = False) -> WorkerHandle:
        if self._deliver is None or self._loop is None:
            raise RuntimeError("the strategy has not been started")
        worker_id = next(self._ids)
        starts_at = time.monotonic() + start_delay
        process = _WorkerProcess(
            worker_id,
            self._deliver,
            self._scripts,
            self._settings,
            self._clock,
            self._deadline,
            starts_at,
            checks,
        )
        worker = WorkerHandle(worker_id, process.post, self._loop.call_soon, slow_lane, starts_at, checks)
        self._workers[worker_id] = worker
        self._processes[worker_id] = process
        process.launch()
        return worker
