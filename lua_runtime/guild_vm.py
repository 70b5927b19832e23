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
from lua_runtime.heap_cost import lua_cost
from lua_runtime.kv_store import KeyValueStore
from lua_runtime.limits import MIN_TASK_WAIT_SECONDS, MiB, SandboxLimits
from lua_runtime.luau import LuauSyntaxError, translate
from lua_runtime.preemption import enter_call, leave_call
from lua_runtime.results import MAX_ERROR_CHARS, EventResult, OutputLine, ScriptError
from lua_runtime.sandbox import HOST_HEADROOM, GuildKV, Sandbox, memory_limit_message
from lua_runtime.translation_process import TranslationAborted, too_much_memory

log = logging.getLogger(__name__)

#: After a memory-limit error, a VM whose live heap is still above this share of its ceiling is
#: rebuilt from its scripts: it would fail every event. (A VM is rebuilt too, error or not, when
#: its live heap ends a call above its resting ceiling: see ``Ceilings.resting``.)
UNTRUSTED_HEAP_SHARE = 0.75

#: Deepest nesting accepted in an event payload (real payloads are three levels deep).
MAX_PAYLOAD_DEPTH = 8

#: The most heap an event's payload may take once in Lua. The payload is pushed with the host's
#: ceiling in force, into a VM that keeps at least the host's headroom free between calls: half of
#: that headroom leaves the rest for the call's own host work.
MAX_PAYLOAD_COST = HOST_HEADROOM // 2

#: A payload whose entries and characters (``check_plain``'s count) are at most this many costs at
#: most MAX_PAYLOAD_COST, without counting it exactly: each entry is a table slot, a key string and
#: a table or string of its own (176 bytes at most), each character at most 4 bytes of UTF-8.
_CHEAP_PAYLOAD_SIZE = (MAX_PAYLOAD_COST - 64) // 176

#: The action allowance of a call made without one (``GuildVM`` used on its own, in tests and
#: benchmarks): the worker loop and dry runs pass the guild's, from its action window.
UNLIMITED_ACTIONS = 2**31

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


#: Luau source in, Lua 5.4 source out; raises :class:`LuauSyntaxError`, or
#: :class:`TranslationAborted` when the translation was stopped (the bot's thread strategies
#: translate in a child process under a deadline: ``translation_process.py``).
Translator = Callable[[str], str]


def translate_script(script: ScriptSource, limits: SandboxLimits, translator: Translator = translate) -> str:
    """The Lua 5.4 source of ``script``, after the size check and the Luau translation."""
    size = len(script.source.encode("utf-8", "surrogatepass"))
    if size > limits.max_script_bytes:
        message = f"the script is {size} bytes; the limit is {limits.max_script_bytes}"
        raise ScriptRejected(ScriptError(script.name, "limit", message))
    try:
        return translator(script.source)
    except LuauSyntaxError as exc:
        raise ScriptRejected(ScriptError(script.name, "syntax", _clip(exc.message), exc.line)) from None
    except TranslationAborted as exc:
        raise ScriptRejected(ScriptError(script.name, "limit", _clip(str(exc)))) from None
    except MemoryError:
        # A worker process translating a hostile source under its memory rlimit (VM_WORKER_MEMORY).
        raise ScriptRejected(ScriptError(script.name, "limit", too_much_memory(script.source))) from None


def check_plain(value: Any, depth: int = 0) -> int:
    """Refuse anything but plain data: a Python object reachable from Lua would open Python to it.

    ``value`` is a dict or a list; scalars are checked inline, so only containers recurse. Returns
    its size: its entries and the characters of its keys and strings, all levels counted (the
    payload's cost in the VM is bounded from it: see _CHEAP_PAYLOAD_SIZE).
    """
    if depth >= MAX_PAYLOAD_DEPTH:
        raise ValueError(f"payload nested deeper than {MAX_PAYLOAD_DEPTH} levels")
    if type(value) is dict:
        size = len(value)
        for key, item in value.items():
            if type(key) is not str:
                raise ValueError(f"payload keys must be strings, got {key!r}")
            if type(item) is str:
                size += len(key) + len(item)
            elif type(item) in _PLAIN_SCALARS:
                size += len(key)
            else:
                size += len(key) + check_plain(item, depth + 1)
        return size
    if type(value) is list:
        size = len(value)
        for item in value:
            if type(item) is str:
                size += len(item)
            elif type(item) not in _PLAIN_SCALARS:
                size += check_plain(item, depth + 1)
        return size
    raise ValueError(f"payloads hold plain data only, got {type(value).__name__}")


