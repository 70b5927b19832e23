"""Asynchronous preemption: a guest call past its CPU deadline stops at its next Lua instruction.

The kernel bounds guest CPU with a count hook that reads the clock every ``HOOK_PERIOD`` Lua
instructions of a thread. That bounds the *number* of instructions between two looks at the clock,
not their cost: some single instructions take time proportional to a string's length (``a < b`` on
two 4 MB strings of NUL bytes calls ``strcoll`` once per NUL: tens of milliseconds; ``a .. b``
copies megabytes), so ten thousand of them can run for minutes. This module closes that gap from
outside the interpreter: a watchdog thread (one per process, started on the first guest call)
watches every guest call in progress, reads the CPU clock of the OS thread running it, and once
the call's deadline has passed, makes the budget hook fire at the next instruction of the Lua
threads the call runs in. The hook then finds the deadline passed and unwinds with the ordinary
``time_limit``: the watchdog decides nothing, it only makes the hook look now.

How the hook is made to fire. In Lua 5.4 the count hook of a thread fires when ``--L->hookcount``
reaches 0 (``luaG_traceexec`` in ldebug.c, called before every instruction of every frame whose
``trap`` is set). Every thread guest code runs in is armed with a count hook (the kernel's ``arm``),
so ``trap`` is already set on all of its frames and ``hookcount`` is decremented before each
instruction. Writing 1 into ``L->hookcount`` therefore makes the hook fire before the thread's
next instruction. That is what Lua's own ``lua.c`` does from a signal handler (``lua_sethook(L,
lstop, flag, 1)``), but ``lua_sethook`` itself is *not* used here: besides the counts it calls
``settraps(L->ci)``, which walks the thread's CallInfo list, and another OS thread walking that
list while the interpreter pushes and frees CallInfo nodes could read freed memory and write
``trap`` into it. Writing only the ``hookcount`` int is safe to race with the interpreter:

* it is one aligned 4-byte store into the ``lua_State`` struct itself, which lives until the thread
  is collected (see below for why it cannot be);
* ldebug.c says as much: ``basehookcount`` and ``hookcount`` "are for debug only, and it is no
  problem if they get arbitrary values (causes at most one wrong hook call)";
* the interpreter's own ``--L->hookcount`` is a read-modify-write that can overwrite the poke (it
  read the old count just before). The poke is then lost, not harmful, and the watchdog pokes
  again every ``REPOKE_SECONDS`` for as long as the call stays past its deadline. It writes 1,
  never 0: a decrement from 0 would skip the hook for 2^32 instructions.

The field's offset is not in any header lupa ships, so it is found at start-up (:func:`_probe`),
on a thread of a scratch runtime: the offset where ``basehookcount``, ``hookcount`` and
``hookmask`` hold the values ``debug.sethook`` just set (checked for two different counts, and
against ``lua_gethookcount``/``lua_gethookmask`` exported by lupa's module), then a functional
check that a poke from a Python callback makes a hook with a count of 10^9 fire at once. If any
of that fails, preemption is off (with a warning in the log) and the count hook alone bounds
guest code, as before.

Which threads, and why they are alive. The kernel tells the :class:`ThreadWatch` of its sandbox
the address (``string.format("%p", co)``, the ``lua_State*`` in Lua 5.4) of every Lua thread guest
code enters during a call, and holds a strong reference to each one until it has told the host to
forget it (threads.lua: the ``runner`` the handlers run in, kept across calls, and the threads
entered in the call). The kernel only ever drops a reference after the host has removed the
address under :data:`_LOCK`, and the watchdog pokes only while holding that lock, only the
addresses of calls still attached to a worker thread's slot; a call detaches (under the lock)
before it returns to its caller, which alone can close the runtime. So every address poked is a
``lua_State`` that is alive, in a runtime that is open.

Cost. A guest call pays two attribute writes and a look at whether the watchdog is parked on
entry (:func:`enter_call`), and one uncontended lock on exit (:func:`leave_call`): no thread
wake-up per call. The watchdog wakes every ``LOOK_SECONDS`` while calls are being made,
sleeps until the earliest deadline of the calls it sees running, and parks for good (until the
next call) after a second without seeing one.
"""

from __future__ import annotations

import ctypes
import logging
import math
import os
import struct
import threading
import time
import weakref
from typing import Any

from lupa import lua54

log = logging.getLogger(__name__)

#: Longest sleep between two looks at the running calls. A call that starts right after a look is
#: seen at the next: its deadline is met on time whenever its budget is at least this long.
LOOK_SECONDS = 0.02

#: Seconds between two pokes of a call that stays past its deadline: a poke lost to a race with
#: the interpreter's own decrement is made again this much later.
REPOKE_SECONDS = 0.002

#: Looks without a call running after which the watchdog parks until the next call wakes it.
PARK_AFTER_IDLE_LOOKS = 50

#: ``LUA_MASKCOUNT`` in lua.h.
_LUA_MASKCOUNT = 8

