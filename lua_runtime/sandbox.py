"""Building one sandboxed Lua 5.4 runtime: the host chunks, the guest environment, the ceilings.

A sandbox is a ``lupa.lua54.LuaRuntime`` plus the kernel (``lua/kernel.lua``) that owns guest code
inside it. This module knows how to make one and how to call into it safely; :class:`GuildVM` in
``guild_vm.py`` is the only owner of the result.

Two lupa facts drive the shape of this module:

* lupa has no interrupt API, so CPU is bounded by a Lua count hook (set by the kernel on every
  coroutine guest code runs in); the hook reads this thread's CPU clock through a Python function
  that only the kernel's locals can reach. Switches between coroutines are counted too (threads.lua),
  so that the budget holds across all of a call's threads, and a watchdog thread makes the hook
  fire at once when a call outruns its deadline in a few costly instructions (``preemption.py``).
* If the host pushes a value into a runtime whose heap is at ``max_memory``, Lua raises an
  unprotected error and the whole process aborts (or, inside a Python callback, the thread waits
  forever for the GIL it holds). So the guest's ceiling is in force only while a guest call runs
  (:meth:`Sandbox.guest_ceiling`); host work happens under a higher ceiling, with headroom. The
  headroom is for host work only: a host callback that hands data to running guest code (a
  ``@warden/kv`` answer, a host module) first checks that it fits under the *guest's* ceiling
  (:meth:`Sandbox.lift_for`, with an estimate from ``heap_cost``), and a VM that ends a call with
  too little room under it is rebuilt before its next push (``Ceilings.resting``, ``GuildVM``).
  Every new callback that returns data into the VM must do the same.
"""

from __future__ import annotations

import functools
import json
import logging
import secrets
import time
import weakref
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from importlib import resources
from typing import Any

from lupa import lua54

from lua_runtime import weak_mode
from lua_runtime.events import EVENT_NAMES
from lua_runtime.heap_cost import lua_cost, text_cost
from lua_runtime.kv_store import KeyValueStore, KVError, KVQuotaExceeded
from lua_runtime.limits import KiB, MiB, SandboxLimits
from lua_runtime.luau import LIBRARY_PREFIX, library_chunk
from lua_runtime.preemption import ThreadWatch
from lua_runtime.preemption import available as preemption_available

#: Instructions between two budget checks. Each check calls into Python (about 0.3 µs), so this
#: keeps the check under 1% of guest time while bounding overshoot to well under a millisecond.
HOOK_PERIOD = 10_000

#: Switches between guest threads (a resume, and the return from it) between two budget checks:
#: a thread runs at most HOOK_PERIOD instructions unchecked, so this bounds the instructions of a
#: tree of short coroutines between two checks to (SWITCH_PERIOD + 1) * HOOK_PERIOD.
SWITCH_PERIOD = 128

#: Room above the guest ceiling for host work (payload tables, results, reloading). Host work never
#: needs more than a few hundred KiB; the rest is margin against the abort described above. A big
#: VM gets half its ceiling: Lua's string table doubles in one step when a push interns a string,
#: and may then hold a third of the heap.
HOST_HEADROOM = 8 * MiB

#: Room a VM must keep under its guest ceiling between two calls, for the next host push (an event's
#: payload, a call's results). A VM that ends a call with less, even after a full collection, is
#: rebuilt before its next event (see ``GuildVM``).
HOST_PUSH_SAFETY = 256 * KiB

#: Added to every estimate of a push made while the guest runs (see :meth:`Sandbox.lift_for`): what
#: ``heap_cost`` does not count, the string table's and the registry's growth in a small VM.
PUSH_SLACK = 16 * KiB

#: Heap bytes a host module takes once loaded, per byte of its bytecode, rounded up: the bytecode
#: string itself, and prototypes of about 2.5 times its size (``bench/sandbox.py`` has the figures).
MODULE_COST_PER_BYTE = 5

_LUA_DIR = resources.files("lua_runtime") / "lua"

