"""The Discord client: gateway events to the guild VMs, their actions back to Discord.

:class:`WardenBot` owns the long-lived parts (storage, the VM pool, the action executor, the
incident reporter) and the small in-memory indexes that keep the per-event path cheap: which events
each guild's enabled scripts handle, what each script was granted, and each guild's settings. The
cogs call :meth:`WardenBot.run_event` for events and :meth:`WardenBot.scripts_changed` after a
script command. What the scripts' timers (``task.wait``, ``task.delay``) produce comes from the pool
on its own, and takes the same way to Discord and to the guild's admins as an event's result.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Coroutine, Mapping
from typing import Any

import discord
from discord.ext import commands

from bot.actions import ActionExecutor
from bot.reporting import Incident, IncidentReporter, incidents_of
from bot.settings import Settings
from bot.storage import GuildSettings, Storage
from lua_runtime.pool import EventDropped, PoolClosed, PoolError, VmPool
from lua_runtime.results import EventResult, OutputLine, ScriptError

log = logging.getLogger(__name__)

#: Cogs loaded at start, one feature each.
EXTENSIONS = ("cogs.events", "cogs.scripts")


def default_intents(privileged: bool = True) -> discord.Intents:
    """Guilds, messages, reactions; plus message content and members when the portal allows them."""
    intents = discord.Intents.default()
    intents.message_content = privileged
    intents.members = privileged
    return intents


class WardenBot(commands.Bot):
    """Warden's ``commands.Bot``: slash commands only, no pings by default."""

    def __init__(
        self,
        settings: Settings,
        storage: Storage,
        pool: VmPool,
        *,
        intents: discord.Intents | None = None,
        **options: Any,
    ) -> None:
        super().__init__(
            command_prefix=commands.when_mentioned,
            help_command=None,
            intents=intents or default_intents(),
            allowed_mentions=discord.AllowedMentions.none(),
            **options,
        )
        self.settings = settings
        self.storage = storage
        self.pool = pool
        self.executor = ActionExecutor()
        self.reporter = IncidentReporter(storage)
        self._guild_settings: dict[int, GuildSettings] = {}
        # guild -> events its enabled scripts handle; guild -> script -> granted capabilities
        self._handled: dict[int, frozenset[str]] = {}
        self._grants: dict[int, dict[str, frozenset[str]]] = {}
        pool.on_load_errors = self._load_errors
        pool.on_timer_result = self._timer_result
        self._background: set[asyncio.Task[None]] = set()

    async def setup_hook(self) -> None:
        for guild_id in await self.storage.guilds_with_scripts():
            await self._index_guild(guild_id)
        await self.pool.start()
        for extension in EXTENSIONS:
            await self.load_extension(extension)
        if self.settings.dev_guild_id is not None:
            guild = discord.Object(id=self.settings.dev_guild_id)
            self.tree.copy_global_to(guild=guild)
            synced = await self.tree.sync(guild=guild)
            log.info("synced %d slash commands to the development server %s", len(synced), guild.id)

    async def on_ready(self) -> None:
        intents = self.intents
        log.info("ready as %s in %d servers", self.user, len(self.guilds))
        if not (intents.message_content and intents.members):
            log.warning(
                "running without the Message Content and Server Members intents: message content "
                "arrives empty and member_join/member_leave never fire (enable both in the "
                "Developer Portal, Bot page, then restart)"
            )

    async def close(self) -> None:
        """Stop taking events, let the workers finish what they hold, then close the database."""
        await super().close()
        await self.pool.close()
        await self.storage.close()

    # --- the per-event path --------------------------------------------------------------------

    async def guild_settings(self, guild_id: int) -> GuildSettings:
        settings = self._guild_settings.get(guild_id)
        if settings is None:
            settings = self._guild_settings[guild_id] = await self.storage.get_guild_settings(guild_id)
        return settings

    def settings_changed(self, settings: GuildSettings) -> None:
        """Called after /script config saved new settings."""
        self._guild_settings[settings.guild_id] = settings

    async def run_event(
        self, guild_id: int, event: str, payload: Mapping[str, Any], author_is_bot: bool
    ) -> None:
        """Run ``event`` through the guild's scripts and carry out their actions. Never raises."""
        if event not in self._handled.get(guild_id, ()):
            return
        try:
            settings = await self.guild_settings(guild_id)
            if author_is_bot and not settings.allow_bot_authors:
                return
            guild = self.get_guild(guild_id)
            try:
                result = await self.pool.dispatch(guild_id, event, payload)
            except (EventDropped, PoolClosed):
                return  # counted and logged by the pool: one report per drop would flood the log
            except Exception as exc:
                if isinstance(exc, PoolError):
                    # A crashed worker or a failed VM: the pool logged the cause once, with its
                    # traceback; each event it cost gets one line here, and a report to its guild.
                    log.warning("guild %s: the %s event was not run: %s", guild_id, event, exc)
                else:
                    log.exception("guild %s: dispatching %s failed", guild_id, event)
                incident = Incident("(all scripts)", "internal", f"the {event} event was not run: {exc}")
                await self.reporter.record(guild, guild_id, settings, None, [incident])
                return
            await self._carry_out(guild, guild_id, settings, result)
        except Exception:
            log.exception("guild %s: handling %s failed", guild_id, event)

    async def _carry_out(
        self, guild: discord.Guild | None, guild_id: int, settings: GuildSettings, result: EventResult
    ) -> None:
        """Execute ``result``'s actions (each checked against its script's grants), then log its
        output and report its errors and failed actions."""
        outcomes = []
        if result.actions and guild is not None:
            grants = self._grants.get(guild_id, {})
            outcomes = await self.executor.execute(guild, result.actions, grants, settings)
        incidents = incidents_of(result, outcomes)
        if incidents or result.output:
            await self.reporter.record(guild, guild_id, settings, result, incidents)

    def _in_background(self, work: Coroutine[Any, Any, None]) -> None:
        """Run ``work`` as a task of its own, kept referenced until it ends (the pool's callbacks
        run on the event loop but cannot await)."""
        task = self.loop.create_task(work)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    def _timer_result(self, guild_id: int, result: EventResult) -> None:
        """The guild's timers ran and produced something: carry it out as an event's result."""
        self._in_background(self._run_timer_result(guild_id, result))

    async def _run_timer_result(self, guild_id: int, result: EventResult) -> None:
        try:
            settings = await self.guild_settings(guild_id)
            await self._carry_out(self.get_guild(guild_id), guild_id, settings, result)
        except Exception:
            log.exception("guild %s: carrying out its timers' result failed", guild_id)

    def _load_errors(self, guild_id: int, errors: list[ScriptError], output: list[OutputLine]) -> None:
        """A guild VM built for an event had scripts that failed to load: tell the guild."""
        incidents = [Incident(e.script, e.kind, e.message, e.line) for e in errors]
        result = EventResult("load", output=list(output))
        self._in_background(self._report_load_errors(guild_id, result, incidents))

    async def _report_load_errors(
        self, guild_id: int, result: EventResult, incidents: list[Incident]
    ) -> None:
        settings = await self.guild_settings(guild_id)
        await self.reporter.record(self.get_guild(guild_id), guild_id, settings, result, incidents)

    # --- keeping the indexes true ---------------------------------------------------------------

    async def _index_guild(self, guild_id: int) -> None:
        scripts = await self.storage.enabled_scripts(guild_id)
        self._handled[guild_id] = frozenset(event for script in scripts for event in script.events)
        self._grants[guild_id] = {script.name: frozenset(script.capabilities) for script in scripts}

    async def scripts_changed(self, guild_id: int) -> None:
        """Called after any change to a guild's scripts: refresh the indexes and swap its VM."""
        await self._index_guild(guild_id)
        await self.pool.reload(guild_id)
