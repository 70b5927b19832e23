"""JSON payloads in the shapes Discord sends (``discord/types/*.py`` in discord.py has them all).

Ids are strings, timestamps ISO-8601. Two shapes differ by context and matter to discord.py: a member
inside a guild's member list or an event carries ``user``; a member attached to a message (as
``member`` or inside ``mentions``) must not.
"""

from __future__ import annotations

import datetime as dt
import re
from typing import Any

from .permissions import Intent
from .snowflakes import iso8601
from .state import (
    AttachmentRecord,
    ChannelRecord,
    DiscordState,
    GuildRecord,
    MemberRecord,
    MessageRecord,
    RoleRecord,
    UserRecord,
)

_CUSTOM_EMOJI = re.compile(r"^(?P<animated>a:)?(?P<name>[A-Za-z0-9_~]+):(?P<id>\d+)$")


def user_payload(user: UserRecord) -> dict[str, Any]:
    payload: dict[str, Any] = {
        "id": str(user.id),
        "username": user.username,
        "discriminator": "0",
        "global_name": user.global_name,
        "avatar": user.avatar,
        "public_flags": 0,
        "flags": 0,
        "banner": None,
        "accent_color": None,
        "avatar_decoration_data": None,
        "primary_guild": None,
        "collectibles": None,
    }
    if user.bot:
        payload["bot"] = True
    return payload


def member_payload(
    member: MemberRecord, *, with_user: bool = True, permissions: int | None = None
) -> dict[str, Any]:
    """A guild member; ``with_user=False`` for members attached to a message."""
    payload: dict[str, Any] = {
        "roles": [str(r) for r in member.role_ids],
        "joined_at": iso8601(member.joined_at),
        "nick": member.nick,
        "avatar": None,
        "banner": None,
        "premium_since": None,
        "deaf": False,
        "mute": False,
        "pending": member.pending,
        "flags": 0,
        "communication_disabled_until": iso8601(member.communication_disabled_until),
    }
    if with_user:
        payload["user"] = user_payload(member.user)
    if permissions is not None:
        payload["permissions"] = str(permissions)
    return payload


def role_payload(role: RoleRecord) -> dict[str, Any]:
    payload: dict[str, Any] = {
        "id": str(role.id),
        "name": role.name,
        "color": role.color,
        "colors": {"primary_color": role.color, "secondary_color": None, "tertiary_color": None},
        "hoist": role.hoist,
        "icon": None,
        "unicode_emoji": None,
        "position": role.position,
        "permissions": str(role.permissions),
        "managed": role.managed,
        "mentionable": role.mentionable,
        "flags": 0,
    }
    if role.bot_id is not None:
        payload["tags"] = {"bot_id": str(role.bot_id)}
    return payload


def channel_payload(channel: ChannelRecord, *, permissions: int | None = None) -> dict[str, Any]:
    """A guild channel or thread; ``permissions`` is added where Discord resolves them (interactions)."""
    payload: dict[str, Any] = {
        "id": str(channel.id),
        "type": int(channel.type),
        "guild_id": str(channel.guild_id),
        "name": channel.name,
        "parent_id": str(channel.parent_id) if channel.parent_id is not None else None,
        "nsfw": channel.nsfw,
        "rate_limit_per_user": 0,
        "flags": 0,
        "last_message_id": str(channel.last_message_id) if channel.last_message_id is not None else None,
    }
    if channel.is_thread:
        payload |= {
            "owner_id": str(channel.owner_id),
            "message_count": 0,
            "member_count": 1,
            "total_message_sent": 0,
            "thread_metadata": {
                "archived": channel.archived,
                "auto_archive_duration": 1440,
                "archive_timestamp": iso8601(dt.datetime.now(dt.UTC)),
                "locked": False,
            },
        }
    else:
        payload |= {
            "position": channel.position,
            "topic": channel.topic,
            "permission_overwrites": [
                {"id": str(o.id), "type": o.type, "allow": str(o.allow), "deny": str(o.deny)}
                for o in channel.overwrites
            ],
        }
    if permissions is not None:
        payload["permissions"] = str(permissions)
    return payload


def guild_payload(guild: GuildRecord) -> dict[str, Any]:
    """The guild object of ``GET /guilds/{id}`` (no members or channels)."""
    return {
        "id": str(guild.id),
        "name": guild.name,
        "icon": None,
        "icon_hash": None,
        "splash": None,
        "discovery_splash": None,
        "banner": None,
        "description": None,
        "owner_id": str(guild.owner_id),
        "region": "us-west",
        "afk_channel_id": None,
        "afk_timeout": 300,
        "verification_level": 1,
        "default_message_notifications": 1,
        "explicit_content_filter": 2,
        "roles": [role_payload(r) for r in sorted(guild.roles.values(), key=lambda r: r.position)],
        "emojis": [],
        "stickers": [],
        "features": [],
        "mfa_level": 0,
        "nsfw_level": 0,
        "application_id": None,
        "system_channel_id": None,
        "system_channel_flags": 0,
        "rules_channel_id": None,
        "public_updates_channel_id": None,
        "safety_alerts_channel_id": None,
        "vanity_url_code": None,
        "premium_tier": 0,
        "premium_subscription_count": 0,
        "preferred_locale": guild.preferred_locale,
        "max_members": 500000,
        "max_video_channel_users": 25,
        "incidents_data": None,
    }


