"""The quotas that bound one guild's scripts.

Every limit has a default that suits a typical server; operators change them through settings
(``bot/settings.py`` reads them from the environment). The sandbox reads them at VM creation and on
every event, so the values here are the single source of truth for what a script may spend.
"""

from __future__ import annotations

from dataclasses import dataclass

KiB = 1024
MiB = 1024 * KiB

#: The shortest ``task.wait``/``task.delay``, in seconds: about one frame, as on Roblox. A shorter
#: wait (``task.wait()``, ``task.wait(0)``) waits this long, so that a loop of waits cannot keep its
#: worker busy.
MIN_TASK_WAIT_SECONDS = 1 / 60


@dataclass(frozen=True, slots=True)
class SandboxLimits:
    """Per-guild quotas enforced by the Lua sandbox and the script store."""

    #: Heap ceiling of one guild VM, in bytes, while guest code runs.
    max_memory: int = 16 * MiB
    #: CPU time one event (or the top-level code of one script load) may use, in milliseconds.
    cpu_ms_per_event: int = 100
    #: Moderation actions one event may request, across all of the guild's scripts.
    max_actions_per_event: int = 20
    #: Moderation actions the guild's scripts may request in any action_window_seconds, across
    #: events and timers (the worker keeps the window: ``lua_runtime/action_window.py``).
    max_actions_per_window: int = 60
    #: The length of that window, in seconds.
    action_window_seconds: int = 10
    #: Bytes of ``print`` output kept per event; the rest is cut with a marker.
    max_output_per_event: int = 4 * KiB
    #: Size of one script's source, in bytes.
    max_script_bytes: int = 64 * KiB
    #: Scripts one guild may keep.
    max_scripts_per_guild: int = 25
    #: Keys one guild may keep in ``@warden/kv``.
    kv_max_keys: int = 1000
    #: Length of one KV key, in bytes.
    kv_max_key_bytes: int = 256
    #: Encoded size of one KV value, in bytes.
    kv_max_value_bytes: int = 64 * KiB
    #: Encoded size of all of one guild's KV keys and values together, in bytes.
    kv_max_total_bytes: int = 4 * MiB
    #: ``task`` waits, delays and defers one guild's scripts may have pending at once. Each timer's
    #: resumption then runs with the budgets of an event (CPU, actions, output).
    max_pending_timers: int = 100
    #: Longest ``task.wait``/``task.delay``, in seconds.
    max_timer_delay_seconds: int = 900

    def __post_init__(self) -> None:
        for name in self.__slots__:  # type: ignore[attr-defined]
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        if self.max_memory < 1 * MiB:
            raise ValueError("max_memory must be at least 1 MiB: a guild VM needs room to load its scripts")
