"""``python -m bot run`` as it runs in production: ``serve()`` against the local Discord stand-in.

Only the two base URLs are pointed at loopback: REST through the ``DISCORD_API_BASE`` setting (the
operator's proxy setting), the gateway by discord.py's class attribute.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
from pathlib import Path

import discord
import pytest
import yarl

from bot.app import serve
from bot.settings import Settings
from bot.storage import Storage
from lua_runtime.limits import SandboxLimits
from tests.fakediscord import FakeDiscord

pytestmark = pytest.mark.slow

READY_TIMEOUT = 15.0


async def started(fake: FakeDiscord, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Settings:
    fake.add_guild(name="Production-like")
    await fake.start()
    monkeypatch.setattr(discord.gateway.DiscordWebSocket, "DEFAULT_GATEWAY", yarl.URL(fake.gateway_url))
    # serve() leaves REST to the setting, as in production; restore the class attribute afterwards.
    monkeypatch.setattr(discord.http.Route, "BASE", discord.http.Route.BASE)
    discord.http.Route.BASE = fake.api_base
    return Settings(
        discord_token=fake.token, database_path=tmp_path / "warden.db", discord_api_base=fake.api_base
    )


async def wait_identified(fake: FakeDiscord, count: int = 1) -> None:
    await fake.notifier.wait_for(
        lambda: True if len(fake.identifies) >= count else None,
        READY_TIMEOUT,
        lambda: f"IDENTIFY #{count}",
    )


def sigterm(fake: FakeDiscord) -> None:
    """SIGTERM to this process, which serve() catches; never sent unless its handler is in place."""
    if signal.getsignal(signal.SIGTERM) in (signal.SIG_DFL, signal.SIG_IGN, None):
        pytest.fail("serve() has not installed its SIGTERM handler")
    os.kill(os.getpid(), signal.SIGTERM)


async def test_sigterm_closes_the_bot_the_workers_and_the_database(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake = FakeDiscord()
    try:
        settings = await started(fake, tmp_path, monkeypatch)
        task = asyncio.create_task(serve(settings, fake.token))
        await wait_identified(fake)
        sigterm(fake)
        assert await asyncio.wait_for(task, READY_TIMEOUT) == 0
        # The database was closed cleanly and opens again at once.
        async with await Storage.open(settings.database_path, SandboxLimits()) as storage:
            assert await storage.list_scripts(1) == []
    finally:
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(signum)
        await fake.stop()


async def test_without_privileged_intents_the_bot_says_so_and_runs_on(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    fake = FakeDiscord(privileged_intents=0)
    try:
        settings = await started(fake, tmp_path, monkeypatch)
        with caplog.at_level(logging.WARNING):
            task = asyncio.create_task(serve(settings, fake.token))
            await wait_identified(fake, count=2)  # refused with 4014, then connected without them
            sigterm(fake)
            assert await asyncio.wait_for(task, READY_TIMEOUT) == 0
        intents = discord.Intents._from_value(fake.identifies[-1].intents)
        assert not intents.message_content and not intents.members
        warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
        assert any("Message Content and Server Members intents are not enabled" in w for w in warnings)
    finally:
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(signum)
        await fake.stop()
