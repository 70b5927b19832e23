"""Running hostile scripts in a child process, and reading back what the guild VMs answered.

Every attack in this package runs in ``tests/support/sandbox_child.py``, never in pytest's own
process: a script that escapes the sandbox's bounds may hang a worker inside a C call (no hook can
stop it, and the Lua call runs without the GIL, so no Python signal handler can either) or make
lupa abort the whole process. In a child, such an escape fails its test: the child stops itself
when it has used its CPU allowance, and its exit status says how it ended.

:func:`attack` is the common shape: a guild whose first script is the attack and whose second is a
well-behaved *witness* handling another event; the attack gets its message events, then the
witness gets its own, and must still be served by the same VM (or the fresh one that replaced it).
:func:`run_attacks` runs many such cases in one child, a guild each, to keep the suite fast;
:func:`run_child` runs any plan (several guilds, any steps) for the tests that need more.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from lua_runtime.limits import MiB, SandboxLimits
from lua_runtime.results import OutputLine, ScriptError
from tests.support.sandbox_child import EXIT_CPU_SPENT

REPO_ROOT = Path(__file__).resolve().parents[2]

#: Small quotas keep each attack cheap: an event's budget is spent in 50 ms, a heap fills at 4 MiB.
SMALL = SandboxLimits(cpu_ms_per_event=50, max_memory=4 * MiB)

#: CPU seconds one child may use before it is stopped. An honest child needs about 0.25 s to start
#: and a few event budgets after that; a script stuck in C burns this in no time.
CHILD_CPU_SECONDS = 1.2

#: CPU seconds added to a batch's allowance per case: a case may spend a few event budgets (its
#: events, its top level, the witness's event) and the building of its guild VM.
CASE_CPU_SECONDS = 0.25

#: Wall-clock backstop for a child stuck without burning CPU (a deadlock). A child that burns CPU
#: is always stopped by CHILD_CPU_SECONDS first, whatever the load on the machine.
CHILD_WALL_SECONDS = 120

#: Handles WITNESS_EVENT with a little of everything a real script uses: the pattern functions,
#: string.format, table.concat, tostring, @warden/discord. It runs after each attack, in the same VM.
WITNESS_EVENT = "member_join"
WITNESS_SOURCE = """
local discord = require("@warden/discord")
return {
  member_join = function(ev)
    local letters = table.concat({ ("a b c"):match("(%a) (%a) (%a)") }, ",")
    print(string.format("alive %s %s", letters, tostring(#ev.member.id)))
    discord.kick(ev.member.id, "witness")
  end,
}
"""
WITNESS_OUTPUT = "alive a,b,c 19"


def handler(body: str, event: str = "message") -> str:
    """A script whose handler for ``event`` runs ``body``, which sits alone on line 2."""
    return f"return {{ {event} = function(m)\n{body}\nend }}"


@dataclass(frozen=True, slots=True)
class Load:
    """What building one guild VM reported."""

    guild: int
    errors: list[ScriptError]
    output: list[OutputLine]
    handled_events: list[str]


@dataclass(frozen=True, slots=True)
class Event:
    """What one dispatched event produced, and the VM's state after it."""

    guild: int
    event: str
    errors: list[ScriptError]
    actions: list[dict[str, Any]]
    output: list[OutputLine]
    #: A Python exception out of ``GuildVM.dispatch``, which must never raise for guest faults.
    exception: str | None
    trusted: bool
    rebuilds: int
    memory_used: int

    def texts(self, script: str | None = None) -> list[str]:
        return [line.text for line in self.output if script is None or line.script == script]

    def error_of(self, script: str) -> ScriptError | None:
        return next((error for error in self.errors if error.script == script), None)


@dataclass(frozen=True, slots=True)
class ChildRun:
    """Everything a child reported: each guild's load, then each step's event, in order."""

    loads: dict[int, Load]
    events: list[Event]


class ChildDied(AssertionError):
    """The child did not finish its plan: it hung, aborted or crashed."""


def _describe_death(returncode: int, stderr: str, progress: str, cpu_seconds: float) -> str:
    if returncode in (EXIT_CPU_SPENT, -signal.SIGXCPU, -signal.SIGKILL):
        how = f"used up its {cpu_seconds:g} s of CPU: something ran without a bound"
    elif returncode == -signal.SIGABRT:
        how = "aborted (SIGABRT): lupa panicked on an unprotected Lua error"
    elif returncode < 0:
        how = f"was killed by {signal.Signals(-returncode).name}"
    else:
        how = f"exited with status {returncode}"
    return f"the child {how}.\nlast lines it printed:\n{progress}\nstderr:\n{stderr[-2000:]}"


def _errors(records: list[dict[str, Any]]) -> list[ScriptError]:
    return [ScriptError(**record) for record in records]


def _output(records: list[dict[str, Any]]) -> list[OutputLine]:
    return [OutputLine(**record) for record in records]


def run_plan(module: str, plan: Mapping[str, Any], cpu_seconds: float) -> list[str]:
    """Run ``python -m module`` with ``plan`` (JSON) on its stdin; the lines it printed before its
    final ``{"done": true}``. Raises :class:`ChildDied` when it does not get there."""
    try:
        completed = subprocess.run(
            [sys.executable, "-m", module],
            input=json.dumps(plan),
            capture_output=True,
            text=True,
            cwd=REPO_ROOT,
            timeout=CHILD_WALL_SECONDS,
            check=False,
        )
    except subprocess.TimeoutExpired as exc:
        raise ChildDied(f"the child was still running after {CHILD_WALL_SECONDS} s of wall time") from exc
    lines = completed.stdout.splitlines()
    if completed.returncode != 0 or not lines or json.loads(lines[-1]) != {"done": True}:
        progress = "\n".join(line[:300] for line in lines[-3:])
        raise ChildDied(_describe_death(completed.returncode, completed.stderr, progress, cpu_seconds))
    return lines[:-1]


def run_child(
    guilds: Mapping[int, Sequence[tuple[str, str]]],
    steps: Sequence[tuple[int, str, dict[str, Any] | None]],
    limits: SandboxLimits = SMALL,
    cpu_seconds: float = CHILD_CPU_SECONDS,
    preemption: bool = True,
) -> ChildRun:
    """Build each guild's VM from its ``(name, source)`` scripts, then run ``steps`` in order.

    A step is ``(guild, event, payload)``, with ``None`` for the event's sample payload. With
    ``preemption=False`` the child's sandboxes run on their count hooks alone (``preemption.py``).
    Raises :class:`ChildDied` when the child does not finish its plan.
    """
    plan = {
        "cpu_seconds": cpu_seconds,
        "limits": asdict(limits),
        "guilds": {str(guild): [list(script) for script in scripts] for guild, scripts in guilds.items()},
        "steps": [list(step) for step in steps],
        "preemption": preemption,
    }
    lines = run_plan("tests.support.sandbox_child", plan, cpu_seconds)
    loads: dict[int, Load] = {}
    events: list[Event] = []
    for line in lines:
        record = json.loads(line)
        if "event" not in record:
            loads[record["guild"]] = Load(
                record["guild"],
                _errors(record["load_errors"]),
                _output(record["load_output"]),
                record["handled_events"],
            )
        else:
            events.append(
                Event(
                    guild=record["guild"],
                    event=record["event"],
                    errors=_errors(record.get("errors", [])),
                    actions=record.get("actions", []),
                    output=_output(record.get("output", [])),
                    exception=record.get("exception"),
                    trusted=record["trusted"],
                    rebuilds=record["rebuilds"],
                    memory_used=record["memory_used"],
                )
            )
    return ChildRun(loads, events)


@dataclass(frozen=True, slots=True)
class Case:
    """One attack: its source (loaded as script "attack"), and how many message events it gets."""

    source: str
    events: int = 1


@dataclass(frozen=True, slots=True)
class Attack:
    """One attack's run: its load, the events it got, and the witness's event after them."""

    load: Load
    events: list[Event]
    witness: Event

    @property
    def load_error(self) -> ScriptError | None:
        return next((error for error in self.load.errors if error.script == "attack"), None)

    @property
    def first(self) -> Event:
        return self.events[0]

    @property
    def error(self) -> ScriptError | None:
        """The attack's load error, or else its error in the first event."""
        return self.load_error or self.first.error_of("attack")

    def check_witness(self) -> None:
        """The VM (or the fresh one that replaced it) still serves the witness, untouched."""
        for step in [*self.events, self.witness]:
            assert step.exception is None, f"GuildVM.dispatch raised for a guest fault: {step.exception}"
        assert self.witness.errors == [], f"the witness failed after the attack: {self.witness.errors}"
        assert self.witness.texts() == [WITNESS_OUTPUT], f"the witness printed {self.witness.texts()}"
        assert [action["type"] for action in self.witness.actions] == ["kick"]


def run_attacks(
    cases: Mapping[str, Case], limits: SandboxLimits = SMALL, preemption: bool = True
) -> dict[str, Attack]:
    """Run every case in one child, each in a guild of its own (attack and witness), in order.

    Batching keeps the suite fast (a child takes a third of a second to start); separate guilds
    keep the cases apart, as separate servers are. Nothing is checked here: each test checks its
    own case, so that one bad case does not fail the others (unless it takes the child down).
    """
    names = list(cases)
    guilds = {
        i: [("attack", cases[name].source), ("witness", WITNESS_SOURCE)] for i, name in enumerate(names, 1)
    }
    steps: list[tuple[int, str, dict[str, Any] | None]] = []
    for i, name in enumerate(names, 1):
        steps += [(i, "message", None)] * cases[name].events + [(i, WITNESS_EVENT, None)]
    run = run_child(guilds, steps, limits, CHILD_CPU_SECONDS + len(names) * CASE_CPU_SECONDS, preemption)
    by_guild: dict[int, list[Event]] = {}
    for step in run.events:
        by_guild.setdefault(step.guild, []).append(step)
    return {name: Attack(run.loads[i], by_guild[i][:-1], by_guild[i][-1]) for i, name in enumerate(names, 1)}


def attack(source: str, *, events: int = 1, limits: SandboxLimits = SMALL, preemption: bool = True) -> Attack:
    """Run one attack in a child of its own and check that the witness is still served after it."""
    result = run_attacks({"attack": Case(source, events)}, limits, preemption)["attack"]
    result.check_witness()
    return result


def assert_stopped(error: ScriptError | None, kind: str, limits: SandboxLimits = SMALL) -> None:
    """``error`` is the attack's, of ``kind``, with the message the kernel gives that kind."""
    assert error is not None, "the attack was not stopped"
    assert (error.script, error.kind) == ("attack", kind), error
    if kind == "time_limit":
        assert error.message == f"time limit exceeded ({limits.cpu_ms_per_event} ms of CPU per event)"
    elif kind == "memory_limit":
        assert error.message == f"memory limit exceeded ({limits.max_memory / MiB:g} MiB per server)"
