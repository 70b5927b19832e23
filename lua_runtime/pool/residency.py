"""Where the guilds' VMs live, as the facade sees it: its record of each guild, and which guilds have
a VM on a worker now.

A guild is placed on a worker (the strategy picks which) when a request needs its VM, and is
*resident* from then on, until its VM is closed or lost. The facade closes a VM only when nothing of
its guild is open (no request pending, no move to the slow lane under way), so that no request is
reordered: after ``idle_seconds`` without a request, unless timers are pending in it (closing it would
drop them), or to make room past ``max_resident_vms``, least recently used first (which drops its
timers, and says so in the log). A guild whose worker died, or that moves to the slow lane, is
forgotten here too (:meth:`Residency.forget`, :meth:`Residency.release`).
"""

from __future__ import annotations

import itertools
import logging
from collections import OrderedDict
from collections.abc import Callable

from lua_runtime.pool.config import PoolConfig
from lua_runtime.pool.messages import NO_REPLY, ResetGuild, VmAction
from lua_runtime.pool.stats import GuildCounters, GuildStats
from lua_runtime.pool.strategy import Pending, Strategy, WorkerHandle

log = logging.getLogger(__name__)


class GuildRecord:
    """The facade's record of one guild: where its VM lives, what it has open, its counters."""

    __slots__ = (
        "counters",
        "guild_id",
        "last_used",
        "moving",
        "pending",
        "slow_lane_next",
        "timers",
        "worker",
    )

    def __init__(self, guild_id: int) -> None:
        self.guild_id = guild_id
        #: The worker holding the guild's VM (a weak handle in the seed's sense: never the VM).
        self.worker: WorkerHandle | None = None
        #: While the guild moves to the slow lane: its requests held until the move is done.
        self.moving: list[tuple[VmAction, Pending]] | None = None
        #: Requests sent (or held) and not answered yet.
        self.pending = 0
        self.last_used = 0.0
        #: Timers pending in its VM, as its worker last said.
        self.timers = 0
        #: Its work took a worker down: its next VM goes to the slow lane.
        self.slow_lane_next = False
        self.counters = GuildCounters()

    def stats(self, memory_bytes: int | None) -> GuildStats:
        """A snapshot of its counters; ``memory_bytes`` is what its VM holds (None: no VM)."""
        worker = self.worker
        return self.counters.snapshot(
            self.guild_id,
            worker.worker_id if worker is not None else None,
            worker is not None and worker.slow_lane,
            self.pending,
            memory_bytes,
        )


class Residency:
    """The guilds with a VM on a worker, least recently used first, and the closing of their VMs."""

    def __init__(self, strategy: Strategy, config: PoolConfig, clock: Callable[[], float]) -> None:
        self._strategy = strategy
        self._config = config
        self._clock = clock
        #: Guilds placed on a worker, least recently used first (the facade moves a guild to the
        #: end as it sends it a request).
        self.resident: OrderedDict[int, GuildRecord] = OrderedDict()

    def place(self, guild: GuildRecord, slow_lane: bool = False) -> WorkerHandle:
        """Put the guild on a worker, closing least recently used idle VMs past the maximum."""
        resident = self.resident
        excess = len(resident) + 1 - self._config.max_resident_vms
        if excess > 0:
            idle = (g for g in resident.values() if g.pending == 0 and g.moving is None)
            for victim in list(itertools.islice(idle, excess)):
                if victim.timers:
                    log.warning(
                        "guild %s: its VM is closed to make room (%d resident); %d pending timers dropped",
                        victim.guild_id,
                        len(resident),
                        victim.timers,
                    )
                self.close_vm(victim)
                victim.counters.evictions += 1
        worker = self._strategy.place(guild.guild_id, slow_lane=slow_lane)
        guild.slow_lane_next = False
        guild.worker = worker
        resident[guild.guild_id] = guild
        return worker

    def evict_idle(self) -> int:
        """Close the VMs of guilds idle for ``idle_seconds``; returns how many were closed.

        Guilds with open requests are never evicted: moving a guild with work in flight could
        reorder its events. Nor are guilds with timers pending: closing their VM would drop the
        timers.
        """
        cutoff = self._clock() - self._config.idle_seconds
        idle = []
        for guild in self.resident.values():
            if guild.last_used > cutoff:
                break  # least recently used first: the rest are more recent
            if guild.pending == 0 and guild.moving is None and guild.timers == 0:
                idle.append(guild)
        for guild in idle:
            self.close_vm(guild)
            guild.counters.evictions += 1
        if idle:
            log.info("closed %d idle guild VMs", len(idle))
        return len(idle)

    def close_vm(self, guild: GuildRecord) -> None:
        """Close the guild's VM and forget where it lived; only when nothing of it is open."""
        worker = guild.worker
        assert worker is not None and guild.pending == 0
        worker.send(ResetGuild(NO_REPLY, guild.guild_id))
        self.release(guild)

    def release(self, guild: GuildRecord) -> None:
        """Take the resident guild off its worker: the strategy forgets it there, and so do we."""
        assert guild.worker is not None
        self._strategy.release(guild.worker, guild.guild_id)
        guild.worker = None
        guild.timers = 0  # they end with the VM on that worker
        del self.resident[guild.guild_id]

    def forget(self, guild: GuildRecord) -> None:
        """The guild's worker is gone, and its VM with it."""
        guild.worker = None
        guild.timers = 0
        self.resident.pop(guild.guild_id, None)
