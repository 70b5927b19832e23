"""What the facade needs from a VM distribution strategy, whatever its workers are.

A strategy starts workers that each run :func:`lua_runtime.pool.worker.serve`, decides which
worker a guild's VM lives on, and replaces workers that crash. The facade sees workers only through
:class:`WorkerHandle`: a way to send requests, plus its own bookkeeping. No handle ever refers to a
guild VM (the seed's "one owner per VM" rule).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any, Protocol

from lua_runtime.pool.messages import VmAction, WorkerRecord
from lua_runtime.pool.stats import EventCounters

#: How a worker's records reach the facade: ``deliver(worker_id, records)``, callable from any
#: thread; the facade runs them on its event loop.
Deliver = Callable[[int, list[WorkerRecord]], None]

#: A request the facade is waiting on: its future, the guild it belongs to (None for worker-wide
#: requests), when it was sent (``time.perf_counter``), and whether it is an event.
Pending = tuple[asyncio.Future[Any], Any, float, bool]


class WorkerHandle:
    """The facade's handle on one worker.

    :meth:`send` queues a request for the worker. Requests sent during one turn of the event loop
    go to the worker together, in one hand-off at the end of the turn (``post``), so a worker
    that wakes up finds every event its guilds were sent in that turn, not just the first.

    ``guilds`` are the guilds placed on the worker (kept by the strategy); ``pending`` are the
    requests sent and not answered yet, by request id (kept by the facade, which fails them all if
    the worker dies); ``counters`` count its finished events. ``slow_lane`` marks a worker kept for
    guilds whose events hit the CPU limits; ``checks`` the worker that checks uploads and runs dry runs
    (the check lane), which holds no guild's VM. ``starts_at`` is when the worker starts serving
    (``time.monotonic``): later than its creation for a replacement held back by the strategy's
    restart back-off; requests sent before then wait for it.
    """

    __slots__ = (
        "_call_soon",
        "_outgoing",
        "_post",
        "checks",
        "counters",
        "guilds",
        "pending",
        "slow_lane",
        "starts_at",
        "worker_id",
    )

    def __init__(
        self,
        worker_id: int,
        post: Callable[[list[VmAction]], None],
        call_soon: Callable[[Callable[[], None]], object],
        slow_lane: bool = False,
        starts_at: float = 0.0,
        checks: bool = False,
    ) -> None:
        self.worker_id = worker_id
        self.slow_lane = slow_lane
        self.checks = checks
        self.starts_at = starts_at
        self._post = post
        self._call_soon = call_soon
        self._outgoing: list[VmAction] = []
        self.guilds: set[int] = set()
        self.pending: dict[int, Pending] = {}
        self.counters = EventCounters()

    def send(self, action: VmAction) -> None:
        """Queue ``action`` for the worker (on the event loop); it leaves at the end of this turn."""
        outgoing = self._outgoing
        outgoing.append(action)
        if len(outgoing) == 1:
            self._call_soon(self._hand_off)

    def _hand_off(self) -> None:
        batch, self._outgoing = self._outgoing, []
        self._post(batch)


class Strategy(Protocol):
    """A VM distribution strategy, as the facade drives it (all calls on the event loop)."""

    #: The strategy's name in :class:`~lua_runtime.pool.PoolConfig`.
    name: str
    #: Whether :meth:`place` can put a guild on a slow lane, apart from the other guilds.
    has_slow_lane: bool

    def start(self, loop: asyncio.AbstractEventLoop, deliver: Deliver) -> None:
        """Start the initial workers; their records go to ``deliver``, their requests leave at the
        end of ``loop``'s turns."""
        ...

    def place(self, guild_id: int, *, slow_lane: bool = False) -> WorkerHandle:
        """Choose the worker that will hold the guild's VM, and record the guild there; on the slow
        lane when ``slow_lane`` (and the strategy has one)."""
        ...

    def check_lane(self) -> WorkerHandle:
        """The worker that checks uploads and runs dry runs (started on first use, and again after
        it died): code nobody has run yet runs there, away from every guild's VM."""
        ...

    def release(self, worker: WorkerHandle, guild_id: int) -> None:
        """The guild's VM left ``worker`` (closed for idleness or to make room)."""
        ...

    def get(self, worker_id: int) -> WorkerHandle | None: ...

    def workers(self) -> list[WorkerHandle]:
        """The workers not known to have exited."""
        ...

    def remove(
        self, worker_id: int, *, replace: bool, killed_for_overrun: bool = False
    ) -> WorkerHandle | None:
        """Forget a worker that exited; start a replacement when ``replace`` (at once when it was
        ``killed_for_overrun`` of a guild's work, else after the restart back-off if it died young).
        Returns its handle."""
        ...
