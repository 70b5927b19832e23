"""A guild's action window: how many more actions its scripts may request right now.

The per-event quota (``SandboxLimits.max_actions_per_event``) bounds one event, and each timer's
resumption has the quota of an event: 100 pending timers of 20 actions each would give 2,000
actions from one event. The window bounds what a guild's VM may produce across events and timers:
at most ``max_actions_per_window`` actions in any ``action_window_seconds``.

The worker loop keeps one window per guild (a dry run keeps its own, on its virtual clock). Before
each call into the VM (an event, a run of timers) it asks for the allowance left, which the kernel
enforces while the scripts run (``push_action`` stops a script with a ``limit`` error once it is
spent); after the call it records the actions produced. A call's actions are counted at the time
the call ended: the window is exact for calls, which last milliseconds.

This is about what a VM may produce; the bot's executor has its own rate limits, which follow
Discord's (``bot/actions.py``).
"""

from __future__ import annotations

from lua_runtime.limits import SandboxLimits


class ActionWindow:
    """A sliding window over the actions one guild's scripts requested.

    Holds one entry per call that produced actions within the window, so at most
    ``max_actions_per_window`` entries; a guild that acted in none holds none.
    """

    __slots__ = ("_counts", "_limit", "_seconds", "_spent", "_times")

    def __init__(self, limits: SandboxLimits) -> None:
        self._limit = limits.max_actions_per_window
        self._seconds = limits.action_window_seconds
        #: When each recorded call ended, oldest first, and how many actions it produced.
        self._times: list[float] = []
        self._counts: list[int] = []
        #: The sum of ``_counts``.
        self._spent = 0

    def allowance(self, now: float) -> int:
        """The actions the guild may still request at ``now`` (seconds, on the caller's clock)."""
        times = self._times
        if times:
            cutoff = now - self._seconds
            while times and times[0] <= cutoff:
                del times[0]
                self._spent -= self._counts.pop(0)
        return max(0, self._limit - self._spent)

    def record(self, now: float, count: int) -> None:
        """A call that ended at ``now`` produced ``count`` actions."""
        if count > 0:
            self._times.append(now)
            self._counts.append(count)
            self._spent += count
