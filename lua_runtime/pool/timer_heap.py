"""When the guilds on a worker have timers due: the worker loop's wake-up schedule.

Timers (the ``task`` library) belong to the guild's VM; the loop (``worker.py``) only wakes them. It
keeps a heap of (due time, guild) on its ``clock``, waits on its inbox no longer than until the
earliest, and files a due guild's run of timers in that guild's own queue, so that timer work keeps
the guild's order, takes its place in the round-robin and is charged to its bucket like an event. A
run whose guild's bucket is empty drops the due timers, each with an error in the result (for the
same reason events are dropped, not deferred).

A guild has one live entry at most, the one its slot's ``wake_at`` names; entries left behind (the
guild left, its VM was closed or replaced, an earlier timer took over) are stale and skipped when
they come up, which is cheaper than finding them in the heap.
"""

from __future__ import annotations

import heapq
import itertools
import math
from collections.abc import Callable, Iterator, Mapping

from lua_runtime.pool.guild_slot import GuildSlot


class TimerHeap:
    """The due times of the earliest timers of a worker's guilds."""

    __slots__ = ("_clock", "_entries", "_order")

    def __init__(self, clock: Callable[[], float]) -> None:
        self._clock = clock
        #: (due time on ``clock``, tie-breaker, guild id).
        self._entries: list[tuple[float, int, int]] = []
        self._order = itertools.count()

    def __bool__(self) -> bool:
        return bool(self._entries)

    def seconds_to_next(self) -> float | None:
        """Seconds until the earliest entry (stale or not), None when there is none."""
        entries = self._entries
        if not entries:
            return None
        return max(0.0, entries[0][0] - self._clock())

    def wake(self, slot: GuildSlot, due: float) -> None:
        """The guild's earliest timer is due at ``due``: wake it then, unless it wakes earlier."""
        if due < slot.wake_at:
            slot.wake_at = due
            heapq.heappush(self._entries, (due, next(self._order), slot.guild_id))

    def take_due(self, slots: Mapping[int, GuildSlot]) -> Iterator[GuildSlot]:
        """Take the entries due now off the heap; the slots of the live ones, which wake nowhere
        from then on (until the loop :meth:`wake` s them again)."""
        entries, now = self._entries, self._clock()
        while entries and entries[0][0] <= now:
            due, _, guild_id = heapq.heappop(entries)
            slot = slots.get(guild_id)
            # Stale: the guild left, its VM was closed or replaced, or an earlier timer took over.
            if slot is None or slot.wake_at != due or slot.vm is None:
                continue
            slot.wake_at = math.inf
            yield slot

    def clear(self) -> None:
        self._entries.clear()
