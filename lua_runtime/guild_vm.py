"""One guild's Lua VM: its scripts, loaded into one sandbox, answering events.

A :class:`GuildVM` is the single owner of its Lua runtime (the seed's "one owner per VM" rule):
nothing else keeps a reference to the runtime or to Lua objects from it. Its set of scripts is
fixed at construction; reloading a guild means building a new ``GuildVM`` and swapping it in
between two events, which is what makes a reload atomic.

The VM is also the only owner of its scripts' timers (the ``task`` library): threads parked by
``task.wait``, functions waiting for ``task.delay``. They live in the Lua runtime and end with it,
which is how a reload, an eviction or a rebuild after a memory-limit error drops them cleanly. The
VM says when it next needs to run (:attr:`GuildVM.next_timer_due`, on its ``clock``) and its owner
calls :meth:`GuildVM.run_timers` then.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from lupa import lua54

from lua_runtime.events import EVENT_NAMES
from lua_runtime.kv_store import KeyValueStore
from lua_runtime.limits import MIN_TASK_WAIT_SECONDS, SandboxLimits
from lua_runtime.luau import LuauSyntaxError, translate
from lua_runtime.preemption import enter_call, leave_call
from lua_runtime.results import MAX_ERROR_CHARS, EventResult, OutputLine, ScriptError
from lua_runtime.sandbox import GuildKV, Sandbox, memory_limit_message

log = logging.getLogger(__name__)

#: After a memory-limit error, a VM whose live heap is still above this share of its ceiling is
#: rebuilt from its scripts: it would fail every event, and its next host push could abort.
UNTRUSTED_HEAP_SHARE = 0.75

#: Deepest nesting accepted in an event payload (real payloads are three levels deep).
MAX_PAYLOAD_DEPTH = 8

#: The event name of the result of a run of timers.
TIMER_EVENT = "timer"

_KERNEL_OUT_OF_MEMORY = object()

_PLAIN_SCALARS = frozenset({str, int, float, bool, type(None)})


#: Every distinct set of handled events, kept once: guilds' VMs share a handful of them, and a
#: worker holds thousands of VMs.
_EVENT_SETS: dict[frozenset[str], frozenset[str]] = {}


def _shared_event_set(events: frozenset[str]) -> frozenset[str]:
    return _EVENT_SETS.setdefault(events, events)


@dataclass(frozen=True, slots=True)
class ScriptSource:
    """A script as its author wrote it: a name and Luau source."""

    name: str
    source: str


def _clip(message: str) -> str:
    return message if len(message) <= MAX_ERROR_CHARS else message[: MAX_ERROR_CHARS - 1] + "…"


class ScriptRejected(Exception):
    """A script that cannot be loaded at all; ``error`` says why and where."""

    def __init__(self, error: ScriptError) -> None:
        super().__init__(str(error))
        self.error = error


def translate_script(script: ScriptSource, limits: SandboxLimits) -> str:
    """The Lua 5.4 source of ``script``, after the size check and the Luau translation."""
    size = len(script.source.encode())
    if size > limits.max_script_bytes:
        message = f"the script is {size} bytes; the limit is {limits.max_script_bytes}"
        raise ScriptRejected(ScriptError(script.name, "limit", message))
    try:
        return translate(script.source)
    except LuauSyntaxError as exc:
        raise ScriptRejected(ScriptError(script.name, "syntax", _clip(exc.message), exc.line)) from None


def check_plain(value: Any, depth: int = 0) -> None:
    """Refuse anything but plain data: a Python object reachable from Lua would open Python to it.

    ``value`` is a dict or a list; scalars are checked inline, so only containers recurse.
    """
    if depth >= MAX_PAYLOAD_DEPTH:
        raise ValueError(f"payload nested deeper than {MAX_PAYLOAD_DEPTH} levels")
    if type(value) is dict:
        for key, item in value.items():
            if type(key) is not str:
                raise ValueError(f"payload keys must be strings, got {key!r}")
            if type(item) not in _PLAIN_SCALARS:
                check_plain(item, depth + 1)
    elif type(value) is list:
        for item in value:
            if type(item) not in _PLAIN_SCALARS:
                check_plain(item, depth + 1)
    else:
        raise ValueError(f"payloads hold plain data only, got {type(value).__name__}")


def lua_to_python(value: Any, depth: int = 0) -> Any:
    """Copy a plain Lua value built by the kernel (an action, an error record) into Python data."""
    if lua54.lua_type(value) != "table":
        return value
    if depth > MAX_PAYLOAD_DEPTH:
        raise ValueError("value nested too deeply")
    items = dict(value.items())
    if items and all(type(k) is int for k in items) and sorted(items) == list(range(1, len(items) + 1)):
        return [lua_to_python(items[i], depth + 1) for i in range(1, len(items) + 1)]
    # Sorted keys: Lua's table order is arbitrary, and actions are shown to people and diffed by tests.
    return {k: lua_to_python(items[k], depth + 1) for k in sorted(items, key=str)}


class GuildVM:
    """The scripts of one guild, loaded into one sandboxed Lua runtime.

    Not thread-safe: the worker that owns a guild VM is the only one that calls it.
    """

    # Slots: a worker holds thousands of these, and an instance dict costs each about half a KiB.
    __slots__ = (
        "__weakref__",
        "_budget_ms",
        "_budget_s",
        "_clock",
        "_handlers",
        "_kernel_dispatch",
        "_kernel_run_timers",
        "_kv",
        "_sandbox",
        "guild_id",
        "handled_events",
        "limits",
        "load_errors",
        "load_output",
        "next_timer_due",
        "pending_timers",
        "rebuilds",
        "scripts",
        "trusted",
    )
    load_errors: list[ScriptError]
    load_output: list[OutputLine]
    # Read-only for callers (plain attributes rather than properties: the worker reads them after
    # every request).
    #: False once the VM's live heap stays near its ceiling; the next event (or timer) rebuilds it.
    trusted: bool
    #: Waits, delays and defers of this VM's scripts not run yet.
    pending_timers: int
    #: When the earliest pending timer is due, on the VM's clock; None when none is pending.
    next_timer_due: float | None

    def __init__(
        self,
        guild_id: int,
        scripts: Sequence[ScriptSource],
        limits: SandboxLimits,
        kv_store: KeyValueStore | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        """``kv_store`` backs ``@warden/kv``; without one, requiring it is a clear error. ``clock``
        (seconds) is the time timers are due on: the worker loop's, or a dry run's virtual one."""
        self.guild_id = guild_id
        self.limits = limits
        self._clock = clock
        self._kv = GuildKV(kv_store, guild_id) if kv_store is not None else None
        self.scripts: tuple[ScriptSource, ...] = tuple(scripts)
        #: How many times this VM was rebuilt from its scripts after it stopped being trustworthy.
        self.rebuilds = 0
        self._budget_ms = limits.cpu_ms_per_event
        self._budget_s = limits.cpu_ms_per_event / 1000
        self._load_all()

    def _load_all(self) -> None:
        """Build a fresh sandbox and load every script into it, in order."""
        self._sandbox = Sandbox(self.limits, self._kv)
        self.trusted = True
        kernel = self._sandbox.kernel
        # The per-event entry points, fetched once; the rare ones are looked up when needed (each
        # kept function is a Python object and a registry reference per VM).
        self._kernel_dispatch = kernel["dispatch"]
        self._kernel_run_timers = kernel["run_timers"]
        limits = self.limits
        kernel["configure_tasks"](
            self._clock, limits.max_pending_timers, limits.max_timer_delay_seconds, MIN_TASK_WAIT_SECONDS
        )
        self.pending_timers = 0
        self.next_timer_due = None
        self.load_errors = []
        self.load_output = []
        handlers: dict[str, list[str]] = {}
        # The code that loads scripts is compiled for this build only and dropped with `build`:
        # the VM's scripts are fixed for its life, and an idle VM need not carry it.
        build = kernel["build"]()
        for script in self.scripts:
            events = self._load_one(build, script)
            for event in events:
                handlers.setdefault(event, []).append(script.name)
        self._handlers = handlers
        self.handled_events = _shared_event_set(frozenset(handlers))
        # The build leaves its own garbage (build.lua's code, the compiler's temporaries): about a
        # sixth of the heap. Freed now, it is reused by the next VM the worker builds, rather than
        # held by every VM until its collector's next cycle.
        del build
        self._sandbox.collect_garbage()

    def _load_one(self, build: Any, script: ScriptSource) -> list[str]:
        try:
            lua_source = translate_script(script, self.limits)
        except ScriptRejected as exc:
            self.load_errors.append(exc.error)
            return []
        sandbox = self._sandbox
        # The source goes into the VM under the host ceiling; the guest ceiling applies to its run.
        args = sandbox.lua.table(script.name, lua_source)
        deadline = time.thread_time() + self._budget_s
        slot = enter_call(sandbox.watch, deadline)
        try:
            with sandbox.guest_ceiling():
                kind, detail, line = build["load"](args, deadline, self._budget_ms)
        except lua54.LuaMemoryError:
            kind, detail, line = "memory_limit", self._memory_message(), None
        finally:
            if leave_call(slot, sandbox.watch):
                sandbox.forget_threads()
        self._take_output(build["load_output"](), self.load_output)
        if kind is not None:
            self.load_errors.append(ScriptError(script.name, kind, _clip(detail), line))
            if kind == "memory_limit":
                self._check_trust()
            return []
        return list(detail.values())

    def _memory_message(self) -> str:
        return memory_limit_message(self.limits)

    def _check_trust(self) -> None:
        if self._sandbox.collect_garbage() > self.limits.max_memory * UNTRUSTED_HEAP_SHARE:
            self.trusted = False

    def memory_used(self) -> int:
        return self._sandbox.memory_used()

    def _rebuild(self) -> None:
        """Build the VM again from its scripts after a memory-limit error; its timers are dropped."""
        self.rebuilds += 1
        log.info("guild %s: rebuilding its VM after a memory-limit error", self.guild_id)
        self._load_all()

    def dispatch(self, event: str, payload: dict[str, Any]) -> EventResult:
        """Run every loaded handler for ``event`` with ``payload``; never raises for guest faults."""
        names = self._handlers.get(event)
        result = EventResult(event)
        if names is None:
            if event not in EVENT_NAMES:
                raise ValueError(f"unknown event {event!r}")
            return result
        check_plain(payload)
        if not self.trusted:
            self._rebuild()
            names = self._handlers.get(event)
            if names is None:
                return result
        result.scripts = list(names)
        sandbox = self._sandbox
        lua = sandbox.lua
        lua_payload = lua.table_from(payload, recursive=True)
        # Sandbox.guest_ceiling, inlined: this is the per-event path.
        lua.set_max_memory(sandbox.ceilings.guest)
        sandbox._in_guest = True
        deadline = time.thread_time() + self._budget_s
        watch = sandbox.watch
        slot = enter_call(watch, deadline)
        try:
            produced = self._kernel_dispatch(event, lua_payload, deadline, self._budget_ms)
        except lua54.LuaMemoryError:
            produced = _KERNEL_OUT_OF_MEMORY
        except lua54.LuaError as exc:
            log.warning("guild %s: the kernel failed during %s: %s", self.guild_id, event, exc)
            produced = exc
        finally:
            sandbox._in_guest = False
            lua.set_max_memory(sandbox.ceilings.host)
            if leave_call(slot, watch):
                sandbox.forget_threads()
        if produced is _KERNEL_OUT_OF_MEMORY or isinstance(produced, lua54.LuaError):
            self._kernel_failed(produced, names[0], result)
            return result
        if produced is None:
            if self.pending_timers:
                self.pending_timers, self.next_timer_due = 0, None
            return result
        self._collect(produced, result)
        if any(error.kind == "memory_limit" for error in result.errors):
            self._check_trust()
        return result

    def run_timers(self) -> EventResult:
        """Resume the threads whose timers are due now, in due order; never raises for guest faults.

        Each resumption is a turn of its own, with the budgets of an event (CPU, actions, output);
        the threads it defers run in its turn. The run starts no new resumption once it has used
        one event's CPU budget: the timers still due stay due (:attr:`next_timer_due` says so), so
        that the worker can serve other guilds before it comes back. The result is the event
        ``"timer"``'s: actions, output and errors as for an event, ``scripts`` those whose
        threads ran. A VM that stopped being trustworthy is rebuilt instead, which drops its timers.
        """
        result = EventResult(TIMER_EVENT)
        if not self.pending_timers:
            return result
        if not self.trusted:
            self._rebuild()
            return result
        sandbox = self._sandbox
        lua = sandbox.lua
        lua.set_max_memory(sandbox.ceilings.guest)
        sandbox._in_guest = True
        # Each timer's turn gives the watchdog its own deadline; this one covers the kernel's work
        # before the first (the run starts no turn once it has used one budget).
        slot = enter_call(sandbox.watch, time.thread_time() + self._budget_s)
        try:
            produced = self._kernel_run_timers(self._clock(), self._budget_s, self._budget_ms, self._budget_s)
        except lua54.LuaMemoryError:
            produced = _KERNEL_OUT_OF_MEMORY
        except lua54.LuaError as exc:
            log.warning("guild %s: the kernel failed running timers: %s", self.guild_id, exc)
            produced = exc
        finally:
            sandbox._in_guest = False
            lua.set_max_memory(sandbox.ceilings.host)
            if leave_call(slot, sandbox.watch):
                sandbox.forget_threads()
        if produced is _KERNEL_OUT_OF_MEMORY or isinstance(produced, lua54.LuaError):
            self._kernel_failed(produced, self.scripts[0].name, result)
            return result
        if produced is None:
            self.pending_timers, self.next_timer_due = 0, None
            return result
        ran = produced["ran"]
        if ran is not None:
            result.scripts = list(dict.fromkeys(ran.values()))
        self._collect(produced, result)
        if any(error.kind == "memory_limit" for error in result.errors):
            self._check_trust()
        return result

    def drop_due_timers(self, message: str) -> EventResult:
        """Drop the timers due now without running them: one ``limit`` error each, with ``message``
        and the line that set the timer. For a guild whose CPU budget is spent: its timers are not
        deferred, since a deferred resumption would still cost the CPU the guild was denied."""
        result = EventResult(TIMER_EVENT)
        if not self.pending_timers:
            return result
        for record in self._sandbox.kernel["drop_due_timers"](self._clock()).values():
            result.errors.append(ScriptError(record["script"], "limit", message, record["line"]))
        self._refresh_timers()
        return result

    def _refresh_timers(self) -> None:
        self.pending_timers, self.next_timer_due = self._sandbox.kernel["timers"]()

    def _kernel_failed(self, produced: Any, fallback_script: str, result: EventResult) -> None:
        """The kernel itself failed around guest code: blame the running script."""
        running = self._sandbox.kernel["running"]() or fallback_script
        if produced is _KERNEL_OUT_OF_MEMORY:
            # The kernel's own bookkeeping ran out of room: the running script filled the heap.
            result.errors.append(ScriptError(running, "memory_limit", self._memory_message()))
            self._check_trust()
        else:
            # Its stack or heap exhausted beyond what the kernel can inspect: rebuild the VM before
            # its next event (or timer).
            message = "the script exhausted its VM (stack or memory); it is rebuilt for the next event"
            result.errors.append(ScriptError(running, "runtime", message))
            self.trusted = False
        self._refresh_timers()

    def _collect(self, produced: Any, result: EventResult) -> None:
        errors = produced["errors"]
        if errors is not None:
            for record in errors.values():
                result.errors.append(
                    ScriptError(record["script"], record["kind"], _clip(record["message"]), record["line"])
                )
        actions = produced["actions"]
        if actions is not None:
            result.actions = [lua_to_python(action) for action in actions.values()]
        self._take_output(produced, result.output)
        self.pending_timers = produced["timers"] or 0
        self.next_timer_due = produced["next_due"]

    @staticmethod
    def _take_output(produced: Any, into: list[OutputLine]) -> None:
        if produced is None or produced["out_text"] is None:
            return
        scripts = produced["out_script"]
        for i, text in produced["out_text"].items():
            into.append(OutputLine(scripts[i], text))
