"""How the facade fails the requests no worker will answer, in words a server's admins can act on.

A worker that exits leaves its open requests unanswered: the facade fails them all at once
(:func:`fail_open_requests`), with :class:`PoolClosed` when the pool stopped it, and with
:class:`WorkerCrashed` when it crashed or was killed, explained to each guild as its own fault or
as someone else's. The requests the facade holds itself, those of a guild moving to the slow lane,
fail with :class:`PoolClosed` when the pool closes during the move (:func:`fail_held`).
"""

from __future__ import annotations

from lua_runtime.pool.errors import PoolClosed, PoolError, WorkerCrashed
from lua_runtime.pool.messages import VmAction
from lua_runtime.pool.residency import GuildRecord
from lua_runtime.pool.strategy import Pending, WorkerHandle

#: What a request the pool did not run before it closed fails with.
SHUT_DOWN = "the bot shut down before this request ran"


def fail_open_requests(
    worker: WorkerHandle,
    error: type[PoolError],
    crash: str | None = None,
    culprit: int | None = None,
    overran: bool = False,
) -> None:
    """Fail every request open on ``worker``; ``crash`` says what ended it, for the guilds'
    admins (a worker process killed or dead says how: "died: SIGKILL (signal 9)"). A worker that
    one guild's work took down (``culprit``; ``overran`` when the supervisor killed it past its
    deadline) is explained to that guild as its own fault and to the others as someone else's,
    without naming who."""
    pending, worker.pending = worker.pending, {}
    for future, guild, _, is_event in pending.values():
        guild_id = None
        if guild is not None:
            guild.pending -= 1
            guild_id = guild.guild_id
            if is_event:
                guild.counters.failed += 1
        if future.done():
            continue
        if error is not WorkerCrashed:
            future.set_exception(error(guild_id, SHUT_DOWN))
            continue
        future.set_exception(_worker_crashed(guild_id, crash, culprit, overran))


def fail_held(guild: GuildRecord, requests: list[tuple[VmAction, Pending]]) -> None:
    """Fail the guild's ``requests`` that the facade held rather than sent: the pool closed."""
    for _, (future, _, _, _) in requests:
        guild.pending -= 1
        if not future.done():
            future.set_exception(PoolClosed(guild.guild_id, SHUT_DOWN))


def _worker_crashed(
    guild_id: int | None, crash: str | None, culprit: int | None, overran: bool
) -> WorkerCrashed:
    if culprit is not None and guild_id == culprit:
        if overran:
            message = (
                "this server's script ran past the worker's deadline in a call that could not "
                "be interrupted, so its worker was stopped; the next event starts a fresh VM"
            )
        else:
            message = (
                f"this server's script took its worker down ({crash}); the worker was replaced "
                "and the next event starts a fresh VM"
            )
    elif culprit is not None:
        how = "ran past its deadline" if overran else "took it down"
        message = (
            "the worker running this server's scripts was stopped because another server's "
            f"script {how}; the next event starts a fresh VM"
        )
    else:
        message = (
            f"the worker running this server's scripts crashed ({crash}) before it answered "
            "this request; the next event starts a fresh VM"
        )
    return WorkerCrashed(guild_id, message, culprit=culprit, overran=overran)
