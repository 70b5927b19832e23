"""Operator settings, read from the environment and ``.env``.

Every setting is declared once in :data:`SETTINGS` with its parser, default and one line of help;
:func:`load_settings` validates them all up front so that a typo fails the start with one clear line
instead of a traceback minutes later. ``.env.example`` documents the same table (a test keeps them in
step).
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from dotenv import load_dotenv

from lua_runtime.limits import SandboxLimits
from lua_runtime.pool.config import STRATEGIES, PoolConfig
from lua_runtime.translation_process import DEFAULT_MEMORY_BYTES

# Three base64url parts: the bot's user id, a timestamp, an HMAC. Catches pasted client secrets,
# quotes and stray spaces, which otherwise fail later as a confusing 401 at login.
_TOKEN_RE = re.compile(r"^[A-Za-z0-9_-]{18,}\.[A-Za-z0-9_-]{4,}\.[A-Za-z0-9_-]{20,}$")
_SIZE_RE = re.compile(r"^(\d+)\s*(b|kib|kb|k|mib|mb|m|gib|gb|g)?$", re.IGNORECASE)
_SIZE_UNITS = {None: 1, "b": 1, "k": 1024, "kb": 1024, "kib": 1024}
_SIZE_UNITS |= {"m": 1024**2, "mb": 1024**2, "mib": 1024**2, "g": 1024**3, "gb": 1024**3, "gib": 1024**3}


class SettingsError(Exception):
    """A setting is missing or malformed. ``str()`` is the one line shown to the operator."""

    def __init__(self, variable: str, problem: str, fix: str) -> None:
        self.variable = variable
        super().__init__(f"{variable} {problem}: {fix}")


def _parse_token(raw: str) -> str:
    if not _TOKEN_RE.match(raw):
        raise ValueError(
            "does not look like a bot token",
            "copy it from the Developer Portal, Bot page, 'Reset Token' (three dot-separated parts)",
        )
    return raw


def _parse_snowflake(raw: str) -> int:
    if not raw.isdigit() or not 15 <= len(raw) <= 20:
        raise ValueError("is not a Discord id", "use the numeric server id (Developer Mode, Copy Server ID)")
    return int(raw)


def _parse_log_level(raw: str) -> str:
    level = raw.upper()
    if level not in ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"):
        raise ValueError("is not a log level", "use one of DEBUG, INFO, WARNING, ERROR, CRITICAL")
    return level


def _parse_strategy(raw: str) -> str:
    if raw not in STRATEGIES:
        raise ValueError("is not a VM strategy", f"use one of {', '.join(STRATEGIES)}")
    return raw


def _parse_url(raw: str) -> str:
    if not re.match(r"^https?://[^\s/]+", raw):
        raise ValueError("is not an http(s) URL", "write it like https://proxy.example/api/v10")
    return raw.rstrip("/")


def _positive_int(unit: str) -> Callable[[str], int]:
    def parse(raw: str) -> int:
        if not raw.isdigit() or int(raw) <= 0:
            raise ValueError("is not a positive whole number", f"give a number of {unit}, like 100")
        return int(raw)

    return parse


def _positive_number(unit: str) -> Callable[[str], float]:
    def parse(raw: str) -> float:
        try:
            value = float(raw)
        except ValueError:
            value = 0.0
        if not value > 0 or value == float("inf"):
            raise ValueError("is not a positive number", f"give a number of {unit}, like 2 or 2.5")
        return value

    return parse


def _parse_size(raw: str) -> int:
    match = _SIZE_RE.match(raw.strip())
    if not match or int(match.group(1)) <= 0:
        raise ValueError("is not a size", "give bytes, or a number with KiB or MiB, like 16MiB")
    unit = match.group(2).lower() if match.group(2) else None
    return int(match.group(1)) * _SIZE_UNITS[unit]


@dataclass(frozen=True, slots=True)
class SettingSpec:
    """One environment variable: where it goes, how it is parsed, and what it means."""

    env: str
    attr: str
    parse: Callable[[str], Any]
    help: str
    #: The limit in :class:`SandboxLimits` this variable sets, if it is one.
    limit: bool = False


SETTINGS: tuple[SettingSpec, ...] = (
    SettingSpec("DISCORD_TOKEN", "discord_token", _parse_token, "Bot token; required to run the bot"),
    SettingSpec("DATABASE_PATH", "database_path", Path, "SQLite file for scripts, settings and KV data"),
    SettingSpec("LOG_LEVEL", "log_level", _parse_log_level, "DEBUG, INFO, WARNING, ERROR or CRITICAL"),
    SettingSpec("DEV_GUILD_ID", "dev_guild_id", _parse_snowflake, "Sync slash commands to this server only"),
    SettingSpec("DISCORD_API_BASE", "discord_api_base", _parse_url, "REST base URL, e.g. a rate-limit proxy"),
    SettingSpec("VM_STRATEGY", "vm_strategy", _parse_strategy, "How guild VMs are spread over workers"),
    SettingSpec("VM_WORKERS", "vm_workers", _positive_int("workers"), "Worker threads or processes"),
    SettingSpec("VM_IDLE_SECONDS", "vm_idle_seconds", _positive_int("seconds"), "Idle VMs closed after this"),
    SettingSpec("VM_MAX_RESIDENT", "vm_max_resident", _positive_int("VMs"), "Guild VMs kept in memory"),
    SettingSpec("VM_GUILD_QUEUE", "vm_guild_queue", _positive_int("events"), "Events queued per server"),
    SettingSpec(
        "VM_DEADLINE_SECONDS",
        "vm_deadline_seconds",
        _positive_number("seconds"),
        "processpool: shortest wall time before a stuck worker is killed",
    ),
    SettingSpec(
        "VM_DEADLINE_FACTOR",
        "vm_deadline_factor",
        _positive_number("times"),
        "processpool: wall time allowed per second of CPU budget",
    ),
    SettingSpec(
        "VM_WORKER_MEMORY",
        "vm_worker_memory",
        _parse_size,
        "Address space of a worker process (or of the translation process of the thread strategies)",
    ),
    SettingSpec("VM_MAX_MEMORY", "max_memory", _parse_size, "Heap ceiling of one guild VM", limit=True),
    SettingSpec(
        "VM_CPU_MS_PER_EVENT", "cpu_ms_per_event", _positive_int("ms"), "CPU time per event, ms", limit=True
    ),
    SettingSpec(
        "VM_MAX_ACTIONS_PER_EVENT",
        "max_actions_per_event",
        _positive_int("actions"),
        "Moderation actions one event may request",
        limit=True,
    ),
    SettingSpec(
        "VM_MAX_ACTIONS_PER_WINDOW",
        "max_actions_per_window",
        _positive_int("actions"),
        "Moderation actions a server's scripts may request per action window",
        limit=True,
    ),
    SettingSpec(
        "VM_ACTION_WINDOW_SECONDS",
        "action_window_seconds",
        _positive_int("seconds"),
        "Length of the action window, in seconds",
        limit=True,
    ),
    SettingSpec(
        "VM_MAX_OUTPUT_PER_EVENT", "max_output_per_event", _parse_size, "print bytes per event", limit=True
    ),
    SettingSpec(
        "TASK_MAX_PENDING_TIMERS",
        "max_pending_timers",
        _positive_int("timers"),
        "task waits, delays and defers pending per server",
        limit=True,
    ),
    SettingSpec(
        "TASK_MAX_DELAY_SECONDS",
        "max_timer_delay_seconds",
        _positive_int("seconds"),
        "Longest task.wait or task.delay",
        limit=True,
    ),
    SettingSpec("SCRIPT_MAX_BYTES", "max_script_bytes", _parse_size, "Size of one script", limit=True),
    SettingSpec(
        "SCRIPTS_PER_GUILD", "max_scripts_per_guild", _positive_int("scripts"), "Scripts a server", limit=True
    ),
    SettingSpec("KV_MAX_KEYS", "kv_max_keys", _positive_int("keys"), "KV keys per server", limit=True),
    SettingSpec("KV_MAX_KEY_BYTES", "kv_max_key_bytes", _parse_size, "Length of one KV key", limit=True),
    SettingSpec("KV_MAX_VALUE_BYTES", "kv_max_value_bytes", _parse_size, "Size of one KV value", limit=True),
    SettingSpec("KV_MAX_TOTAL_BYTES", "kv_max_total_bytes", _parse_size, "KV bytes per server", limit=True),
)


@dataclass(frozen=True, slots=True)
class Settings:
    """Validated operator settings. Build with :func:`load_settings` or :meth:`from_env`."""

    discord_token: str | None = None
    database_path: Path = Path("data/warden.db")
    log_level: str = "INFO"
    dev_guild_id: int | None = None
    discord_api_base: str | None = None
    vm_strategy: str = "processpool"
    vm_workers: int = field(default_factory=lambda: os.cpu_count() or 1)
    vm_idle_seconds: int = 900
    vm_max_resident: int = 10_000
    vm_guild_queue: int = 100
    vm_deadline_seconds: float = 2.0
    vm_deadline_factor: float = 10.0
    vm_worker_memory: int = DEFAULT_MEMORY_BYTES
    limits: SandboxLimits = field(default_factory=SandboxLimits)

    @property
    def log_level_number(self) -> int:
        return logging.getLevelNamesMapping()[self.log_level]

    @classmethod
    def from_env(cls, environ: Mapping[str, str]) -> Settings:
        """Parse every known variable in ``environ``; unset or empty ones keep their defaults."""
        values: dict[str, Any] = {}
        limits: dict[str, Any] = {}
        for spec in SETTINGS:
            raw = environ.get(spec.env, "").strip()
            if not raw:
                continue
            try:
                parsed = spec.parse(raw)
            except ValueError as exc:
                problem, fix = exc.args if len(exc.args) == 2 else (str(exc), "see .env.example")
                raise SettingsError(spec.env, problem, fix) from None
            (limits if spec.limit else values)[spec.attr] = parsed
        try:
            values["limits"] = SandboxLimits(**limits)
        except ValueError as exc:
            raise SettingsError("VM_MAX_MEMORY", "is too small", str(exc)) from None
        return cls(**values)

    def pool_config(self) -> PoolConfig:
        """The VM pool's shape, from the VM_* settings."""
        return PoolConfig(
            strategy=self.vm_strategy,
            workers=self.vm_workers,
            idle_seconds=float(self.vm_idle_seconds),
            max_resident_vms=self.vm_max_resident,
            guild_queue_size=self.vm_guild_queue,
            worker_deadline_seconds=self.vm_deadline_seconds,
            worker_deadline_factor=self.vm_deadline_factor,
            worker_memory_bytes=self.vm_worker_memory,
        )

    def require_token(self) -> str:
        """The token, or a :class:`SettingsError` saying how to provide it."""
        if not self.discord_token:
            raise SettingsError(
                "DISCORD_TOKEN", "is not set", "copy .env.example to .env and paste your bot token there"
            )
        return self.discord_token


def load_settings(env_file: str | os.PathLike[str] | None = ".env") -> Settings:
    """Read ``env_file`` (variables already in the environment win), then validate everything."""
    if env_file is not None:
        load_dotenv(env_file, override=False)
    return Settings.from_env(os.environ)


def setting_names() -> list[str]:
    """Every environment variable Warden reads, in documentation order."""
    return [spec.env for spec in SETTINGS]
