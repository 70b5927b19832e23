"""Child process for the sandbox attack tests: builds guild VMs from a plan and feeds them events.

A hostile script that escapes the sandbox's bounds can hang a worker inside a C call or abort the
whole process (lupa aborts on an out-of-memory error outside a protected call). Run in this child,
such a script fails its test instead of killing pytest: the parent (``tests/sandbox/conftest.py``)
runs ``python -m tests.support.sandbox_child`` with a timeout and reads what the child printed.

The plan comes as one JSON object on stdin::

    {
      "cpu_seconds": 3,                                 # CPU this process may use before the kernel kills it
      "limits": {"cpu_ms_per_event": 50, ...},          # SandboxLimits fields; defaults for the rest
      "guilds": {"1": [["name", "luau source"], ...]},  # scripts of each guild, in load order
      "steps": [[1, "message", null], ...]              # guild, event, payload (null: the sample)
    }

A script stuck in a C call or a hook-free finalizer burns CPU without end, and the GIL-free Lua call
cannot be interrupted from Python: so the child caps its own CPU time (``RLIMIT_CPU``), and the
kernel ends it with SIGXCPU. CPU time, unlike wall time, does not stretch on a busy machine, so the
cap can sit close to what an honest run needs and a hang costs its test a few seconds, not minutes.
Core dumps are turned off: an abort or a SIGXCPU must not leave files behind.

The child prints one JSON line per guild loaded and per step run, flushed at once, so that the
parent sees how far a child got before it died; then ``{"done": true}``. A Python exception out of
``GuildVM.dispatch`` (which must never raise for guest faults) is reported in its step's line and
the run goes on.
"""

from __future__ import annotations

import json
import resource
import sys
from dataclasses import asdict
from typing import Any

from lua_runtime.events import sample_payload
from lua_runtime.guild_vm import GuildVM, ScriptSource
from lua_runtime.limits import SandboxLimits


def emit(record: dict[str, Any]) -> None:
    print(json.dumps(record), flush=True)


def load_guild(guild_id: int, scripts: list[list[str]], limits: SandboxLimits) -> GuildVM:
    vm = GuildVM(guild_id, [ScriptSource(name, source) for name, source in scripts], limits)
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
        result = vm.dispatch(event, sample_payload(event) if payload is None else payload)
    except Exception as exc:  # the parent asserts on it: dispatch must not raise for guest faults
        record["exception"] = f"{type(exc).__name__}: {exc}"
    else:
        record.update(result.to_json())
    record["trusted"] = vm.trusted
    record["rebuilds"] = vm.rebuilds
    record["memory_used"] = vm.memory_used()
    emit(record)


def cap_resources(cpu_seconds: int) -> None:
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    # SIGXCPU at the soft limit; the hard limit (SIGKILL) one second later in case it is caught.
    resource.setrlimit(resource.RLIMIT_CPU, (cpu_seconds, cpu_seconds + 1))


def main() -> None:
    plan = json.load(sys.stdin)
    cap_resources(plan["cpu_seconds"])
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
