"""Child process for the sandbox attack tests: builds guild VMs from a plan and feeds them events.

A hostile script that escapes the sandbox's bounds can hang a worker inside a C call or abort the
whole process (lupa aborts on an out-of-memory error outside a protected call). Run in this child,
such a script fails its test instead of killing pytest: the parent (``tests/sandbox/attack.py``)
runs ``python -m tests.support.sandbox_child`` and reads what the child printed.

The plan comes as one JSON object on stdin::

    {
      "cpu_seconds": 1.5,                               # CPU this process may use before it is stopped
      "limits": {"cpu_ms_per_event": 50, ...},          # SandboxLimits fields; defaults for the rest
      "guilds": {"1": [["name", "luau source"], ...]},  # scripts of each guild, in load order
      "steps": [[1, "message", null], ...],             # guild, event, payload (null: the sample)
      "preemption": true                                # false: sandboxes run on their hooks alone
    }

Each guild's ``@warden/kv`` is an in-memory store of its own (a ``DryRunKV``). A step whose event is
``"timers"`` waits (sleeping, not spinning) until the guild's earliest timer is due, then runs the
due timers.

A script stuck in a C call or a hook-free finalizer burns CPU without end, and nothing can interrupt
the Lua call from inside. So the child caps its own CPU time: a watchdog thread ends the process
with status EXIT_CPU_SPENT once it has used ``cpu_seconds`` (lupa releases the GIL while Lua runs,
so the thread gets its turn), and ``RLIMIT_CPU`` has the kernel kill it a second or two later if
the watchdog cannot run. CPU time, unlike wall time, does not stretch on a busy machine, so the cap
can sit close to what an honest run needs, and a hang costs its test a second or so, not minutes.
Core dumps are turned off: an abort or a SIGXCPU must not leave files behind.

The child prints one JSON line per guild loaded and per step run, flushed at once, so that the
parent sees how far a child got before it died; then ``{"done": true}``. A Python exception out of
``GuildVM.dispatch`` (which must never raise for guest faults) is reported in its step's line and
the run goes on.
"""

from __future__ import annotations

import json
import math
import os
import resource
import sys
import threading
import time
from dataclasses import asdict
from typing import Any

from lua_runtime import preemption
from lua_runtime.events import sample_payload
from lua_runtime.guild_vm import GuildVM, ScriptSource
from lua_runtime.kv_store import DryRunKV
from lua_runtime.limits import SandboxLimits

#: The step event that runs a guild's timers instead of dispatching an event.
TIMERS = "timers"


def emit(record: dict[str, Any]) -> None:
    print(json.dumps(record), flush=True)


def load_guild(guild_id: int, scripts: list[list[str]], limits: SandboxLimits) -> GuildVM:
    sources = [ScriptSource(name, source) for name, source in scripts]
    vm = GuildVM(guild_id, sources, limits, DryRunKV(limits))
    emit(
        {
            "guild": guild_id,
            "load_errors": [asdict(error) for error in vm.load_errors],
            "load_output": [asdict(line) for line in vm.load_output],
            "handled_events": sorted(vm.handled_events),
        }
    )
    return vm


def run_step(vm: GuildVM, event: str, payload: dict[str, Any] | None) -> None:
    record: dict[str, Any] = {"guild": vm.guild_id, "event": event}
    try:
        if event == TIMERS:
            if vm.next_timer_due is not None:
                time.sleep(max(0.0, vm.next_timer_due - time.monotonic()))
            result = vm.run_timers()
        else:
            result = vm.dispatch(event, sample_payload(event) if payload is None else payload)
    except Exception as exc:  # the parent asserts on it: dispatch must not raise for guest faults
        record["exception"] = f"{type(exc).__name__}: {exc}"
    else:
        record.update(result.to_json())
    record["trusted"] = vm.trusted
    record["rebuilds"] = vm.rebuilds
    record["memory_used"] = vm.memory_used()
    emit(record)


#: Exit status of a child whose watchdog found its CPU allowance spent.
EXIT_CPU_SPENT = 3

#: How often the watchdog reads the process's CPU clock, in seconds.
WATCH_PERIOD = 0.02


def cap_resources(cpu_seconds: float) -> None:
    """Stop this process once it has used ``cpu_seconds`` of CPU, and never leave a core file."""
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    # The backstop, for a hang that holds the GIL: SIGXCPU at the soft limit, SIGKILL a second later.
    soft = math.ceil(cpu_seconds) + 1
    resource.setrlimit(resource.RLIMIT_CPU, (soft, soft + 1))

    def watch() -> None:
        while time.process_time() < cpu_seconds:
            time.sleep(WATCH_PERIOD)
        os.write(2, f"sandbox_child: {cpu_seconds} s of CPU used up\n".encode())
        os._exit(EXIT_CPU_SPENT)

    threading.Thread(target=watch, name="cpu-watchdog", daemon=True).start()


def main() -> None:
    plan = json.load(sys.stdin)
    cap_resources(plan["cpu_seconds"])
    if not plan.get("preemption", True):
        preemption.disable()
    limits = SandboxLimits(**plan.get("limits", {}))
    vms = {
        int(guild_id): load_guild(int(guild_id), scripts, limits)
        for guild_id, scripts in plan["guilds"].items()
    }
    for guild_id, event, payload in plan["steps"]:
        run_step(vms[guild_id], event, payload)
    emit({"done": True})


if __name__ == "__main__":
    main()
