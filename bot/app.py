"""Starting and stopping the bot: ``python -m bot run`` and ``python -m bot sync``.

Settings are validated before anything starts, so a bad value costs one line and exit status 2.
SIGINT and SIGTERM close the bot cleanly: the gateway first, then the VM workers, then the database,
and every write acknowledged before is already committed.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import signal
import sys

import discord
from discord.ext import commands

from bot.bot import WardenBot, default_intents
from bot.settings import Settings, SettingsError, load_settings
from bot.storage import Storage, StorageError, StoredScripts
from lua_runtime.pool import VmPool

log = logging.getLogger("warden")

EXIT_OK, EXIT_FAILED, EXIT_CONFIG = 0, 1, 2


def _settings(env_file: str) -> tuple[Settings, str] | None:
    try:
        settings = load_settings(env_file)
        return settings, settings.require_token()
    except SettingsError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return None


def _configure(settings: Settings) -> None:
    discord.utils.setup_logging(level=settings.log_level_number)
    if settings.discord_api_base:
        # discord.py builds every REST URL from this class attribute; proxies such as nirn-proxy
        # are meant to be used exactly this way.
        discord.http.Route.BASE = settings.discord_api_base


async def serve(settings: Settings, token: str, *, intents: discord.Intents | None = None) -> int:
    """Run the bot until it is closed or signalled; returns the process exit status."""
    try:
        storage = await Storage.open(settings.database_path, settings.limits)
    except (StorageError, OSError) as exc:
        log.error("cannot open the database %s: %s", settings.database_path, exc)
        return EXIT_FAILED
    # Each worker gets its own connection (scripts and KV) to the database.
    scripts = functools.partial(StoredScripts, settings.database_path, settings.limits)
    pool = VmPool(scripts, settings.limits, settings.pool_config())
    bot = WardenBot(settings, storage, pool, intents=intents)
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError):
            loop.add_signal_handler(signum, lambda: asyncio.ensure_future(bot.close()))
    try:
        async with bot:
            await bot.start(token)
    except discord.LoginFailure:
        log.error("Discord refused DISCORD_TOKEN: reset the token in the Developer Portal and update .env")
        return EXIT_CONFIG
    except discord.PrivilegedIntentsRequired:
        if intents is not None:
            raise
        log.warning(
            "the Message Content and Server Members intents are not enabled for this application; "
            "restarting without them (enable both in the Developer Portal, Bot page)"
        )
        intents = default_intents(privileged=False)
    else:
        return EXIT_OK
    finally:
        # The bot closes both on its way out; this covers the ways out that bypass its close().
        await pool.close()
        await storage.close()
    return await serve(settings, token, intents=intents)


def run_bot(env_file: str = ".env") -> int:
    """``python -m bot run``."""
    loaded = _settings(env_file)
    if loaded is None:
        return EXIT_CONFIG
    settings, token = loaded
    _configure(settings)
    return asyncio.run(serve(settings, token))


async def _sync(token: str) -> int:
    from cogs.scripts import ScriptCommands

    client = commands.Bot(command_prefix=commands.when_mentioned, intents=discord.Intents.none())
    await client.add_cog(ScriptCommands(client))  # type: ignore[arg-type]
    async with client:
        try:
            await client.login(token)
        except discord.LoginFailure:
            log.error(
                "Discord refused DISCORD_TOKEN: reset the token in the Developer Portal and update .env"
            )
            return EXIT_CONFIG
        synced = await client.tree.sync()
    log.info(
        "published %d slash commands globally (Discord may take up to an hour to show changes)", len(synced)
    )
    return EXIT_OK


def sync_commands(env_file: str = ".env") -> int:
    """``python -m bot sync``: publish the slash commands globally, once after each update."""
    loaded = _settings(env_file)
    if loaded is None:
        return EXIT_CONFIG
    settings, token = loaded
    _configure(settings)
    return asyncio.run(_sync(token))