def guild_create_payload(guild: GuildRecord, state: DiscordState, *, intents: int) -> dict[str, Any]:
    """GUILD_CREATE: the guild with channels, threads, roles and members.

    Without the members intent Discord sends only the bot's own member. ``member_count`` is the true
    count; with the intent it equals the members sent, which tells discord.py the guild is chunked.
    """
    bot_member = state.bot_member(guild)
    members = list(guild.members.values()) if intents & Intent.GUILD_MEMBERS else [bot_member]
    channels = [c for c in guild.channels.values() if not c.is_thread]
    threads = [c for c in guild.channels.values() if c.is_thread and not c.archived]
    return guild_payload(guild) | {
        "unavailable": False,
        "large": False,
        "joined_at": iso8601(bot_member.joined_at),
        "member_count": len(guild.members),
        "members": [member_payload(m) for m in members],
        "channels": [channel_payload(c) for c in sorted(channels, key=lambda c: c.position)],
        "threads": [channel_payload(c) for c in threads],
        "presences": [],
        "voice_states": [],
        "stage_instances": [],
        "guild_scheduled_events": [],
        "soundboard_sounds": [],
        "lazy": True,
    }


def attachment_payload(attachment: AttachmentRecord) -> dict[str, Any]:
    payload: dict[str, Any] = {
        "id": str(attachment.id),
        "filename": attachment.filename,
        "size": attachment.size,
        "url": attachment.url,
        "proxy_url": attachment.url,
        "content_type": attachment.content_type,
    }
    if attachment.description is not None:
        payload["description"] = attachment.description
    return payload


def emoji_payload(key: str) -> dict[str, Any]:
    """A partial emoji from a reaction key: unicode ``👍`` or custom ``name:id`` / ``a:name:id``."""
    custom = _CUSTOM_EMOJI.match(key)
    if custom is None:
        return {"id": None, "name": key}
    payload: dict[str, Any] = {"id": custom["id"], "name": custom["name"]}
    if custom["animated"]:
        payload["animated"] = True
    return payload


def message_payload(message: MessageRecord, state: DiscordState) -> dict[str, Any]:
    """A message as REST answers and MESSAGE_CREATE carries it."""
    guild = state.guilds.get(message.guild_id) if message.guild_id is not None else None
    mentions = []
    for user_id in message.mention_user_ids:
        user = state.users.get(user_id)
        if user is None:
            continue
        mention = user_payload(user)
        if guild is not None and user_id in guild.members:
            mention["member"] = member_payload(guild.members[user_id], with_user=False)
        mentions.append(mention)
    payload: dict[str, Any] = {
        "id": str(message.id),
        "type": message.type,
        "channel_id": str(message.channel_id),
        "author": user_payload(message.author),
        "content": message.content,
        "timestamp": iso8601(message.timestamp),
        "edited_timestamp": iso8601(message.edited_timestamp),
        "tts": message.tts,
        "mention_everyone": message.mention_everyone,
        "mentions": mentions,
        "mention_roles": [str(r) for r in message.mention_role_ids],
        "attachments": [attachment_payload(a) for a in message.attachments],
        "embeds": message.embeds,
        "components": message.components,
        "pinned": False,
        "flags": message.flags,
        "reactions": [
            {
                "emoji": emoji_payload(key),
                "count": len(users),
                "count_details": {"burst": 0, "normal": len(users)},
                "burst_colors": [],
                "me": state.bot_user.id in users,
                "me_burst": False,
            }
            for key, users in message.reactions.items()
            if users
        ],
    }
    if guild is not None:
        payload["guild_id"] = str(guild.id)
        author_member = guild.members.get(message.author.id)
        if author_member is not None and message.webhook_id is None:
            payload["member"] = member_payload(author_member, with_user=False)
    if message.nonce is not None:
        payload["nonce"] = message.nonce
    if message.message_reference is not None:
        payload["message_reference"] = message.message_reference
        referenced = state.messages.get(int(message.message_reference.get("message_id", 0)))
        payload["referenced_message"] = (
            message_payload(referenced, state) if referenced is not None and not referenced.deleted else None
        )
    if message.webhook_id is not None:
        payload["webhook_id"] = str(message.webhook_id)
    if message.application_id is not None:
        payload["application_id"] = str(message.application_id)
    if message.interaction_metadata is not None:
        payload["interaction_metadata"] = message.interaction_metadata
    return payload


def without_message_content(payload: dict[str, Any]) -> dict[str, Any]:
    """A message as a client without the message-content intent receives it."""
    return payload | {"content": "", "embeds": [], "attachments": [], "components": []}
