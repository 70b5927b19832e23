"""Why a request to the VM pool did not produce a result.

Each message is written for a server's admins: the bot reports ``str(exc)`` to the guild as it is.
A worker that cannot carry a request out raises :class:`RequestFailed`, and replies with its
:class:`Failure`; the facade raises the matching error to the caller (:func:`error_for`).
"""

from __future__ import annotations

from lua_runtime.pool.messages import Failure


class PoolError(Exception):
    """A request to the VM pool was not carried out."""

    def __init__(self, guild_id: int | None, message: str) -> None:
        super().__init__(message)
        self.guild_id = guild_id


class WorkerCrashed(PoolError):
    """The worker that held the guild's VM died before it answered; the next event gets a fresh VM.

    ``culprit`` is the guild whose work was running when the worker died, when the pool knows it
    (a worker process killed past its deadline, or dead while armed for a guild's work);
    ``overran`` says that it was killed for running past its deadline.
    """

    def __init__(
        self, guild_id: int | None, message: str, *, culprit: int | None = None, overran: bool = False
    ) -> None:
        super().__init__(guild_id, message)
        self.culprit = culprit
        self.overran = overran

    @property
    def caused_here(self) -> bool:
        """True when this guild's own work took the worker down."""
        return self.culprit is not None and self.culprit == self.guild_id


class VmFailed(PoolError):
    """The guild's VM raised an unexpected error; it was closed and the next event rebuilds it."""


class ScriptsUnavailable(PoolError):
    """The guild's scripts could not be read, so no VM could be built for it."""


class EventDropped(PoolError):
    """The event was not run: the guild's queue was full or its CPU budget was spent.

    ``reason`` is ``"queue_full"`` or ``"cpu_budget"``; both are counted in the guild's stats.
    """

    def __init__(self, guild_id: int | None, reason: str, message: str) -> None:
        super().__init__(guild_id, message)
        self.reason = reason


class PoolClosed(PoolError):
    """The pool is shutting down (or shut down) and did not run the request."""


class RequestFailed(Exception):
    """Raised on a worker: one request could not be carried out; the loop replies with ``failure``
    (which the facade turns into one of the errors above) and goes on."""

    def __init__(self, failure: Failure) -> None:
        super().__init__(failure.message)
        self.failure = failure


_FAILURES: dict[str, type[PoolError]] = {
    "scripts_unavailable": ScriptsUnavailable,
    "vm_failed": VmFailed,
    "pool_closed": PoolClosed,
}


def error_for(guild_id: int | None, failure: Failure) -> Exception:
    """The exception the caller of a request gets for the failure its worker replied with."""
    if failure.kind == "invalid_request":
        return ValueError(failure.message)
    if failure.kind == "cpu_budget":
        return EventDropped(guild_id, "cpu_budget", failure.message)
    return _FAILURES[failure.kind](guild_id, failure.message)
