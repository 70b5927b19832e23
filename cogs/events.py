"""Gateway events in: discord.py objects become plain event tables, dispatched to the guild's VM.

Each listener builds the documented payload (``docs/scripting.md``: snowflakes as strings, times as
ISO-8601, ages in days) and hands it to :meth:`WardenBot.run_event`, which never blocks the event
loop and never raises. Raw events are used for edits, deletes, leaves and reactions so that
messages and members missing from the cache still reach scripts.
"""

from __future__ import annotations

import datetime
import logging
from typing import TYPE_CHECKING, Any

import discord
from discord.ext import commands

if TYPE_CHECKING:
    from bot.bot import WardenBot

log = logging.getLogger(__name__)

_SECONDS_PER_DAY = 86400.0


def _iso(moment: datetime.datetime | None) -> str | None:
    return moment.isoformat() if moment is not None else None


def user_table(user: discord.abc.User, now: datetime.datetime) -> dict[str, Any]:
    """The author or member table: id, names, bot flag, role ids, account age, join date."""
    roles: list[str] = []
    joined_at: str | None = None
    if isinstance(user, discord.Member):
        # The first role is @everyone, which every member has: scripts never need it.
        roles = [str(role.id) for role in user.roles[1:]]
        joined_at = _iso(user.joined_at)
    return {
        "id": str(user.id),
        "username": user.name,
        "display_name": user.display_name,
        "bot": user.bot,
        "roles": roles,
        "account_age_days": (now - user.created_at).total_seconds() / _SECONDS_PER_DAY,
        "joined_at": joined_at,
    }


def _where(channel: discord.abc.MessageableChannel | Any, channel_id: int) -> dict[str, Any]:
    """channel_id is where the message lives (a thread's own id), thread_id and parent_id say more."""
    thread = isinstance(channel, discord.Thread)
    return {
        "channel_id": str(channel_id),
        "thread_id": str(channel_id) if thread else None,
        "parent_id": str(channel.parent_id) if thread else None,
    }


def message_table(message: discord.Message, now: datetime.datetime) -> dict[str, Any]:
    """The ``message`` event payload."""
    reference = message.reference
    return {
        "id": str(message.id),
        **_where(message.channel, message.channel.id),
        "guild_id": str(message.guild.id) if message.guild else None,
        "content": message.content,
        "author": user_table(message.author, now),
        "mentions": [str(user_id) for user_id in message.raw_mentions],
        "role_mentions": [str(role_id) for role_id in message.raw_role_mentions],
        "mention_everyone": message.mention_everyone,
        "attachments": [
            {
                "id": str(attachment.id),
                "filename": attachment.filename,
                "size": attachment.size,
                "content_type": attachment.content_type,
                "url": attachment.url,
            }
            for attachment in message.attachments
        ],
        "reference_message_id": str(reference.message_id) if reference and reference.message_id else None,
        "created_at": _iso(message.created_at),
    }


def message_edit_table(event: discord.RawMessageUpdateEvent, now: datetime.datetime) -> dict[str, Any]:
    """The ``message_edit`` payload: the message as it is now, plus its old content when cached."""
    table = message_table(event.message, now)
    table.pop("created_at")
    before = event.cached_message
    table["before_content"] = before.content if before is not None else None
    table["edited_at"] = _iso(event.message.edited_at)
    return table


def message_delete_table(event: discord.RawMessageDeleteEvent, channel: Any, now: datetime.datetime) -> dict:
    """The ``message_delete`` payload: ids always, content and author when the message was cached."""
    cached = event.cached_message
    return {
        "id": str(event.message_id),
        **_where(channel, event.channel_id),
        "guild_id": str(event.guild_id) if event.guild_id else None,
        "content": cached.content if cached is not None else None,
        "author": user_table(cached.author, now) if cached is not None else None,
    }


def reaction_table(event: discord.RawReactionActionEvent, now: datetime.datetime) -> dict[str, Any]:
    """The ``reaction_add`` and ``reaction_remove`` payloads."""
    emoji = event.emoji
    return {
        "guild_id": str(event.guild_id) if event.guild_id else None,
        "channel_id": str(event.channel_id),
        "message_id": str(event.message_id),
        "user_id": str(event.user_id),
        "member": user_table(event.member, now) if event.member is not None else None,
        "emoji": {"name": emoji.name, "id": str(emoji.id) if emoji.id else None, "animated": emoji.animated},
    }


class GatewayEvents(commands.Cog):
    """Forwards the gateway events scripts can handle to the guild's VM."""

    def __init__(self, bot: WardenBot) -> None:
        self.bot = bot

    def _from_self(self, user_id: int) -> bool:
        return self.bot.user is not None and user_id == self.bot.user.id

    @commands.Cog.listener()
    async def on_message(self, message: discord.Message) -> None:
        if message.guild is None or self._from_self(message.author.id):
            return
        now = discord.utils.utcnow()
        await self.bot.run_event(message.guild.id, "message", message_table(message, now), message.author.bot)

    @commands.Cog.listener()
    async def on_raw_message_edit(self, event: discord.RawMessageUpdateEvent) -> None:
        author = event.message.author
        if event.guild_id is None or self._from_self(author.id):
            return
        # Discord also sends MESSAGE_UPDATE when it adds link embeds; only a content change is an edit.
        before = event.cached_message
        if before is not None and before.content == event.message.content:
            return
        now = discord.utils.utcnow()
        await self.bot.run_event(event.guild_id, "message_edit", message_edit_table(event, now), author.bot)

    @commands.Cog.listener()
    async def on_raw_message_delete(self, event: discord.RawMessageDeleteEvent) -> None:
        if event.guild_id is None:
            return
        cached = event.cached_message
        if cached is not None and self._from_self(cached.author.id):
            return
        channel = self.bot.get_channel(event.channel_id)
        payload = message_delete_table(event, channel, discord.utils.utcnow())
        await self.bot.run_event(
            event.guild_id, "message_delete", payload, bool(cached and cached.author.bot)
        )

    @commands.Cog.listener()
    async def on_member_join(self, member: discord.Member) -> None:
        payload = {"guild_id": str(member.guild.id), "member": user_table(member, discord.utils.utcnow())}
        await self.bot.run_event(member.guild.id, "member_join", payload, member.bot)

    @commands.Cog.listener()
    async def on_raw_member_remove(self, event: discord.RawMemberRemoveEvent) -> None:
        if self._from_self(event.user.id):
            return
        payload = {"guild_id": str(event.guild_id), "member": user_table(event.user, discord.utils.utcnow())}
        await self.bot.run_event(event.guild_id, "member_leave", payload, event.user.bot)

    @commands.Cog.listener()
    async def on_raw_reaction_add(self, event: discord.RawReactionActionEvent) -> None:
        await self._reaction("reaction_add", event)

    @commands.Cog.listener()
    async def on_raw_reaction_remove(self, event: discord.RawReactionActionEvent) -> None:
        await self._reaction("reaction_remove", event)

    async def _reaction(self, name: str, event: discord.RawReactionActionEvent) -> None:
        # The bot's own reactions come back as events: answering them could loop forever.
        if event.guild_id is None or self._from_self(event.user_id):
            return
        is_bot = bool(event.member and event.member.bot)
        await self.bot.run_event(event.guild_id, name, reaction_table(event, discord.utils.utcnow()), is_bot)


async def setup(bot: WardenBot) -> None:
    await bot.add_cog(GatewayEvents(bot))
