"""A guild's place on its worker: what the worker loop (``worker.py``) keeps for each guild it serves.

A :class:`GuildSlot` holds the guild's VM (the only strong reference to it), its queue of requests,
its CPU bucket, its action window and where its timers stand.

Each guild has a CPU budget: a token bucket holding up to ``cpu_seconds`` of CPU, refilled
continuously over ``cpu_window_seconds``. An event that finds its guild's bucket empty is dropped
with the reason ``cpu_budget`` (counted and logged by the facade) rather than deferred, because a
deferred event would still cost the CPU its guild was denied; the guild runs again as soon as its
bucket refills. Everything the guild makes a worker do (events, timers, VM builds, reloads, dry
runs) is charged to its bucket.

Each guild also has an action window (``action_window.py``): the actions its scripts may request in
any ``action_window_seconds``, across events and runs of timers. The loop passes what is left of it
into each call, and the kernel stops a script that asks for more with a ``limit`` error.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

from lua_runtime.action_window import ActionWindow
from lua_runtime.guild_vm import GuildVM
from lua_runtime.limits import SandboxLimits
from lua_runtime.pool.messages import GuildAction

#: A light guild's events (and runs of timers) are served holding the worker's :class:`Turn`, if it
#: has one; a guild whose last two took this much CPU or more each is not light, and its guest calls
#: run without the turn, in parallel with the other workers. A trivial event takes about 20 µs.
LIGHT_REQUEST_SECONDS = 0.00025


@dataclass(slots=True)
class RunTimers:
    """The loop's own request, filed in a guild's queue when its earliest timer is due: run the
    guild's due timers. Never sent by the facade, never handed back by :class:`ReleaseGuild`."""

    request_id: int
    guild_id: int


class GuildSlot:
    """A guild's place on its worker: its VM (the only strong reference to it), its queue, its
    CPU bucket, its action window, and where its timers stand."""

    __slots__ = (
        "actions",
        "guild_id",
        "last_cost",
        "light",
        "queue",
        "rebuilds",
        "refilled_at",
        "scheduled",
        "timers_queued",
        "timers_reported",
        "tokens",
        "vm",
        "wake_at",
    )

    def __init__(self, guild_id: int, tokens: float, now: float) -> None:
        self.guild_id = guild_id
        self.vm: GuildVM | None = None
        # A list, not a deque: an empty deque takes 760 bytes, and a worker holds thousands of
        # guilds whose queues are empty nearly always (and hold at most VM_GUILD_QUEUE requests).
        self.queue: list[GuildAction | RunTimers] = []
        #: See note_cost(); a guild nothing is known of yet is not light.
        self.light = False
        self.last_cost = math.inf
        #: The CPU seconds in its bucket (negative after an event that overdrew it).
        self.tokens = tokens
        self.refilled_at = now
        #: True while the slot is in the worker's round-robin of guilds with queued requests.
        self.scheduled = False
        #: ``vm.rebuilds`` when last seen, to notice a rebuild after a memory-limit error.
        self.rebuilds = 0
        #: The due time of the slot's live entry in the loop's timer heap (inf when it has none):
        #: any other entry of the guild's is stale.
        self.wake_at = math.inf
        #: True while a run of its timers waits in its queue.
        self.timers_queued = False
        #: The pending-timer count last sent to the facade.
        self.timers_reported = 0
        #: The guild's action window, from its first action on (see action_window.py).
        self.actions: ActionWindow | None = None

    def note_cost(self, cpu_seconds: float) -> None:
        """Its event or run of timers took ``cpu_seconds``. The guild is light unless its last two
        took LIGHT_REQUEST_SECONDS or more each: one slow event (a garbage collection, a cold cache)
        does not make a light guild heavy, and a heavy guild shows it on every event. A new guild is
        not light until one of its events was quick."""
        self.light = cpu_seconds < LIGHT_REQUEST_SECONDS or self.last_cost < LIGHT_REQUEST_SECONDS
        self.last_cost = cpu_seconds

    def replace_vm(self, vm: GuildVM | None) -> None:
        """Hold ``vm`` (None: no VM) from now on; the timers of the VM it replaces are gone."""
        self.vm = vm
        self.rebuilds = 0
        self.wake_at = math.inf

    # --- the CPU bucket ------------------------------------------------------------------------

    def refill(self, now: float, rate: float, budget: float) -> bool:
        """Top up the bucket for the time passed until ``now``, at ``rate`` CPU seconds per second
        up to ``budget``; True when it holds any CPU. (The loop takes the CPU out: its ``_charge``.)"""
        tokens = self.tokens + (now - self.refilled_at) * rate
        self.tokens = tokens if tokens < budget else budget
        self.refilled_at = now
        return self.tokens > 0

    # --- the action window ---------------------------------------------------------------------

    def action_allowance(self, clock: Callable[[], float], limits: SandboxLimits) -> int:
        """The actions the guild's scripts may still request in its action window. ``clock`` is
        read only for a guild that has acted: most never do, and this is on every event's path."""
        window = self.actions
        if window is None:
            return limits.max_actions_per_window
        return window.allowance(clock())

    def record_actions(self, now: float, count: int, limits: SandboxLimits) -> None:
        """Its call that ended at ``now`` requested ``count`` actions (more than none)."""
        if self.actions is None:
            self.actions = ActionWindow(limits)
        self.actions.record(now, count)