#: Bytes of a ``lua_State`` searched for its hook counts: ``sizeof(lua_State)`` in Lua 5.4 on a
#: 64-bit build, where ``basehookcount``, ``hookcount`` and ``hookmask`` are its last fields (at
#: 184, 188 and 192 in Lua 5.4.8). Nothing past the struct is ever read.
_STATE_BYTES = 200

#: Guards every address the watchdog may poke: the watchdog pokes only while holding it, and an
#: address leaves a :class:`ThreadWatch` (or a call leaves its slot) only while holding it.
_LOCK = threading.Lock()
_WAKE = threading.Condition(_LOCK)


class ThreadWatch:
    """The Lua threads of one sandbox that the watchdog may poke, and the deadline of its call.

    One per :class:`~lua_runtime.sandbox.Sandbox`. The kernel calls :meth:`update` (handed to it as
    ``config.preempt``) when it enters threads and drops them; the sandbox's owner brackets each
    guest call with :func:`enter_call` and :func:`leave_call`.
    """

    __slots__ = ("deadline", "runner", "threads")

    def __init__(self) -> None:
        #: The CPU time (``time.thread_time()`` of the thread running the call) the call may run to.
        self.deadline = math.inf
        #: Address of the kernel's current runner ("0": none); the kernel keeps it alive.
        self.runner = "0"
        #: Addresses of the other threads the call entered, kept alive by the kernel. Addresses
        #: stay as Lua formats them (``0x55d5c3a0b2c8``) until a poke needs them: the kernel appends
        #: to this list directly (``threads.append``: atomic, and the cheapest call from Lua), once
        #: per thread per call, and the list is never replaced, only changed in place.
        self.threads: list[str] = []

    def update(self, op: str, value: Any = None, *more: str) -> None:
        """The kernel's side, called from Lua (threads.lua, run_guest, the timers' turns):

        ``runner, address``  the runner that replaces the last one ("0": none);
        ``keep, addresses...``  forget every thread but these;
        ``forget``           forget every thread but the runner;
        ``deadline, seconds``  the running turn's new deadline (a timer's resumption).
        """
        if op == "deadline":
            self.deadline = value
            return
        with _LOCK:
            if op == "forget":
                self.threads.clear()
            elif op == "keep":
                self.threads[:] = () if value is None else (value, *more)
            elif op == "runner":
                self.runner = value
            else:
                raise ValueError(f"unknown preemption op {op!r}")


class _Slot:
    """The guest call running on one OS thread, as the watchdog sees it."""

    __slots__ = ("clock_id", "thread", "watch")

    def __init__(self) -> None:
        self.clock_id = time.pthread_getcpuclockid(threading.get_ident())
        self.thread = weakref.ref(threading.current_thread())
        #: The running call's threads, or None between calls.
        self.watch: ThreadWatch | None = None


class _Watchdog:
    """The process's watchdog: its slots, and whether its thread is parked (or not started)."""

    def __init__(self, hookcount_offset: int | None) -> None:
        self.hookcount_offset = hookcount_offset
        self.slots: list[_Slot] = []
        self.local = threading.local()
        #: True while the thread waits for a call to wake it. Without preemption it stays False,
        #: so that no call ever tries to wake a thread that will never exist.
        self.parked = hookcount_offset is not None
        self.thread: threading.Thread | None = None
        #: Looks at the running calls so far (for tests: a count, not a clock, says it has looked).
        self.looks = 0

    def slot(self) -> _Slot:
        slot = _Slot()
        with _LOCK:
            # Worker threads come and go (a pool replaces the ones that die): drop the slots of
            # the dead ones, which never have a call attached.
            self.slots = [old for old in self.slots if old.thread() is not None] + [slot]
        self.local.slot = slot
        return slot

    def wake(self) -> None:
        with _LOCK:
            if self.thread is None:
                self.thread = threading.Thread(target=self._run, name="warden-preemption", daemon=True)
                self.thread.start()
            self.parked = False
            _WAKE.notify()

    def _poke(self, watch: ThreadWatch) -> None:
        offset = self.hookcount_offset
        assert offset is not None
        for address in (watch.runner, *watch.threads):
            state = int(address, 16)
            if state:
                ctypes.c_int.from_address(state + offset).value = 1

    def _look(self) -> tuple[bool, float]:
        """Pokes the calls past their deadline. Returns whether any call is running, and how long
        to sleep before the next look."""
        self.looks += 1
        busy, sleep = False, LOOK_SECONDS
        for slot in self.slots:
            watch = slot.watch
            if watch is None:
                continue
            busy = True
            try:
                left = watch.deadline - time.clock_gettime(slot.clock_id)
            except OSError:  # the thread ended under us; its call ended before it did
                continue
            if left <= 0:
                self._poke(watch)
                left = REPOKE_SECONDS
            sleep = min(sleep, left)
        return busy, sleep

    def _run(self) -> None:
        idle_looks = 0
        with _LOCK:
            while True:
                busy, sleep = self._look()
                if busy:
                    idle_looks = 0
                elif (idle_looks := idle_looks + 1) >= PARK_AFTER_IDLE_LOOKS:
                    # `parked` is set before one last look at the slots: a call that attaches
                    # after that look finds it set and wakes us (enter_call attaches its call
                    # first, then reads `parked`), and one that attached before is seen by it.
                    self.parked = True
                    if not any(slot.watch is not None for slot in self.slots):
                        while self.parked:
                            _WAKE.wait()
                    self.parked = False
                    idle_looks = 0
                    continue
                _WAKE.wait(sleep)