#: Run once the kernel is built. The host no longer needs the io and package libraries, and nothing
#: may reach them: they go, with the registry entries that would keep them alive (about 3 KiB of
#: every VM). The os, coroutine and debug libraries go too: the kernel holds the few functions of
#: them that it and the modules it loads later use. The name "debug" stays in the registry, though:
#: lupa looks the global up before every call into Lua (for debug.traceback), outside any protected
#: call, and creating that string in a heap full to the guest's ceiling would abort the process.
#: Then the collector runs in incremental mode with a pause of 120%, so that a cycle starts once the
#: heap has grown by a fifth where the default lets it double: thousands of idle guild VMs would
#: each keep that much garbage. (Generational mode let a recursion attack outrun its CPU limit.) A
#: full collection takes what the build left behind.
_FINISH = b"""
local registry = debug.getregistry()
registry["FILE*"], registry._IO_input, registry._IO_output, registry._PRELOAD = nil, nil, nil, nil
local loaded = registry._LOADED
loaded.io, loaded.package, loaded.os, loaded.coroutine, loaded.debug = nil, nil, nil, nil, nil
io, package, dofile, loadfile, require, os, coroutine, debug = nil, nil, nil, nil, nil, nil, nil, nil
registry.lupa_looks_up = "debug"
collectgarbage("incremental", 120, 400)
collectgarbage()
"""

log = logging.getLogger(__name__)


def _refuse_attribute(obj: object, name: object, is_setting: bool) -> str:
    # No Python object is ever handed to guest code; this is the second wall if one slips through.
    raise AttributeError("Python attributes are not accessible from Lua")


@functools.cache
def _bytecode(chunk: str) -> bytes:
    """Host chunk ``chunk`` compiled once per process, stripped of debug info.

    Loading bytecode is ten times faster than compiling source, and stripped prototypes take half
    the memory: both count, since every guild VM loads these chunks. Only host chunks are ever
    loaded as bytecode; guest chunks are text-only (mode ``"t"``).
    """
    path = library_chunk(chunk) if chunk.startswith(LIBRARY_PREFIX) else _LUA_DIR / f"{chunk}.lua"
    source = path.read_bytes()
    compiler = lua54.LuaRuntime(encoding=None, register_eval=False, register_builtins=False)
    dump = compiler.eval("function(src, name) return string.dump(assert(load(src, name, 't')), true) end")
    return dump(source, b"=" + chunk.encode())


def memory_limit_message(limits: SandboxLimits) -> str:
    """The message of a ``memory_limit`` error under ``limits``.

    Made here, once per VM, and handed to the kernel: the kernel needs it when the guest's heap is
    full, where formatting it then could itself run out of memory.
    """
    return f"memory limit exceeded ({limits.max_memory / MiB:g} MiB per server)"


def action_window_message(limits: SandboxLimits) -> str:
    """The message of the ``limit`` error of a script whose server's action window is spent."""
    return (
        f"too many actions: at most {limits.max_actions_per_window} per "
        f"{limits.action_window_seconds:g} s per server"
    )


@dataclass(frozen=True, slots=True)
class Ceilings:
    """The heap ceilings of a sandbox, in bytes."""

    #: In force while guest code runs; a host push made meanwhile must fit under it too.
    guest: int
    #: In force while the host works, and during a push it has checked fits under ``guest``.
    host: int
    #: The most a VM may keep between two calls: the guest's ceiling less HOST_PUSH_SAFETY.
    resting: int

    @classmethod
    def for_limits(cls, limits: SandboxLimits) -> Ceilings:
        return _ceilings(limits)


