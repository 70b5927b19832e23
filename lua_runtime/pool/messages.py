"""The messages between the VM pool's facade and its workers.

Requests (:data:`VmAction`) go from the facade to a worker's request channel; records
(:data:`WorkerRecord`) come back in batches. Every message is a plain, picklable record: no futures,
locks or closures, so the same protocol serves worker threads and worker processes alike. A
request that wants an answer carries a ``request_id`` (0 means none); the facade keeps the future
for each id and resolves it when a :class:`Reply` with that id comes back.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from lua_runtime.guild_vm import ScriptSource
from lua_runtime.results import EventResult, OutputLine, ScriptError

#: The request id of a message whose sender wants no reply.
NO_REPLY = 0


# --- requests: facade -> worker ---------------------------------------------------------------


@dataclass(slots=True)
class DispatchEvent:
    """Run ``event`` through the guild's scripts; the reply's value is an ``EventResult``."""

    request_id: int
    guild_id: int
    event: str
    payload: Mapping[str, Any]


@dataclass(slots=True)
class ReloadGuild:
    """Read the guild's scripts again and swap in a VM built from them; the reply is a LoadReport."""

    request_id: int
    guild_id: int


@dataclass(slots=True)
class ResetGuild:
    """Close the guild's VM; its next event builds a fresh one from the stored scripts."""

    request_id: int
    guild_id: int


@dataclass(slots=True)
class ReleaseGuild:
    """Give the guild up at once: close its VM and hand back, as the reply's value, the guild's
    requests not started yet (a list, in order), for the facade to send to the guild's new worker.

    Unlike the requests above it does not wait its turn in the guild's queue: it is how a guild
    leaves a worker without the worker first running what it queued.
    """

    request_id: int
    guild_id: int


@dataclass(slots=True)
class DryRunScript:
    """Run one script against one event in a fresh sandbox; the reply's value is a ``DryRun``.

    It is queued with the guild's other requests, so that a guild testing scripts in a loop takes
    its turn like any other work of that guild.
    """

    request_id: int
    guild_id: int
    script: ScriptSource
    event: str
    payload: Mapping[str, Any] | None


@dataclass(slots=True)
class LoadScript:
    """Check an upload: translate ``script``, compile it and run its top level in a fresh sandbox,
    with an empty store; the reply's value is a ``DryRun`` (its ``handled_events`` and ``error``).

    This is guest-controlled work (the parser, the translator and the top level all run on what an
    admin uploaded), so it runs on a worker under the watchdog like any event, never in the bot's
    process: a source that stalls the translator costs a worker, which is replaced, never the bot.
    """

    request_id: int
    guild_id: int
    script: ScriptSource


@dataclass(slots=True)
class ReportStats:
    """Report what the worker holds right now; the reply's value is a :class:`WorkerReport`."""

    request_id: int


@dataclass(slots=True)
class Shutdown:
    """Finish the queued requests for up to ``drain_seconds``, fail the rest, and stop."""

    request_id: int
    drain_seconds: float


#: How an injected fault strikes. ``raise``: the worker's loop raises, exactly as an unexpected bug
#: would (every strategy). The others end the worker's process the way only a worker process can
#: survive, so only the ``processpool`` strategy takes them: ``kill`` (the process sends itself
#: SIGKILL), ``abort`` (lupa's panic on an out-of-memory error outside a protected call: SIGABRT),
#: ``stall`` (a call into Lua's C pattern matcher that does not return for ages, made while the
#: worker is armed with an event's budget, so that the supervisor has to kill it).
FaultKind = Literal["raise", "kill", "abort", "stall"]


@dataclass(slots=True)
class InjectFault:
    """Make the worker fail: fault injection for tests and drills of the crash recovery. Only the
    facade sends it; no script can.

    ``delay_seconds`` (``kill`` and ``abort``) lets the worker go on for that long first, so that
    the fault lands in the middle of whatever it runs next, such as an event sent just before.
    A ``stall`` is the work of ``guild_id``, as a script stuck in C code would be.
    """

    request_id: int
    reason: str
    kind: FaultKind = "raise"
    delay_seconds: float = 0.0
    guild_id: int = 0


#: Requests that belong to one guild and run in that guild's order.
GuildAction = DispatchEvent | ReloadGuild | ResetGuild | DryRunScript | LoadScript
VmAction = GuildAction | ReleaseGuild | ReportStats | Shutdown | InjectFault


# --- records: worker -> facade ----------------------------------------------------------------

FailureKind = Literal["invalid_request", "cpu_budget", "scripts_unavailable", "vm_failed", "pool_closed"]


@dataclass(frozen=True, slots=True)
class Failure:
    """Why a request produced no value; the facade turns it into the matching exception."""

    kind: FailureKind
    message: str


@dataclass(slots=True)
class Reply:
    """The answer to the request ``request_id``: a value, or a failure.

    ``cpu_seconds`` is the worker thread's CPU time spent on the request (for events: the
    handlers' run, without any VM build, which its :class:`VmBuilt` record reports).
    """

    request_id: int
    value: Any = None
    failure: Failure | None = None
    cpu_seconds: float = 0.0


@dataclass(frozen=True, slots=True)
class LoadReport:
    """What building a guild VM from its scripts produced: the answer to a reload."""

    guild_id: int
    scripts: tuple[str, ...]
    errors: tuple[ScriptError, ...]
    output: tuple[OutputLine, ...]
    handled_events: frozenset[str]
    cpu_seconds: float

    @property
    def ok(self) -> bool:
        return not self.errors


@dataclass(slots=True)
class VmBuilt:
    """A guild VM was built because an event needed one (first use, after an eviction, a crash, or
    a rebuild after a memory-limit error) rather than because a reload asked for it."""

    guild_id: int
    report: LoadReport


@dataclass(frozen=True, slots=True)
class WorkerReport:
    """A worker's view of itself, for stats: which guild VMs it holds and their heap sizes."""

    worker_id: int
    #: guild id -> bytes its VM holds (the Lua heap as lupa counts it).
    vm_memory: dict[int, int] = field(default_factory=dict)
    #: Guild requests waiting in the worker's queues.
    queued: int = 0


@dataclass(slots=True)
class TimerResult:
    """What a run of the guild's due timers produced (``task.wait``, ``task.delay``): an
    ``EventResult`` for the event ``"timer"``, to be carried out like an event's.

    No request asks for it: the worker runs a guild's timers when they are due, in the guild's
    order, and sends this on its own. ``cpu_seconds`` is the worker's CPU time for the run.
    """

    guild_id: int
    result: EventResult
    cpu_seconds: float


@dataclass(slots=True)
class TimersPending:
    """The number of the guild's pending timers is now ``count``; sent, in the same batch as the
    reply, after any request that changed it (and after a run of timers). A guild with timers
    pending is not idle: its VM must stay where it is for them to fire."""

    guild_id: int
    count: int


@dataclass(slots=True)
class WorkerExit:
    """The last record a worker sends. ``crash`` is None for a clean stop, else what killed it;
    ``culprit`` is the guild whose work took the worker down, when there is one; ``overran`` says
    that the supervisor killed it past its deadline."""

    worker_id: int
    crash: str | None
    culprit: int | None = None
    overran: bool = False


WorkerRecord = Reply | VmBuilt | TimerResult | TimersPending | WorkerExit
