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
  unprotected error and the whole process aborts. So the guest's ceiling is in force only while a
  guest call runs (:meth:`Sandbox.guest_call`); host work happens under a higher ceiling.
"""

from __future__ import annotations

import functools
import json
import logging
import time
import weakref
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from importlib import resources
from typing import Any

from lupa import lua54

from lua_runtime.events import EVENT_NAMES
from lua_runtime.kv_store import KeyValueStore, KVError, KVQuotaExceeded
from lua_runtime.limits import MiB, SandboxLimits
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
#: needs more than a few hundred KiB; the rest is margin against the abort described above.
HOST_HEADROOM = 8 * MiB

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


@dataclass(frozen=True, slots=True)
class Ceilings:
    """The two heap ceilings of a sandbox, in bytes."""

    guest: int
    host: int

    @classmethod
    def for_limits(cls, limits: SandboxLimits) -> Ceilings:
        return _ceilings(limits)


@functools.cache
def _ceilings(limits: SandboxLimits) -> Ceilings:
    # One record per set of limits, shared by every VM built under them (thousands per worker).
    return Ceilings(guest=limits.max_memory, host=limits.max_memory + HOST_HEADROOM)


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
        fetch, fetched = _host_module_service(weakref.ref(self))
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
                "kv_max_key_bytes": limits.kv_max_key_bytes,
                "events": list(EVENT_NAMES),
            },
            recursive=True,
        )
        if preemption_available():
            config["preempt"], config["watch"] = self.watch.update, self.watch.threads.append
        if kv is not None:
            config["kv"] = _kv_service(weakref.ref(self), kv)
        config["luau"] = run(_bytecode("luau_stdlib"), fetch, fetched)
        self._kernel = run(_bytecode("kernel"), config)
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
    """The two functions the kernel loads host modules with, on first use.

    Most host code (the pattern wrappers and engine, ``@warden/discord``) is compiled into a VM only
    when a script first needs it: every guild VM would otherwise carry all of it. The bytecode is
    handed over from Python, and handing a new string to a VM whose guest heap is full would abort
    the process, so ``fetch`` lifts the ceiling to the host's for the load and ``fetched`` puts the
    guest's back. The functions hold the sandbox weakly: the runtime keeps them alive, and a strong
    reference back would keep every runtime alive forever (lupa runtimes are not garbage-collected
    through Lua's registry).
    """

    def fetch(name: str) -> bytes:
        sandbox = sandbox_ref()
        if sandbox is not None and sandbox._in_guest:
            sandbox._lua.set_max_memory(sandbox.ceilings.host)
        return _bytecode(name)

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


def _kv_service(sandbox_ref: weakref.ref[Sandbox], kv: GuildKV) -> Any:
    """The function behind ``@warden/kv``: ``call(op, key, arg, ttl) -> ok, result, is_quota``.

    It never raises (a Python exception would reach Lua as an object, not a message), and it lifts
    the heap ceiling to the host's before any value goes back into the VM; the Lua side puts the
    guest's back with ``fetched``. Values arrive JSON-encoded by kv.lua and leave as plain Lua data.
    """
    store, guild_id = kv.store, kv.guild_id

    def call(op: str, key: str, arg: Any, ttl: float | None) -> tuple[bool, Any, bool]:
        sandbox = sandbox_ref()
        if sandbox is None:
            return False, "kv: this VM is shutting down", False
        if sandbox._in_guest:
            sandbox._lua.set_max_memory(sandbox.ceilings.host)
        try:
            if op == "get":
                value = store.get(guild_id, key)
                if isinstance(value, (dict, list)):
                    value = sandbox._lua.table_from(value, recursive=True)
                return True, value, False
            if op == "set":
                store.set(guild_id, key, json.loads(arg), ttl)
                return True, None, False
            if op == "delete":
                return True, store.delete(guild_id, key), False
            if op == "incr":
                return True, store.incr(guild_id, key, arg), False
            if op == "keys":
                return True, sandbox._lua.table_from(store.keys(guild_id, key)), False
            return False, f"kv: unknown operation {op!r}", False
        except KVQuotaExceeded as exc:
            return False, str(exc), True
        except KVError as exc:
            return False, str(exc), False
        except Exception:
            log.exception("guild %s: kv.%s failed", guild_id, op)
            return False, f"kv.{op} failed inside Warden; the error is in the bot's log", False

    return call