def check_payload(payload: dict[str, Any]) -> None:
    """Refuse a payload that is not plain data, or too big to push into a VM safely."""
    if check_plain(payload) > _CHEAP_PAYLOAD_SIZE:
        cost = lua_cost(payload)
        if cost > MAX_PAYLOAD_COST:
            raise ValueError(
                f"payload too large: about {cost / MiB:.1f} MiB once in Lua; the limit is "
                f"{MAX_PAYLOAD_COST / MiB:g} MiB"
            )


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
        "_translator",
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
        translator: Translator = translate,
    ) -> None:
        """``kv_store`` backs ``@warden/kv``; without one, requiring it is a clear error. ``clock``
        (seconds) is the time timers are due on: the worker loop's, or a dry run's virtual one.
        ``translator`` turns each script's Luau into Lua (in-process by default)."""
        self.guild_id = guild_id
        self._translator = translator
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
            lua_source = translate_script(script, self.limits, self._translator)
        except ScriptRejected as exc:
            self.load_errors.append(exc.error)
            return []
        sandbox = self._sandbox
        # The source goes into the VM under the host ceiling; the guest ceiling applies to its run.
        # The VM keeps its host headroom free between calls (see below), so the source fits.
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
        del args
        if kind is not None:
            self.load_errors.append(ScriptError(script.name, kind, _clip(detail), line))
        resting = sandbox.ceilings.resting
        if sandbox.memory_used() > resting and sandbox.collect_garbage() > resting:
            if kind is None:
                # The top level kept so much that the VM has no room left for an event's payload.
                # Its handlers go, and with them what it kept: a rebuild would only load it again.
                message = (
                    f"{self._memory_message()}: the top level left {sandbox.memory_used() / MiB:.1f} "
                    "MiB in use, too little room to run events; the script is not loaded (keep less "
                    "at load time)"
                )
                self.load_errors.append(ScriptError(script.name, "memory_limit", message))
                kind = "memory_limit"
                build["unload"](script.name)
                sandbox.collect_garbage()
            if sandbox.memory_used() > resting:
                self.trusted = False
        return [] if kind is not None else list(detail.values())

    def _memory_message(self) -> str:
        return memory_limit_message(self.limits)

    def _check_trust(self, result: EventResult) -> None:
        """After a call that had errors or ended with its heap above the resting ceiling: a VM whose
        live heap, once collected, is above the resting ceiling (or, after a memory-limit error,
        above UNTRUSTED_HEAP_SHARE of its ceiling) is rebuilt before its next host push."""
        sandbox = self._sandbox
        limit = sandbox.ceilings.resting
        if any(error.kind == "memory_limit" for error in result.errors):
            limit = min(limit, int(self.limits.max_memory * UNTRUSTED_HEAP_SHARE))
        elif sandbox.memory_used() <= limit:
            return
        if sandbox.collect_garbage() > limit:
            self.trusted = False

    def memory_used(self) -> int:
        return self._sandbox.memory_used()

    def _rebuild(self) -> None:
        """Build the VM again from its scripts once its heap stays too full; its timers are dropped."""
        self.rebuilds += 1
        log.info("guild %s: rebuilding its VM: its heap stayed nearly full", self.guild_id)
        self._load_all()

    def dispatch(
        self, event: str, payload: dict[str, Any], action_allowance: int = UNLIMITED_ACTIONS
    ) -> EventResult:
        """Run every loaded handler for ``event`` with ``payload``; never raises for guest faults.

        ``action_allowance``: the actions the guild may still request in its action window (see
        ``action_window.py``); a script that asks for more is stopped with a ``limit`` error.
        """
        names = self._handlers.get(event)
        result = EventResult(event)
        if names is None:
            if event not in EVENT_NAMES:
                raise ValueError(f"unknown event {event!r}")
            return result
        check_payload(payload)
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
            produced = self._kernel_dispatch(event, lua_payload, deadline, self._budget_ms, action_allowance)
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
        if produced is not None:
            self._collect(produced, result)
        elif self.pending_timers:
            self.pending_timers, self.next_timer_due = 0, None
        if result.errors or lua.get_memory_used() > sandbox.ceilings.resting:
            self._check_trust(result)
        return result

    def run_timers(self, action_allowance: int = UNLIMITED_ACTIONS) -> EventResult:
        """Resume the threads whose timers are due now, in due order; never raises for guest faults.

        Each resumption is a turn of its own, with the budgets of an event (CPU, actions, output);
        the threads it defers run in its turn. The run starts no new resumption once it has used
        one event's CPU budget: the timers still due stay due (:attr:`next_timer_due` says so), so
        that the worker can serve other guilds before it comes back. The result is the event
        ``"timer"``'s: actions, output and errors as for an event, ``scripts`` those whose
        threads ran. A VM that stopped being trustworthy is rebuilt instead, which drops its timers.
        ``action_allowance`` is the guild's, as for :meth:`dispatch`, shared by the whole run.
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
            produced = self._kernel_run_timers(
                self._clock(), self._budget_s, self._budget_ms, self._budget_s, action_allowance
            )
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
        else:
            ran = produced["ran"]
            if ran is not None:
                result.scripts = list(dict.fromkeys(ran.values()))
            self._collect(produced, result)
        if result.errors or lua.get_memory_used() > sandbox.ceilings.resting:
            self._check_trust(result)
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
            self._check_trust(result)
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
