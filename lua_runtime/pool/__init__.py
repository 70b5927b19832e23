"""Guild VMs distributed over workers, behind one async facade (DESIGN.md, "The seed's rules").

The bot uses :class:`VmPool` (``facade.py``); the rest of this package is its machinery: where the
guilds' VMs live and when they close (``residency.py``), how failed requests are told
(``failures.py``), the messages (``messages.py``), the worker loop every strategy runs
(``worker.py``, with ``guild_slot.py``, ``timer_heap.py``, ``checks.py`` and ``watchdog.py``), the
thread strategies (``threadpool.py``), the process strategy and its supervisor (``processpool.py``)
and the counters (``stats.py``).
"""

from lua_runtime.pool.config import STRATEGIES, PoolConfig
from lua_runtime.pool.errors import (
    EventDropped,
    PoolClosed,
    PoolError,
    ScriptsUnavailable,
    VmFailed,
    WorkerCrashed,
)
from lua_runtime.pool.facade import LoadErrorsCallback, VmPool
from lua_runtime.pool.messages import LoadReport
from lua_runtime.pool.provider import InMemoryScripts, ScriptProvider, ScriptProviderFactory
from lua_runtime.pool.stats import GuildStats, LatencyHistogram, PoolStats, ScriptStats, WorkerStats

__all__ = [
    "STRATEGIES",
    "EventDropped",
    "GuildStats",
    "InMemoryScripts",
    "LatencyHistogram",
    "LoadErrorsCallback",
    "LoadReport",
    "PoolClosed",
    "PoolConfig",
    "PoolError",
    "PoolStats",
    "ScriptProvider",
    "ScriptProviderFactory",
    "ScriptStats",
    "ScriptsUnavailable",
    "VmFailed",
    "VmPool",
    "WorkerCrashed",
    "WorkerStats",
]