@functools.cache
def _ceilings(limits: SandboxLimits) -> Ceilings:
    # One record per set of limits, shared by every VM built under them (thousands per worker).
    guest = limits.max_memory
    return Ceilings(
        guest=guest,
        host=guest + max(HOST_HEADROOM, guest // 2),
        resting=guest - min(HOST_PUSH_SAFETY, guest // 4),
    )


class Sandbox:
    """One Lua runtime with the kernel loaded. Not thread-safe: one owner, one thread at a time."""

    __slots__ = ("__weakref__", "_in_guest", "_kernel", "_lua", "ceilings", "limits", "watch")

    def __init__(self, limits: SandboxLimits, kv: GuildKV | None = None) -> None:
        self.limits = limits
        self.ceilings = Ceilings.for_limits(limits)
        self._in_guest = False
        #: The threads of this VM the preemption watchdog may interrupt (see preemption.py); every
        #: guest call is bracketed by preemption.enter_call and leave_call with it.
        self.watch = ThreadWatch()
        lua = lua54.LuaRuntime(
            max_memory=self.ceilings.host,
            register_eval=False,
            register_builtins=False,
            attribute_filter=_refuse_attribute,
            unpack_returned_tuples=True,
        )
        self._lua = lua
        run = lua.execute
        # lupa registers a `python` module in every runtime, whatever the options say.
        run(b"python = nil; package.loaded.python = nil")
        host_fetch, fetched = _host_module_service(weakref.ref(self))
        fetch = run(_bytecode("fetch"), host_fetch)
        config = lua.table_from(
            {
                "clock": time.thread_time,
                "fetch": fetch,
                "fetched": fetched,
                "hook_period": HOOK_PERIOD,
                "switch_period": SWITCH_PERIOD,
                "max_actions": limits.max_actions_per_event,
                "max_output": limits.max_output_per_event,
                "memory_message": memory_limit_message(limits),
                "window_message": action_window_message(limits),
                "kv_max_key_bytes": limits.kv_max_key_bytes,
                "events": list(EVENT_NAMES),
                # Lua would seed math.random from the state's address (see kernel.lua).
                "random_seed": [secrets.randbits(62), secrets.randbits(62)],
            },
            recursive=True,
        )
        if preemption_available():
            config["preempt"], config["watch"] = self.watch.update, self.watch.threads.append
        if kv is not None:
            config["kv"] = _kv_service(weakref.ref(self), kv)
        luau = config["luau"] = run(_bytecode("luau_stdlib"), fetch, fetched)
        self._kernel = run(_bytecode("kernel"), config)
        # The host's weak tables exist now: from here on, a script's __mode is an ordinary field.
        weak_mode.hide(run(weak_mode.PREPARE, luau["format"]))
        run(_FINISH)

    @property
    def kernel(self) -> Any:
        return self._kernel

    @property
    def lua(self) -> lua54.LuaRuntime:
        return self._lua

    @contextmanager
    def guest_ceiling(self) -> Iterator[None]:
        """Hold the guest's heap ceiling for the duration of one guest call.

        Only values already in the VM (tables built before, interned strings, numbers) may be passed
        into the call: pushing a new string while the guest's heap is full would abort the process.
        """
        lua = self._lua
        lua.set_max_memory(self.ceilings.guest)
        self._in_guest = True
        try:
            yield
        finally:
            self._in_guest = False
            lua.set_max_memory(self.ceilings.host)

    def lift_for(self, cost: int) -> bool:
        """Make room for a push of about ``cost`` bytes (see ``heap_cost``) from a host callback.

        While the guest runs, the push must fit under the guest's ceiling: data the guest can reach
        never lives in the headroom, or a guest could fill the headroom with it (a table of
        ``kv.get`` results costs it no allocation of its own) until a push aborts the process. When
        it fits, the host's ceiling is lifted for the push, and the caller's Lua side puts the
        guest's back; when it does not, nothing changes and the caller pushes nothing but numbers,
        booleans or nil. Outside guest calls the host's ceiling is in force already.
        """
        if not self._in_guest:
            return True
        lua = self._lua
        if (lua.get_memory_used() or 0) + cost + PUSH_SLACK > self.ceilings.guest:
            return False
        lua.set_max_memory(self.ceilings.host)
        return True

    def forget_threads(self) -> None:
        """After a call that ran coroutines: the kernel drops the threads it kept for the preemption
        watchdog (preemption.leave_call says when), so that an idle VM does not hold them."""
        self._kernel["forget"]()

    def memory_used(self) -> int:
        """Bytes the guest side of this VM holds (lupa's count, without the runtime's base)."""
        return self._lua.get_memory_used() or 0

    def collect_garbage(self) -> int:
        self._lua.execute(b"collectgarbage('collect')")
        return self.memory_used()


def _host_module_service(sandbox_ref: weakref.ref[Sandbox]) -> tuple[Any, Any]:
    """The two functions host modules are loaded with, on first use: ``fetch`` and ``fetched``.

    Most host code (the pattern wrappers and engine, ``@warden/discord``) is compiled into a VM only
    when a script first needs it: every guild VM would otherwise carry all of it. The bytecode is
    handed over from Python, and handing a new string to a VM whose heap is full would abort the
    process: ``fetch(name)`` returns it, with the host's ceiling lifted for the load, only when the
    loaded module fits under the guest's ceiling (``Sandbox.lift_for``), and nil otherwise
    (``lua/fetch.lua`` collects garbage and asks again, then fails with the memory error);
    ``fetched()`` puts the guest's ceiling back. The functions hold the sandbox weakly: the runtime
    keeps them alive, and a strong reference back would keep every runtime alive forever (lupa
    runtimes are not garbage-collected through Lua's registry).
    """

    def fetch(name: str) -> bytes | None:
        chunk = _bytecode(name)
        sandbox = sandbox_ref()
        if sandbox is not None and not sandbox.lift_for(MODULE_COST_PER_BYTE * len(chunk)):
            return None
        return chunk

    def fetched() -> None:
        sandbox = sandbox_ref()
        if sandbox is not None and sandbox._in_guest:
            sandbox._lua.set_max_memory(sandbox.ceilings.guest)

    return fetch, fetched


@dataclass(frozen=True, slots=True)
class GuildKV:
    """One guild's view of a store: what ``@warden/kv`` reads and writes."""

    store: KeyValueStore
    guild_id: int


#: How a ``@warden/kv`` call ended, as kv.lua reads it. Numbers, because pushing one into the VM
#: allocates nothing: NO_ROOM must reach a VM whose heap is full.
KV_OK, KV_ERROR, KV_QUOTA, KV_NO_ROOM = 0, 1, 2, 3

#: Answers that take no room of their own in the VM.
_NUMBERS = (bool, int, float)


def _kv_service(sandbox_ref: weakref.ref[Sandbox], kv: GuildKV) -> Any:
    """The function behind ``@warden/kv``: ``call(op, key, arg, ttl) -> status, result``.

    ``status`` is one of the KV_* numbers; ``result`` is the answer (KV_OK), the message for the
    author (KV_ERROR, KV_QUOTA), or nil (KV_NO_ROOM: the answer does not fit under the guest's
    ceiling, and kv.lua collects garbage and asks again before it fails with the memory limit). A
    failed read or write changes nothing, so asking again is safe. The function never raises (a
    Python exception would reach Lua as an object, not a message). Values arrive JSON-encoded by
    kv.lua and leave as plain Lua data, pushed with the host's ceiling lifted (``Sandbox.lift_for``);
    kv.lua puts the guest's back with ``fetched``.
    """
    store, guild_id = kv.store, kv.guild_id

    def call(op: str, key: str, arg: Any, ttl: float | None) -> tuple[int, Any]:
        sandbox = sandbox_ref()
        if sandbox is None:
            return KV_ERROR, None  # kv.lua has the message: no string is pushed
        status, result = _kv_answer(store, guild_id, op, key, arg, ttl)
        if result is None or type(result) in _NUMBERS:
            return status, result  # nothing to allocate
        cost = text_cost(result) if type(result) is str else lua_cost(result)
        if not sandbox.lift_for(cost):
            return KV_NO_ROOM, None
        if type(result) is dict or type(result) is list:
            result = sandbox._lua.table_from(result, recursive=True)
        return status, result

    return call


def _kv_answer(
    store: KeyValueStore, guild_id: int, op: str, key: str, arg: Any, ttl: float | None
) -> tuple[int, Any]:
    """Carry out one ``@warden/kv`` operation: its KV_* status and its answer, as Python data."""
    try:
        if op == "get":
            return KV_OK, store.get(guild_id, key)
        if op == "set":
            store.set(guild_id, key, json.loads(arg), ttl)
            return KV_OK, None
        if op == "delete":
            return KV_OK, store.delete(guild_id, key)
        if op == "incr":
            return KV_OK, store.incr(guild_id, key, arg)
        if op == "keys":
            return KV_OK, store.keys(guild_id, key)
        return KV_ERROR, f"kv: unknown operation {op!r}"
    except KVQuotaExceeded as exc:
        return KV_QUOTA, str(exc)
    except KVError as exc:
        return KV_ERROR, str(exc)
    except Exception:
        log.exception("guild %s: kv.%s failed", guild_id, op)
        return KV_ERROR, f"kv.{op} failed inside Warden; the error is in the bot's log"
