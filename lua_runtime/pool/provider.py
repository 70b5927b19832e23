"""Where a worker gets a guild's scripts when it builds the guild's VM.

Workers build VMs on their own thread (or in their own process) whenever a guild has none:
on first use, after an eviction, after a crash. They read the scripts synchronously through a
:class:`ScriptProvider`. The pool is given either a provider, shared by every worker thread (so it
must be thread-safe), or a :data:`ScriptProviderFactory`, called once on each worker so that each
gets its own (for example its own SQLite connection). Both must be picklable for a process pool:
the factory (or the provider) is what crosses into a worker process.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable, Mapping
from typing import Protocol, runtime_checkable

from lua_runtime.guild_vm import ScriptSource
from lua_runtime.kv_store import KVStore


@runtime_checkable
class ScriptProvider(Protocol):
    """The enabled scripts of a guild, in load order, and the store behind ``@warden/kv``."""

    def scripts_for(self, guild_id: int) -> list[ScriptSource]: ...

    @property
    def kv_store(self) -> KVStore | None:
        """The key-value store guild VMs built from this provider use; None: no ``@warden/kv``."""
        ...


#: A picklable callable, run on each worker, that returns that worker's provider.
ScriptProviderFactory = Callable[[], ScriptProvider]


class SharedProvider:
    """A factory that hands every worker the same provider (picklable when the provider is)."""

    def __init__(self, provider: ScriptProvider) -> None:
        self.provider = provider

    def __call__(self) -> ScriptProvider:
        return self.provider


def provider_factory(scripts: ScriptProvider | ScriptProviderFactory) -> ScriptProviderFactory:
    """The factory for ``scripts``, which is either a provider or already a factory."""
    if isinstance(scripts, ScriptProvider):
        return SharedProvider(scripts)
    if not callable(scripts):
        raise TypeError(f"expected a ScriptProvider or a factory of one, got {type(scripts).__name__}")
    return scripts


class InMemoryScripts:
    """Scripts held in memory: for the benchmark, tests and tools that run guild VMs without a
    database. Thread-safe; changing a guild's scripts takes effect at its next VM build."""

    def __init__(
        self, scripts: Mapping[int, Iterable[ScriptSource]] | None = None, kv_store: KVStore | None = None
    ) -> None:
        self.kv_store = kv_store
        self._lock = threading.Lock()
        self._scripts: dict[int, tuple[ScriptSource, ...]] = {
            guild_id: tuple(sources) for guild_id, sources in (scripts or {}).items()
        }

    def __getstate__(self) -> dict[str, object]:
        # A KV store holds a connection: it does not cross into another process.
        with self._lock:
            return {"scripts": dict(self._scripts)}

    def __setstate__(self, state: dict[str, object]) -> None:
        self.__init__(state["scripts"])  # type: ignore[misc, arg-type]

    def set(self, guild_id: int, scripts: Iterable[ScriptSource]) -> None:
        """Replace the guild's scripts (what an upload, edit or toggle does in the store)."""
        with self._lock:
            self._scripts[guild_id] = tuple(scripts)

    def scripts_for(self, guild_id: int) -> list[ScriptSource]:
        with self._lock:
            return list(self._scripts.get(guild_id, ()))
