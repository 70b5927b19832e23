"""Pytest fixtures for tests that run the real discord.py client against :class:`FakeDiscord`.

Import them into a test module (or ``conftest.py``)::

    from tests.fakediscord.fixtures import fake_discord, fake_guild  # noqa: F401

``fake_discord`` fails the test at teardown if the client broke one of Discord's rules that the test
did not claim with ``fake.expect_violations()``.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass

import discord
import pytest

from .permissions import Permission
from .server import FakeDiscord
from .state import ChannelRecord, GuildRecord, MemberRecord, RoleRecord

MODERATOR_PERMISSIONS = (
    Permission.KICK_MEMBERS
    | Permission.BAN_MEMBERS
    | Permission.MODERATE_MEMBERS
    | Permission.MANAGE_MESSAGES
)


def bot_intents() -> discord.Intents:
    """The intents Warden asks for: guilds, members, guild messages with content, reactions."""
    intents = discord.Intents.none()
    intents.guilds = True
    intents.members = True
    intents.guild_messages = True
    intents.message_content = True
    intents.guild_reactions = True
    return intents


@dataclass(frozen=True)
class GuildScene:
    """A small, realistic guild: a channel, a moderator role, and three members."""

    guild: GuildRecord
    general: ChannelRecord
    mod_role: RoleRecord
    """Below the bot's role, with kick, ban, timeout and manage-messages."""
    alice: MemberRecord
    """An ordinary member with a year-old account."""
    bob: MemberRecord
    """A member whose account is one day old."""
    moderator: MemberRecord
    """Holds ``mod_role``."""


@pytest.fixture
async def fake_discord() -> AsyncIterator[FakeDiscord]:
    """A running FakeDiscord; at teardown it stops and fails the test on unclaimed violations."""
    fake = FakeDiscord()
    await fake.start()
    try:
        yield fake
    finally:
        await fake.stop()
    fake.assert_no_violations()


@pytest.fixture
def fake_guild(fake_discord: FakeDiscord) -> GuildScene:
    """A :class:`GuildScene` in ``fake_discord``, built before any client connects."""
    fake = fake_discord
    guild = fake.add_guild(name="Warden Test Server")
    general = fake.add_channel(guild, name="general", topic="Say hi")
    mod_role = fake.add_role(guild, "Moderator", permissions=MODERATOR_PERMISSIONS, hoist=True)
    return GuildScene(
        guild=guild,
        general=general,
        mod_role=mod_role,
        alice=fake.add_member(guild, "alice", account_age_days=365),
        bob=fake.add_member(guild, "bob", account_age_days=1),
        moderator=fake.add_member(guild, "mod", roles=[mod_role], account_age_days=900),
    )
