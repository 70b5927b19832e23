"""REST routes for channel messages, reactions, and the attachment downloads the fake hosts.

Each write checks the bot's permissions in the channel as Discord does (VIEW_CHANNEL first, answered
"Missing Access"; then SEND_MESSAGES, MANAGE_MESSAGES for others' messages, ADD_REACTIONS, ...),
validates the body, stores the result and announces it on the gateway.
"""

from __future__ import annotations

import datetime as dt
from typing import TYPE_CHECKING, Any

from . import errors
from .compose import apply_edit, compose_new
from .errors import FormErrors
from .http_app import Answer, ApiRequest, RouteSpec
from .payloads import emoji_payload, member_payload, message_payload, user_payload
from .permissions import Permission
from .state import ChannelRecord, GuildRecord, MessageRecord
from .validation import MAX_BULK_DELETE

if TYPE_CHECKING:
    from .server import FakeDiscord

BULK_DELETE_MAX_AGE = dt.timedelta(days=14)
MAX_REACTIONS_PER_MESSAGE = 20
_MESSAGE = "/channels/{channel_id}/messages/{message_id}"
_REACTION = _MESSAGE + "/reactions/{emoji}"


class MessageRoutes:
    """Handlers for ``/channels/{channel_id}/messages...`` and ``/attachments/...``."""

    def __init__(self, fake: FakeDiscord) -> None:
        self._fake = fake
        self._state = fake.state

    def specs(self) -> list[RouteSpec]:
        return [
            RouteSpec("GET", "/channels/{channel_id}/messages", self.history),
            RouteSpec("POST", "/channels/{channel_id}/messages", self.create),
            RouteSpec("POST", "/channels/{channel_id}/messages/bulk-delete", self.bulk_delete),
            RouteSpec("POST", "/channels/{channel_id}/typing", self.typing),
            RouteSpec("GET", _MESSAGE, self.get),
            RouteSpec("PATCH", _MESSAGE, self.edit),
            RouteSpec("DELETE", _MESSAGE, self.delete),
            RouteSpec("PUT", _REACTION + "/@me", self.add_own_reaction),
            RouteSpec("DELETE", _REACTION + "/@me", self.remove_own_reaction),
            RouteSpec("DELETE", _REACTION + "/{member_id}", self.remove_reaction),
            RouteSpec("GET", _REACTION, self.reaction_users),
            RouteSpec("DELETE", _REACTION, self.clear_emoji),
            RouteSpec("DELETE", _MESSAGE + "/reactions", self.clear_reactions),
            RouteSpec(
                "GET", "/attachments/{attachment_id}/{filename}", self.download, bot_auth=False, prefix=""
            ),
        ]

    # Access -----------------------------------------------------------------------------------

    def _channel(self, request: ApiRequest, *needed: Permission) -> tuple[ChannelRecord, GuildRecord, int]:
        """The channel, its guild and the bot's permissions there, after the view and ``needed`` checks."""
        channel = self._state.channel(request.snowflake("channel_id"))
        guild = self._state.guild(channel.guild_id)
        bot = guild.members.get(self._fake.bot_user.id)
        permissions = (
            guild.channel_permissions(bot, channel, self._fake.clock.now()) if bot is not None else 0
        )
        if not permissions & Permission.VIEW_CHANNEL:
            raise errors.missing_access()
        for permission in needed:
            if not permissions & permission:
                raise errors.missing_permissions()
        return channel, guild, permissions

    def _message(self, request: ApiRequest, channel: ChannelRecord) -> MessageRecord:
        return self._state.message(channel.id, request.snowflake("message_id"))

    # Messages -----------------------------------------------------------------------------------

    async def history(self, request: ApiRequest) -> list[dict[str, Any]]:
        channel, _, _ = self._channel(request, Permission.READ_MESSAGE_HISTORY)
        limit = max(1, min(100, int(request.query.get("limit", 50))))
        messages = self._state.channel_messages(channel.id)
        if "before" in request.query:
            messages = [m for m in messages if m.id < int(request.query["before"])]
        if "after" in request.query:
            messages = [m for m in messages if m.id > int(request.query["after"])][:limit]
        newest_first = list(reversed(messages))[:limit]
        return [message_payload(m, self._state) for m in newest_first]

    async def create(self, request: ApiRequest) -> dict[str, Any]:
        send = (
            Permission.SEND_MESSAGES_IN_THREADS
            if self._state.channel(request.snowflake("channel_id")).is_thread
            else Permission.SEND_MESSAGES
        )
        channel, guild, permissions = self._channel(request, send)
        payload = dict(request.payload)
        if request.files and not permissions & Permission.ATTACH_FILES:
            raise errors.missing_permissions()
        if payload.get("message_reference") and not permissions & Permission.READ_MESSAGE_HISTORY:
            raise errors.missing_permissions()
        if not permissions & Permission.EMBED_LINKS:
            # Discord drops the embeds of a bot without Embed Links rather than refusing the message.
            payload.pop("embeds", None)
        message = compose_new(
            self._fake,
            payload=payload,
            files=request.files,
            channel_id=channel.id,
            guild=guild,
            author=self._fake.bot_user,
        )
        self._state.add_message(message)
        data = message_payload(message, self._state)
        await self._fake.dispatch("MESSAGE_CREATE", data, guild_id=guild.id, message=message)
        return data

    async def get(self, request: ApiRequest) -> dict[str, Any]:
        channel, _, _ = self._channel(request, Permission.READ_MESSAGE_HISTORY)
        return message_payload(self._message(request, channel), self._state)

    async def edit(self, request: ApiRequest) -> dict[str, Any]:
        channel, guild, permissions = self._channel(request)
        message = self._message(request, channel)
        payload = request.payload
        if message.author.id != self._fake.bot_user.id:
            if set(payload) - {"flags"}:
                raise errors.cannot_edit_others()
            if not permissions & Permission.MANAGE_MESSAGES:
                raise errors.missing_permissions()
        apply_edit(self._fake, message, payload=payload, files=request.files, guild=guild)
        data = message_payload(message, self._state)
        await self._fake.dispatch("MESSAGE_UPDATE", data, guild_id=guild.id, message=message)
        return data

    async def delete(self, request: ApiRequest) -> None:
        channel, guild, permissions = self._channel(request)
        message = self._message(request, channel)
        if message.author.id != self._fake.bot_user.id and not permissions & Permission.MANAGE_MESSAGES:
            raise errors.missing_permissions()
        message.deleted = True
        await self._fake.dispatch(
            "MESSAGE_DELETE",
            {"id": str(message.id), "channel_id": str(channel.id), "guild_id": str(guild.id)},
            guild_id=guild.id,
        )

    async def bulk_delete(self, request: ApiRequest) -> None:
        channel, guild, _ = self._channel(request, Permission.MANAGE_MESSAGES)
        ids = (request.json or {}).get("messages")
        form = FormErrors()
        if not isinstance(ids, list) or not 2 <= len(ids) <= MAX_BULK_DELETE:
            form.add(
                ("messages",), "BASE_TYPE_BAD_LENGTH", f"Must be between 2 and {MAX_BULK_DELETE} in length."
            )
        form.raise_if_any()
        if len(set(map(str, ids))) != len(ids):
            raise errors.bad_request(50035, "Duplicate messages in bulk delete")
        now = self._fake.clock.now()
        found = [self._state.messages.get(int(i)) for i in ids if str(i).isdigit()]
        live = [m for m in found if m is not None and not m.deleted and m.channel_id == channel.id]
        if any(now - m.timestamp > BULK_DELETE_MAX_AGE for m in live):
            raise errors.bad_request(50034, "You can only bulk delete messages that are under 14 days old.")
        for message in live:
            message.deleted = True
        await self._fake.dispatch(
            "MESSAGE_DELETE_BULK",
            {"ids": [str(m.id) for m in live], "channel_id": str(channel.id), "guild_id": str(guild.id)},
            guild_id=guild.id,
        )

    async def typing(self, request: ApiRequest) -> None:
        self._channel(request, Permission.SEND_MESSAGES)

    # Reactions ----------------------------------------------------------------------------------

    def _emoji(self, request: ApiRequest) -> str:
        key = request.params["emoji"]
        if not key or emoji_payload(key)["id"] is not None:
            # The fake models no custom emojis, so any custom one is unknown, as it would be to Discord.
            raise errors.DiscordError(400, 10014, "Unknown Emoji", violation=True)
        return key

    async def add_own_reaction(self, request: ApiRequest) -> None:
        channel, guild, permissions = self._channel(request, Permission.READ_MESSAGE_HISTORY)
        message = self._message(request, channel)
        key = self._emoji(request)
        users = message.reactions.get(key)
        if users is None:
            if not permissions & Permission.ADD_REACTIONS:
                raise errors.missing_permissions()
            if sum(1 for u in message.reactions.values() if u) >= MAX_REACTIONS_PER_MESSAGE:
                raise errors.bad_request(
                    30010, f"Maximum number of reactions reached ({MAX_REACTIONS_PER_MESSAGE})"
                )
        bot_id = self._fake.bot_user.id
        if users is not None and bot_id in users:
            return
        message.reactions.setdefault(key, []).append(bot_id)
        await self._fake.dispatch(
            "MESSAGE_REACTION_ADD",
            reaction_event(message, guild, self._fake.bot_user.id, key, with_member=True),
            guild_id=guild.id,
        )

    async def remove_own_reaction(self, request: ApiRequest) -> None:
        channel, guild, _ = self._channel(request, Permission.READ_MESSAGE_HISTORY)
        await self._remove(
            self._message(request, channel), guild, self._emoji(request), self._fake.bot_user.id
        )

    async def remove_reaction(self, request: ApiRequest) -> None:
        channel, guild, _ = self._channel(
            request, Permission.READ_MESSAGE_HISTORY, Permission.MANAGE_MESSAGES
        )
        message = self._message(request, channel)
        await self._remove(message, guild, self._emoji(request), request.snowflake("member_id"))

    async def _remove(self, message: MessageRecord, guild: GuildRecord, key: str, user_id: int) -> None:
        users = message.reactions.get(key, [])
        if user_id not in users:
            return
        users.remove(user_id)
        if not users:
            del message.reactions[key]
        await self._fake.dispatch(
            "MESSAGE_REACTION_REMOVE",
            reaction_event(message, guild, user_id, key, with_member=False),
            guild_id=guild.id,
        )

    async def reaction_users(self, request: ApiRequest) -> list[dict[str, Any]]:
        channel, _, _ = self._channel(request, Permission.READ_MESSAGE_HISTORY)
        message = self._message(request, channel)
        users = message.reactions.get(request.params["emoji"], [])
        limit = int(request.query.get("limit", 25))
        return [user_payload(self._state.user(u)) for u in users[:limit]]

    async def clear_emoji(self, request: ApiRequest) -> None:
        channel, guild, _ = self._channel(request, Permission.MANAGE_MESSAGES)
        message = self._message(request, channel)
        key = request.params["emoji"]
        if message.reactions.pop(key, None):
            await self._fake.dispatch(
                "MESSAGE_REACTION_REMOVE_EMOJI",
                {
                    "channel_id": str(channel.id),
                    "guild_id": str(guild.id),
                    "message_id": str(message.id),
                    "emoji": emoji_payload(key),
                },
                guild_id=guild.id,
            )

    async def clear_reactions(self, request: ApiRequest) -> None:
        channel, guild, _ = self._channel(request, Permission.MANAGE_MESSAGES)
        message = self._message(request, channel)
        message.reactions.clear()
        await self._fake.dispatch(
            "MESSAGE_REACTION_REMOVE_ALL",
            {"channel_id": str(channel.id), "guild_id": str(guild.id), "message_id": str(message.id)},
            guild_id=guild.id,
        )

    # Attachments --------------------------------------------------------------------------------

    async def download(self, request: ApiRequest) -> Answer:
        attachment = self._state.attachments.get(request.snowflake("attachment_id"))
        if attachment is None or attachment.filename != request.params["filename"]:
            raise errors.DiscordError(404, 0, "404: Not Found")
        return Answer(200, attachment.data, {"Content-Type": attachment.content_type})


def reaction_event(
    message: MessageRecord, guild: GuildRecord, user_id: int, key: str, *, with_member: bool
) -> dict[str, Any]:
    """MESSAGE_REACTION_ADD (``with_member``) or MESSAGE_REACTION_REMOVE data."""
    data: dict[str, Any] = {
        "user_id": str(user_id),
        "channel_id": str(message.channel_id),
        "message_id": str(message.id),
        "guild_id": str(guild.id),
        "emoji": emoji_payload(key),
        "burst": False,
        "type": 0,
    }
    if with_member:
        data["message_author_id"] = str(message.author.id)
        data["burst_colors"] = []
        member = guild.members.get(user_id)
        if member is not None:
            data["member"] = member_payload(member)
    return data
