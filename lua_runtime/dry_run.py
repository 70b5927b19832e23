"""Running one script against one event in a fresh sandbox, executing nothing.

This is the single code path behind ``python -m bot script run``/``check``, the pool's dry-run
action and ``/script test``: a fresh :class:`GuildVM` with the default limits, the same loading,
the same kernel. The actions come back as data; nothing reaches Discord.

A dry run never sleeps. The VM runs on a virtual clock: after the handler, the timers it set
(``task.wait``, ``task.delay``) run at once, in due order, each as the VM would run it when due, and
the actions they ask for carry ``after``, the seconds between the event and their timer. A script
may wait in a loop forever, so timers are followed for :data:`TIMER_HORIZON_SECONDS` of virtual
time, :data:`MAX_TIMER_RUNS` runs and :data:`TIMER_CPU_BUDGETS` event budgets of CPU at most; those
left are counted in ``pending_timers``. The run has an action window of its own, on its virtual
clock, as a guild has in the worker.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from lua_runtime.action_window import ActionWindow
from lua_runtime.events import sample_payload
from lua_runtime.guild_vm import GuildVM, ScriptRejected, ScriptSource, Translator, translate_script
from lua_runtime.kv_store import DryRunKV, KeyValueStore
from lua_runtime.limits import SandboxLimits
from lua_runtime.luau import translate
from lua_runtime.results import EventResult, ScriptError
from lua_runtime.sandbox import Sandbox

#: Virtual seconds after the event for which a dry run follows the timers: the default longest delay.
TIMER_HORIZON_SECONDS = 900.0
#: Runs of due timers a dry run makes at most.
MAX_TIMER_RUNS = 100
#: A dry run starts no new run of timers once its timers have used this many event CPU budgets.
TIMER_CPU_BUDGETS = 2
#: The most CPU one dry run can use, in event budgets: building its VM and loading the script (two),
#: the handler (one), and the timers (a run started under TIMER_CPU_BUDGETS may use two more).
MAX_CPU_BUDGETS = 7


class VirtualClock:
    """A dry run's clock: it stands still, and moves only when the run moves it to a timer."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


@dataclass(slots=True)
class DryRun:
    """What one script did with one event: its actions, its print output, its first error."""

    script: str
    event: str
    actions: list[dict[str, Any]] = field(default_factory=list)
    output: list[str] = field(default_factory=list)
    error: ScriptError | None = None
    #: The events the script has handlers for (empty when it failed to load).
    handled_events: list[str] = field(default_factory=list)
    cpu_ms: float = 0.0
    memory_bytes: int = 0
    #: Timers still pending when the run stopped following them (see the module's docstring).
    pending_timers: int = 0

    @property
    def ok(self) -> bool:
        return self.error is None

    def to_json(self) -> dict[str, Any]:
        """The offline CLI's JSON shape (DESIGN.md, "The offline CLI")."""
        return {
            "ok": self.ok,
            "actions": [{k: v for k, v in action.items() if k != "script"} for action in self.actions],
            "output": self.output,
            "error": None if self.error is None else self.error.to_json(),
        }


def check_script(
    script: ScriptSource, limits: SandboxLimits, translator: Translator = translate
) -> ScriptError | None:
    """Translate and compile ``script`` without running any of it; the first error, or None."""
    try:
        lua_source = translate_script(script, limits, translator)
    except ScriptRejected as exc:
        return exc.error
    sandbox = Sandbox(limits)
    compile_script = sandbox.kernel["build"]()["compile"]
    kind, message, line = compile_script(sandbox.lua.table(script.name, lua_source))
    return None if kind is None else ScriptError(script.name, kind, message, line)


def _load(
    run: DryRun,
    script: ScriptSource,
    limits: SandboxLimits,
    kv: KeyValueStore | None,
    clock: VirtualClock | None = None,
    translator: Translator = translate,
) -> GuildVM:
    # Dry runs never write real data: without a store of the caller's, @warden/kv is an empty one.
    store = kv if kv is not None else DryRunKV(limits)
    vm = GuildVM(0, [script], limits, store, clock or VirtualClock(), translator)
    run.output.extend(line.text for line in vm.load_output)
    run.error = vm.load_errors[0] if vm.load_errors else None
    run.handled_events = sorted(vm.handled_events)
    return vm


def load_script(
    script: ScriptSource,
    limits: SandboxLimits,
    kv: KeyValueStore | None = None,
    translator: Translator = translate,
) -> DryRun:
    """Load ``script`` in a fresh VM, running its top level only: what an upload is validated with.

    The result's ``handled_events`` are the events to record for the script; ``error`` is the
    first problem (syntax, top-level runtime error, a quota), with the author's line.
    """
    run = DryRun(script.name, event="")
    started = time.thread_time()
    vm = _load(run, script, limits, kv, translator=translator)
    run.cpu_ms = (time.thread_time() - started) * 1000
    run.memory_bytes = vm.memory_used()
    return run


def dry_run(
    script: ScriptSource,
    event: str,
    payload: Mapping[str, Any] | None,
    limits: SandboxLimits,
    kv: KeyValueStore | None = None,
    translator: Translator = translate,
) -> DryRun:
    """Load ``script`` in a fresh VM and feed it ``event`` (a sample payload when ``payload`` is None).

    ``kv`` backs ``@warden/kv``: pass a :class:`DryRunKV` over the guild's store to read its real
    data without changing it; by default the script sees an empty store.
    """
    if payload is None:
        payload = sample_payload(event)
    run = DryRun(script.name, event)
    started = time.thread_time()
    clock = VirtualClock()
    vm = _load(run, script, limits, kv, clock, translator)
    if run.error is None:
        window = ActionWindow(limits)
        result = vm.dispatch(event, payload, window.allowance(clock.now))
        window.record(clock.now, len(result.actions))
        _take(run, result, None)
        _follow_timers(run, vm, clock, window)
    run.cpu_ms = (time.thread_time() - started) * 1000
    run.memory_bytes = vm.memory_used()
    return run


def _take(run: DryRun, result: EventResult, after: float | None) -> None:
    """Add what the handler (``after`` None) or a run of timers ``after`` seconds produced."""
    for action in result.actions:
        run.actions.append(action if after is None else {**action, "after": after})
    run.output.extend(line.text for line in result.output)
    if run.error is None and result.errors:
        run.error = result.errors[0]


def _follow_timers(run: DryRun, vm: GuildVM, clock: VirtualClock, window: ActionWindow) -> None:
    """Run the timers the handler set, in virtual time, as the worker would run them when due."""
    allowance = time.thread_time() + TIMER_CPU_BUDGETS * vm.limits.cpu_ms_per_event / 1000
    for _ in range(MAX_TIMER_RUNS):
        due = vm.next_timer_due
        if due is None or due > TIMER_HORIZON_SECONDS or time.thread_time() >= allowance:
            break
        clock.now = max(clock.now, due)
        result = vm.run_timers(window.allowance(clock.now))
        window.record(clock.now, len(result.actions))
        _take(run, result, round(clock.now, 3))
    run.pending_timers = vm.pending_timers
