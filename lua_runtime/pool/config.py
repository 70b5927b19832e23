"""How the VM pool is shaped: one frozen record the bot's settings map onto, and the strategy it
selects."""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from lua_runtime.limits import SandboxLimits
from lua_runtime.pool.processpool import (
    DEADLINE_FACTOR,
    DEADLINE_FLOOR_SECONDS,
    ProcessPoolStrategy,
    WorkerDeadline,
)
from lua_runtime.pool.provider import ScriptProviderFactory
from lua_runtime.pool.strategy import Strategy
from lua_runtime.pool.threadpool import RestartBackoff, ThreadPerGuildStrategy, ThreadPoolStrategy
from lua_runtime.pool.worker import WorkerSettings
from lua_runtime.translation_process import DEFAULT_MEMORY_BYTES

#: The strategies this package implements, all on the same worker loop and messages.
STRATEGIES = ("threadpool", "thread-per-guild", "processpool")


def _cores() -> int:
    return os.cpu_count() or 1


@dataclass(frozen=True, slots=True)
class PoolConfig:
    """Settings of one :class:`~lua_runtime.pool.VmPool`.

    The defaults suit one bot process on a small machine: a worker per core, idle guild VMs closed
    after 15 minutes (AntiRaid's figure), room for 10,000 resident VMs (about 0.95 GiB,
    as bench/dispatch.py measures), and a CPU budget that lets a guild use a tenth of a core on
    average with bursts of a full second.
    """

    #: ``processpool`` (the default: guild VMs spread over ``workers`` processes, so a crash, a stall
    #: in C or a hostile upload's translation costs one process, never the bot), ``threadpool``
    #: (guild VMs spread over ``workers`` threads of the bot's process: faster to start, weaker
    #: isolation) or ``thread-per-guild`` (legacy: one thread per guild, started on demand and
    #: reaped with the guild's VM).
    strategy: str = "processpool"
    #: Worker threads of the ``threadpool`` strategy, worker processes of ``processpool``
    #: (``VM_WORKERS``).
    workers: int = field(default_factory=_cores)
    #: A guild VM that handled nothing for this long is closed; the next event rebuilds it.
    idle_seconds: float = 900.0
    #: Past this many resident guild VMs, the least recently used idle one is closed first.
    max_resident_vms: int = 10_000
    #: Requests one guild may have waiting or running; events beyond it are dropped and counted.
    guild_queue_size: int = 100
    #: CPU seconds one guild's events may use per window (a token bucket that refills continuously).
    guild_cpu_seconds: float = 1.0
    #: The window of ``guild_cpu_seconds``, in seconds.
    guild_cpu_window_seconds: float = 10.0
    #: ``processpool``: a worker process whose event (or VM build) is still running after
    #: ``max(worker_deadline_seconds, worker_deadline_factor * its CPU budget)`` of wall time is
    #: killed and replaced (see :class:`~lua_runtime.pool.processpool.WorkerDeadline`).
    worker_deadline_seconds: float = DEADLINE_FLOOR_SECONDS
    worker_deadline_factor: float = DEADLINE_FACTOR
    #: ``threadpool`` and ``processpool``: a worker that died young (within
    #: ``RestartBackoff.STABLE_SECONDS`` of its start) is replaced after this long, and each such
    #: death in a row triples the wait, up to the maximum (see
    #: :class:`~lua_runtime.pool.threadpool.RestartBackoff`). Requests wait for the replacement.
    restart_backoff_seconds: float = RestartBackoff.FIRST_SECONDS
    restart_backoff_max_seconds: float = RestartBackoff.MAX_SECONDS
    #: Address space of one worker process (``processpool``), or of the child process that
    #: translates scripts for the thread strategies, in bytes: an rlimit, so that guest-controlled
    #: work that exhausts memory costs that process, never the machine.
    worker_memory_bytes: int = DEFAULT_MEMORY_BYTES

    def translation_deadline(self, limits: SandboxLimits) -> float | None:
        """The wall time a translation may take in the thread strategies' child process (None for
        ``processpool``, whose workers translate under the supervisor's deadline): the deadline
        of one event's guest work, as a worker process has."""
        if self.strategy == "processpool":
            return None
        deadline = WorkerDeadline(self.worker_deadline_seconds, self.worker_deadline_factor)
        return deadline.seconds(limits.cpu_ms_per_event / 1000)

    def __post_init__(self) -> None:
        if self.strategy not in STRATEGIES:
            raise ValueError(f"unknown VM strategy {self.strategy!r}; available: {', '.join(STRATEGIES)}")
        for name in ("workers", "max_resident_vms", "guild_queue_size", "worker_memory_bytes"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        for name in (
            "idle_seconds",
            "guild_cpu_seconds",
            "guild_cpu_window_seconds",
            "worker_deadline_seconds",
            "worker_deadline_factor",
            "restart_backoff_seconds",
            "restart_backoff_max_seconds",
        ):
            value = getattr(self, name)
            if not isinstance(value, int | float) or isinstance(value, bool) or value <= 0:
                raise ValueError(f"{name} must be a positive number, got {value!r}")


def build_strategy(
    config: PoolConfig,
    scripts: ScriptProviderFactory,
    settings: WorkerSettings,
    clock: Callable[[], float] = time.monotonic,
) -> Strategy:
    """The strategy ``config`` names, not started yet."""
    backoff = RestartBackoff(config.restart_backoff_seconds, config.restart_backoff_max_seconds)
    if config.strategy == "threadpool":
        return ThreadPoolStrategy(scripts, settings, config.workers, clock, backoff)
    if config.strategy == "processpool":
        deadline = WorkerDeadline(config.worker_deadline_seconds, config.worker_deadline_factor)
        return ProcessPoolStrategy(
            scripts, settings, config.workers, clock, deadline=deadline, backoff=backoff
        )
    return ThreadPerGuildStrategy(scripts, settings, clock)