def _probe() -> int | None:
    """The offset of ``hookcount`` in a ``lua_State`` of lupa's Lua 5.4, checked to work; None
    when it cannot be found or does not work (the reason is logged)."""
    if not hasattr(time, "pthread_getcpuclockid"):
        return _off("this platform has no per-thread CPU clocks")
    try:
        lib = ctypes.CDLL(lua54.__file__)
        gethookcount, gethookmask = lib.lua_gethookcount, lib.lua_gethookmask
    except (OSError, AttributeError) as exc:
        return _off(f"lupa's Lua 5.4 module does not export its hook API ({exc})")
    gethookcount.argtypes = gethookmask.argtypes = [ctypes.c_void_p]
    gethookcount.restype = gethookmask.restype = ctypes.c_int
    lua = lua54.LuaRuntime(register_eval=False, register_builtins=False)
    # The thread stays in the function's upvalue: alive, and never run.
    arm = lua.eval(
        "(function() local co = coroutine.create(function() end) return function(n) "
        "debug.sethook(co, function() end, '', n) return string.format('%p', co) end end)()"
    )
    offsets = set()
    for count in (0x1234567, 0x2345678):
        address = int(arm(count), 16)
        if gethookcount(address) != count or gethookmask(address) != _LUA_MASKCOUNT:
            return _off("debug.sethook and lua_gethookcount disagree")
        state = ctypes.string_at(address, _STATE_BYTES)
        # basehookcount, hookcount and hookmask, in this order, on an int's alignment
        fields = struct.pack("=iii", count, count, _LUA_MASKCOUNT)
        found = [at + 4 for at in range(0, _STATE_BYTES - 11, 4) if state[at : at + 12] == fields]
        offsets.add(found[0] if len(found) == 1 else -1)
    if len(offsets) != 1 or -1 in offsets:
        return _off("the hook counts of a lua_State are not where Lua 5.4 keeps them")
    offset = offsets.pop()
    # The poke itself, in this thread: a hook due in 10^9 instructions must fire right after it.
    check = lua.eval(
        "function(poke) local fired = false "
        "local co = coroutine.create(function() poke(string.format('%p', coroutine.running())) "
        "local n = 0 for i = 1, 10 do n = n + i end return n end) "
        "debug.sethook(co, function() fired = true end, '', 1000000000) "
        "coroutine.resume(co) return fired end"
    )

    def poke(address: str) -> None:
        ctypes.c_int.from_address(int(address, 16) + offset).value = 1

    if check(poke) is not True:
        return _off("a poke of hookcount did not make the hook fire")
    return offset


def _off(reason: str) -> None:
    log.warning(
        "asynchronous preemption is off: %s. A guest call is still stopped by its count hook, but "
        "a run of single costly Lua instructions (comparisons of megabyte strings) can overrun "
        "its CPU budget",
        reason,
    )
    return None


_watchdog: _Watchdog | None = None


def _instance() -> _Watchdog:
    global _watchdog
    if _watchdog is None:
        with _LOCK:
            if _watchdog is None:
                _watchdog = _Watchdog(_probe())
    return _watchdog


def _after_fork() -> None:
    # A forked child has none of its parent's threads: it starts its own watchdog if it needs one.
    global _watchdog, _LOCK, _WAKE
    _LOCK = threading.Lock()
    _WAKE = threading.Condition(_LOCK)
    if _watchdog is not None:
        _watchdog = _Watchdog(_watchdog.hookcount_offset)


os.register_at_fork(after_in_child=_after_fork)


def disable() -> None:
    """Turn preemption off in this process; sandboxes made afterwards run on their count hooks
    alone. For tests that check what bounds guest code without it."""
    global _watchdog
    with _LOCK:
        _watchdog = _Watchdog(None)


def available() -> bool:
    """Whether this process can preempt guest calls (probed once, on first use)."""
    return _instance().hookcount_offset is not None


def enter_call(watch: ThreadWatch, deadline: float) -> _Slot:
    """A guest call of ``watch``'s sandbox starts on this thread, to run until ``deadline`` (this
    thread's ``time.thread_time()``). Pair with :func:`leave_call` in a ``finally``."""
    watchdog = _watchdog or _instance()
    try:
        slot = watchdog.local.slot
    except AttributeError:
        slot = watchdog.slot()
    watch.deadline = deadline
    slot.watch = watch
    if watchdog.parked:
        watchdog.wake()
    return slot


def leave_call(slot: _Slot, watch: ThreadWatch) -> bool:
    """The call :func:`enter_call` started has ended: the watchdog no longer looks at it. Returns
    True when the kernel still holds threads the call entered besides its runner; the caller then
    lets the kernel drop them (``kernel.forget``), so that an idle VM does not keep them."""
    with _LOCK:
        slot.watch = None
    return bool(watch.threads)
