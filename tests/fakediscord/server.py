"""FakeDiscord: a local Discord stand-in for end-to-end tests of the real discord.py client.

It serves Discord's REST API and gateway on 127.0.0.1, models the guilds the test builds, and lets the
test play every other participant: members who write, edit, react, join, leave, and run slash
commands. The unchanged discord.py client is pointed at it by its two base URLs only
(``discord.http.Route.BASE`` and ``discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY``), which
:meth:`FakeDiscord.connected` sets for the duration of a test.

Typical use::

    fake = FakeDiscord()
    guild = fake.add_guild(name="Test")
    general = fake.add_channel(guild, name="general")
    alice = fake.add_member(guild, username="alice", account_age_days=30)
    await fake.start()
    async with fake.connected(bot):
        await fake.send_message(general, author=alice, content="hi")
        call = await fake.wait_for_call("POST", "/channels/{channel_id}/messages")
    fake.assert_no_violations()
    await fake.stop()
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import datetime as dt
import logging
import mimetypes
import secrets
from collections.abc import AsyncIterator, Iterable, Iterator, Mapping, Sequence
from typing import Any

import discord
import yarl
from aiohttp import web

from .compose import resolve_mentions
from .gateway import HEARTBEAT_INTERVAL_MS, Gateway, IdentifyRecord
from .http_app import API_PREFIX, RestApp, RouteSpec
from .interactions import (
    ATTACHMENT_SIZE_LIMIT,
    CallbackType,
    CommandDataBuilder,
    InteractionRecord,
    InteractionType,
    find_component,
    modal_submit_data,
)
from .payloads import attachment_payload, channel_payload, member_payload, message_payload, user_payload
from .permissions import BOT_DEFAULT, EVERYONE_DEFAULT, PRIVILEGED_INTENTS, Intent
from .recording import CallLog, Fault, Notifier, RecordedCall, Violation
from .routes_core import CoreRoutes
from .routes_interactions import InteractionRoutes
from .routes_messages import MessageRoutes, reaction_event
from .snowflakes import FakeClock
from .state import (
    AttachmentRecord,
    ChannelRecord,
    ChannelType,
    DiscordState,
    GuildRecord,
    MemberRecord,
    MessageRecord,
    PermissionOverwrite,
    RoleRecord,
    UserRecord,
)

_log = logging.getLogger(__name__)

# Application flags telling discord.py which privileged intents the app may use (the "limited"
# variants, as for a bot in fewer than 100 servers).
_INTENT_APPLICATION_FLAGS = {
    Intent.GUILD_PRESENCES: 1 << 13,
    Intent.GUILD_MEMBERS: 1 << 15,
    Intent.MESSAGE_CONTENT: 1 << 19,
}


def _fake_token(user_id: int) -> str:
    """A token shaped like Discord's: base64 of the bot's id, a timestamp part, an HMAC part."""
    head = base64.urlsafe_b64encode(str(user_id).encode()).decode().rstrip("=")
    return f"{head}.{secrets.token_urlsafe(5)}.{secrets.token_urlsafe(28)}"


class FakeDiscord:
    """A Discord stand-in: state builders, a server on 127.0.0.1, event injection and call recording."""

    def __init__(
        self,
        *,
        bot_name: str = "Warden",
        token: str | None = None,
        privileged_intents: int = PRIVILEGED_INTENTS,
        heartbeat_interval_ms: int = HEARTBEAT_INTERVAL_MS,
    ) -> None:
        """``privileged_intents`` are those the application is allowed: asking for others closes with
        4014. ``heartbeat_interval_ms`` is the interval HELLO gives clients."""
        self.clock = FakeClock()
        self.notifier = Notifier()
        self.state = DiscordState(self.clock, bot_name=bot_name)
        self.bot_user: UserRecord = self.state.bot_user
        self.application_id: int = self.bot_user.id
        self.application_owner: UserRecord = self.state.create_user("app-owner", account_age_days=2000)
        self.token = token if token is not None else _fake_token(self.bot_user.id)
        self.privileged_intents = int(privileged_intents)
        self.application_flags = sum(
            f for i, f in _INTENT_APPLICATION_FLAGS.items() if i & self.privileged_intents
        )
        self.interactions: dict[int, InteractionRecord] = {}
        self.gateway = Gateway(self, heartbeat_interval_ms)
        core, messages, interactions = CoreRoutes(self), MessageRoutes(self), InteractionRoutes(self)
        self._routes: list[RouteSpec] = [*core.specs(), *messages.specs(), *interactions.specs()]
        self.log = CallLog(
            routes=frozenset((r.method, r.template) for r in self._routes), notifier=self.notifier
        )
        self._runner: web.AppRunner | None = None
        self._port: int | None = None

    # Lifecycle ------------------------------------------------------------------------------------

    async def start(self) -> None:
        """Serve on a free port of 127.0.0.1."""
        if self._runner is not None:
            raise RuntimeError("the fake is already running")
        app = RestApp(self, self._routes, websocket=("/gateway", self.gateway.handle)).app
        self._runner = web.AppRunner(app, handle_signals=False, shutdown_timeout=1.0)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self._port = self._runner.addresses[0][1]
        _log.info("fake Discord listening on %s", self.base_url)

    async def stop(self) -> None:
        """Close gateway connections and the server."""
        if self._runner is None:
            return
        await self.gateway.close_all()
        await self._runner.cleanup()
        self._runner = None

    @property
    def base_url(self) -> str:
        if self._port is None:
            raise RuntimeError("start the fake first: its URLs name the port it listens on")
        return f"http://127.0.0.1:{self._port}"

    @property
    def api_base(self) -> str:
        """What ``discord.http.Route.BASE`` must be (a ``DISCORD_API_BASE`` setting, for the bot)."""
        return self.base_url + API_PREFIX

    @property
    def gateway_url(self) -> str:
        return self.base_url.replace("http://", "ws://", 1) + "/gateway"

    @contextlib.asynccontextmanager
    async def connected(
        self,
        client: discord.Client,
        *,
        timeout: float = 10.0,  # noqa: ASYNC109
    ) -> AsyncIterator[discord.Client]:
        """Run ``client`` against the fake until the block ends.

        Points discord.py's REST base and default gateway at the fake, logs in and connects the client
        (what ``client.start(token)`` does), and waits for ``on_ready``: every guild has arrived and is
        cached. Give the client a small ``guild_ready_timeout`` (e.g. 0.05): discord.py waits that long
        after the last GUILD_CREATE. At exit the client is closed and the URLs restored.
        """
        saved = discord.http.Route.BASE, discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY
        discord.http.Route.BASE = self.api_base
        discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY = yarl.URL(self.gateway_url)
        connection: asyncio.Task[None] | None = None
        try:
            await client.login(self.token)
            connection = asyncio.create_task(client.connect(), name="fake-discord-client")
            ready = asyncio.create_task(client.wait_until_ready())
            done, _ = await asyncio.wait(
                {connection, ready}, timeout=timeout, return_when=asyncio.FIRST_COMPLETED
            )
            if ready not in done:
                ready.cancel()
                if connection in done:
                    connection.result()
                    raise RuntimeError("the client disconnected before it was ready")
                raise TimeoutError(f"the client was not ready after {timeout} s")
            yield client
        finally:
            await client.close()
            ended = await asyncio.gather(connection, return_exceptions=True) if connection is not None else []
            discord.http.Route.BASE, discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY = saved
        # Reached only when the block succeeded: a connection that died under it must not go unnoticed.
        failures = [outcome for outcome in ended if isinstance(outcome, BaseException)]
        if failures:
            raise RuntimeError("the client's gateway connection failed during the test") from failures[0]

    # State builders (no gateway events: build before the client connects) ------------------------

    def add_guild(
        self,
        name: str = "Test Guild",
        *,
        owner_id: int | None = None,
        bot_permissions: int = BOT_DEFAULT,
        everyone_permissions: int = EVERYONE_DEFAULT,
    ) -> GuildRecord:
        """A guild the bot has joined with its managed role, and its owner as a member.

        ``owner_id`` names an existing user (e.g. ``fake.add_user(...)``); by default a new "owner"
        account is made. ``bot_permissions`` go on the bot's role, which sits above every role added
        without an explicit position.
        """
        if owner_id is None:
            owner = self.state.create_user("owner", account_age_days=1500)
        else:
            owner = self.state.user(owner_id)
        return self.state.create_guild(
            name, owner=owner, bot_permissions=bot_permissions, everyone_permissions=everyone_permissions
        )

    def add_user(self, username: str, *, account_age_days: float = 365.0, bot: bool = False) -> UserRecord:
        """An account that is not (yet) in any guild."""
        return self.state.create_user(username, account_age_days=account_age_days, bot=bot)

    def add_channel(
        self,
        guild: GuildRecord,
        name: str = "general",
        *,
        type: ChannelType = ChannelType.TEXT,
        topic: str | None = None,
        overwrites: Iterable[PermissionOverwrite] = (),
        category: ChannelRecord | None = None,
    ) -> ChannelRecord:
        return self.state.create_channel(
            guild, name, type=type, parent=category, topic=topic, overwrites=list(overwrites)
        )

    def add_thread(
        self, parent: ChannelRecord, name: str, *, owner: MemberRecord | None = None, private: bool = False
    ) -> ChannelRecord:
        """A thread under a text channel; it takes the parent's permission overwrites."""
        guild = self.state.guild(parent.guild_id)
        return self.state.create_channel(
            guild,
            name,
            type=ChannelType.PRIVATE_THREAD if private else ChannelType.PUBLIC_THREAD,
            parent=parent,
            owner_id=(owner.id if owner is not None else guild.owner_id),
        )

    def add_role(
        self,
        guild: GuildRecord,
        name: str,
        *,
        permissions: int = 0,
        position: int | None = None,
        color: int = 0,
        hoist: bool = False,
        mentionable: bool = False,
    ) -> RoleRecord:
        """A role at ``position`` (roles at or above it move up one); by default just below the bot's role.

        To put a role above the bot: ``position=guild.bot_role.position + 1``.
        """
        return self.state.create_role(
            guild,
            name,
            permissions=permissions,
            position=position,
            color=color,
            hoist=hoist,
            mentionable=mentionable,
        )

    def add_member(
        self,
        guild: GuildRecord,
        username: str = "member",
        *,
        roles: Iterable[RoleRecord] = (),
        account_age_days: float = 365.0,
        joined_at: dt.datetime | None = None,
        bot: bool = False,
        nick: str | None = None,
        user: UserRecord | None = None,
    ) -> MemberRecord:
        """A member (a new account ``account_age_days`` old, or ``user``), joined 30 days ago by default."""
        if user is None:
            user = self.state.create_user(username, account_age_days=account_age_days, bot=bot)
        joined = joined_at if joined_at is not None else self.clock.now() - dt.timedelta(days=30)
        return self.state.add_member(guild, user, role_ids=[r.id for r in roles], joined_at=joined, nick=nick)

    def add_attachment(
        self, filename: str, data: bytes, *, content_type: str | None = None, description: str | None = None
    ) -> dict[str, Any]:
        """Host ``data`` on the fake; returns the attachment dict, whose ``url`` downloads it.

        Pass it in a slash command's options (or ``attachments=``), or to :meth:`send_message`.
        """
        return attachment_payload(
            self.store_attachment(filename, data, content_type=content_type, description=description)
        )

    def store_attachment(
        self, filename: str, data: bytes, *, content_type: str | None = None, description: str | None = None
    ) -> AttachmentRecord:
        """Host a file and return its record (used for uploads by the bot too)."""
        attachment_id = self.state.snowflakes.new()
        guessed = mimetypes.guess_type(filename)[0]
        record = AttachmentRecord(
            id=attachment_id,
            filename=filename,
            data=bytes(data),
            content_type=content_type or guessed or "application/octet-stream",
            url=f"{self.base_url}/attachments/{attachment_id}/{filename}",
            description=description,
        )
        self.state.attachments[attachment_id] = record
        return record

    # Reading state --------------------------------------------------------------------------------

    def message(self, message_id: int | str) -> MessageRecord:
        """A stored message by id (deleted ones included: check ``.deleted``)."""
        return self.state.messages[int(message_id)]

    def messages_in(self, channel: ChannelRecord) -> list[MessageRecord]:
        """The live messages of a channel, oldest first."""
        return self.state.channel_messages(channel.id)

    def commands(self, guild: GuildRecord | None = None) -> list[dict[str, Any]]:
        """The application commands the bot registered, globally or for ``guild``."""
        if guild is None:
            return list(self.state.global_commands.values())
        return list(self.state.guild_commands.get(guild.id, {}).values())

    @property
    def identifies(self) -> list[IdentifyRecord]:
        """Every IDENTIFY received, in order (token, intents, shard, properties)."""
        return self.gateway.identifies

    def interaction_for_token(self, token: str) -> InteractionRecord | None:
        return next((r for r in self.interactions.values() if r.token == token), None)

    # Gateway events the test injects ------------------------------------------------------------

    async def dispatch(
        self, event: str, data: dict[str, Any], *, guild_id: int | None, message: MessageRecord | None = None
    ) -> int:
        """Send a raw dispatch to the connected sessions entitled to it; returns how many got it."""
        return await self.gateway.dispatch(event, data, guild_id=guild_id, message=message)

    async def send_message(
        self,
        channel: ChannelRecord,
        author: MemberRecord,
        content: str = "",
        *,
        embeds: Sequence[dict[str, Any]] = (),
        attachments: Sequence[Mapping[str, Any]] = (),
        reply_to: MessageRecord | None = None,
    ) -> MessageRecord:
        """``author`` posts in ``channel`` (MESSAGE_CREATE). Mentions in ``content`` are resolved."""
        guild = self.state.guild(channel.guild_id)
        self._require_member(guild, author)
        mentions = resolve_mentions(
            content,
            None,
            guild=guild,
            replied_author=reply_to.author if reply_to is not None else None,
            may_mention_everyone=True,
        )
        message = MessageRecord(
            id=self.state.snowflakes.new(),
            channel_id=channel.id,
            guild_id=guild.id,
            author=author.user,
            content=content,
            timestamp=self.clock.now(),
            type=19 if reply_to is not None else 0,
            embeds=[{"type": "rich"} | dict(e) for e in embeds],
            attachments=[self.state.attachments[int(a["id"])] for a in attachments],
            mention_user_ids=mentions.user_ids,
            mention_role_ids=mentions.role_ids,
            mention_everyone=mentions.everyone,
        )
        if reply_to is not None:
            message.message_reference = {
                "type": 0,
                "message_id": str(reply_to.id),
                "channel_id": str(reply_to.channel_id),
                "guild_id": str(guild.id),
            }
        self.state.add_message(message)
        await self.dispatch(
            "MESSAGE_CREATE", message_payload(message, self.state), guild_id=guild.id, message=message
        )
        return message

    async def edit_message(
        self,
        message: MessageRecord,
        *,
        content: str | None = None,
        embeds: Sequence[dict[str, Any]] | None = None,
    ) -> MessageRecord:
        """The author edits ``message`` (MESSAGE_UPDATE with the full message)."""
        guild = self.state.guild(message.guild_id) if message.guild_id is not None else None
        if content is not None:
            message.content = content
            mentions = resolve_mentions(
                content, None, guild=guild, replied_author=None, may_mention_everyone=True
            )
            message.mention_user_ids, message.mention_role_ids = mentions.user_ids, mentions.role_ids
            message.mention_everyone = mentions.everyone
        if embeds is not None:
            message.embeds = [{"type": "rich"} | dict(e) for e in embeds]
        message.edited_timestamp = self.clock.now()
        await self.dispatch(
            "MESSAGE_UPDATE", message_payload(message, self.state), guild_id=message.guild_id, message=message
        )
        return message

    async def delete_message(self, message: MessageRecord) -> None:
        """The author (or a moderator) deletes ``message`` (MESSAGE_DELETE)."""
        message.deleted = True
        data = {"id": str(message.id), "channel_id": str(message.channel_id)}
        if message.guild_id is not None:
            data["guild_id"] = str(message.guild_id)
        await self.dispatch("MESSAGE_DELETE", data, guild_id=message.guild_id)

    async def member_join(
        self,
        guild: GuildRecord,
        username: str = "newcomer",
        *,
        account_age_days: float = 365.0,
        bot: bool = False,
        user: UserRecord | None = None,
    ) -> MemberRecord:
        """A user joins ``guild`` now (GUILD_MEMBER_ADD)."""
        member = self.add_member(
            guild, username, account_age_days=account_age_days, bot=bot, user=user, joined_at=self.clock.now()
        )
        await self.dispatch(
            "GUILD_MEMBER_ADD", member_payload(member) | {"guild_id": str(guild.id)}, guild_id=guild.id
        )
        return member

    async def member_leave(self, member: MemberRecord) -> None:
        """``member`` leaves their guild (GUILD_MEMBER_REMOVE)."""
        guild = self.state.guild(member.guild_id)
        guild.members.pop(member.id, None)
        await self.dispatch(
            "GUILD_MEMBER_REMOVE",
            {"guild_id": str(guild.id), "user": user_payload(member.user)},
            guild_id=guild.id,
        )

    async def add_reaction(self, message: MessageRecord, member: MemberRecord, emoji: str) -> None:
        """``member`` reacts with ``emoji``, unicode or custom ``name:id`` (MESSAGE_REACTION_ADD)."""
        guild = self.state.guild(member.guild_id)
        users = message.reactions.setdefault(emoji, [])
        if member.id in users:
            raise ValueError(f"{member.user.username} already reacted with {emoji}")
        users.append(member.id)
        await self.dispatch(
            "MESSAGE_REACTION_ADD",
            reaction_event(message, guild, member.id, emoji, with_member=True),
            guild_id=guild.id,
        )

    async def remove_reaction(self, message: MessageRecord, member: MemberRecord, emoji: str) -> None:
        """``member`` takes their ``emoji`` reaction back (MESSAGE_REACTION_REMOVE)."""
        guild = self.state.guild(member.guild_id)
        users = message.reactions.get(emoji, [])
        if member.id not in users:
            raise ValueError(f"{member.user.username} has no {emoji} reaction to remove")
        users.remove(member.id)
        if not users:
            del message.reactions[emoji]
        await self.dispatch(
            "MESSAGE_REACTION_REMOVE",
            reaction_event(message, guild, member.id, emoji, with_member=False),
            guild_id=guild.id,
        )

    # Interactions the test injects --------------------------------------------------------------

    async def invoke_slash(
        self,
        guild: GuildRecord,
        member: MemberRecord,
        name: str,
        *,
        subcommand: str | None = None,
        options: Mapping[str, Any] | None = None,
        attachments: Sequence[Mapping[str, Any] | AttachmentRecord] = (),
        channel: ChannelRecord | None = None,
    ) -> InteractionRecord:
        """``member`` runs ``/name [subcommand] options...`` (INTERACTION_CREATE type 2).

        The command must have been synced by the bot. ``subcommand`` may name a group and a
        subcommand ("rules add"). Option values are typed by the synced schema (see
        :class:`CommandDataBuilder`); ``attachments`` fill attachment options left unset. Returns the
        interaction, whose response and followups can be awaited.
        """
        channel = channel or self._default_channel(guild)
        command = self._synced_command(guild, name)
        data = CommandDataBuilder(self, guild, channel).build(
            command, subcommand=subcommand, options=options or {}, attachments=attachments, focused=None
        )
        return await self._interact(InteractionType.APPLICATION_COMMAND, guild, channel, member, data)

    async def autocomplete(
        self,
        guild: GuildRecord,
        member: MemberRecord,
        name: str,
        *,
        focused: str,
        subcommand: str | None = None,
        options: Mapping[str, Any] | None = None,
        channel: ChannelRecord | None = None,
    ) -> InteractionRecord:
        """``member`` types into option ``focused`` (its text in ``options``) (INTERACTION_CREATE type 4)."""
        channel = channel or self._default_channel(guild)
        command = self._synced_command(guild, name)
        data = CommandDataBuilder(self, guild, channel).build(
            command, subcommand=subcommand, options=options or {}, attachments=(), focused=focused
        )
        return await self._interact(InteractionType.AUTOCOMPLETE, guild, channel, member, data)

    async def click_button(
        self, message: MessageRecord, member: MemberRecord, custom_id: str
    ) -> InteractionRecord:
        """``member`` clicks the button ``custom_id`` on ``message`` (INTERACTION_CREATE type 3)."""
        component = self._component(message, custom_id, kinds=(2,))
        data = {"custom_id": custom_id, "component_type": 2, "id": component.get("id", 0)}
        return await self._component_interaction(message, member, data)

    async def select_menu(
        self, message: MessageRecord, member: MemberRecord, custom_id: str, values: Sequence[str]
    ) -> InteractionRecord:
        """``member`` picks ``values`` in the select menu ``custom_id`` on ``message`` (type 3)."""
        component = self._component(message, custom_id, kinds=(3, 5, 6, 7, 8))
        if component["type"] == 3:
            offered = [o["value"] for o in component.get("options", [])]
            if not set(values) <= set(offered):
                raise ValueError(f"select {custom_id!r} offers {offered}, not {list(values)}")
        data = {"custom_id": custom_id, "component_type": component["type"], "values": list(values)}
        return await self._component_interaction(message, member, data)

    async def submit_modal(
        self, opened_by: InteractionRecord, values: Mapping[str, str], *, member: MemberRecord | None = None
    ) -> InteractionRecord:
        """Submit the modal the bot showed in answer to ``opened_by`` (INTERACTION_CREATE type 5)."""
        callback = opened_by.callback
        if callback is None or callback.type != CallbackType.MODAL:
            raise ValueError(f"interaction {opened_by.id} was not answered with a modal (got {callback})")
        data = modal_submit_data(callback.data, values)
        return await self._interact(
            InteractionType.MODAL_SUBMIT,
            opened_by.guild,
            opened_by.channel,
            member or opened_by.member,
            data,
            source_message=opened_by.source_message,
        )

    async def _component_interaction(
        self, message: MessageRecord, member: MemberRecord, data: dict[str, Any]
    ) -> InteractionRecord:
        guild = self.state.guild(member.guild_id)
        channel = self.state.channel(message.channel_id)
        return await self._interact(
            InteractionType.MESSAGE_COMPONENT, guild, channel, member, data, source_message=message
        )

    async def _interact(
        self,
        kind: InteractionType,
        guild: GuildRecord,
        channel: ChannelRecord,
        member: MemberRecord,
        data: dict[str, Any],
        *,
        source_message: MessageRecord | None = None,
    ) -> InteractionRecord:
        self._require_member(guild, member)
        now = self.clock.now()
        bot = self.state.bot_member(guild)
        permissions = guild.channel_permissions(member, channel, now)
        interaction_id = self.state.snowflakes.new()
        token = "aW50ZXJhY3Rpb246" + secrets.token_urlsafe(48)
        payload: dict[str, Any] = {
            "id": str(interaction_id),
            "application_id": str(self.application_id),
            "type": int(kind),
            "token": token,
            "version": 1,
            "guild_id": str(guild.id),
            "guild": {"id": str(guild.id), "locale": guild.preferred_locale, "features": []},
            "channel_id": str(channel.id),
            "channel": channel_payload(channel, permissions=permissions),
            "member": member_payload(member, permissions=permissions),
            "app_permissions": str(guild.channel_permissions(bot, channel, now)),
            "locale": "en-US",
            "guild_locale": guild.preferred_locale,
            "entitlements": [],
            "entitlement_sku_ids": [],
            "authorizing_integration_owners": {"0": str(guild.id)},
            "context": 0,
            "attachment_size_limit": ATTACHMENT_SIZE_LIMIT,
            "data": data,
        }
        if source_message is not None and kind == InteractionType.MESSAGE_COMPONENT:
            payload["message"] = message_payload(source_message, self.state)
        record = InteractionRecord(
            id=interaction_id,
            token=token,
            type=kind,
            guild=guild,
            channel=channel,
            member=member,
            payload=payload,
            dispatched_at=self.clock.monotonic(),
            notifier=self.notifier,
            source_message=source_message,
        )
        self.interactions[interaction_id] = record
        await self.dispatch("INTERACTION_CREATE", payload, guild_id=guild.id)
        return record

    def _synced_command(self, guild: GuildRecord, name: str) -> dict[str, Any]:
        for command in [*self.commands(guild), *self.commands()]:
            if command["name"] == name and command.get("type", 1) == 1:
                return command
        synced = sorted({c["name"] for c in [*self.commands(guild), *self.commands()]})
        raise LookupError(
            f"/{name} is not registered (synced commands: {synced}); the bot must sync its tree first"
        )

    def _default_channel(self, guild: GuildRecord) -> ChannelRecord:
        if not guild.text_channels:
            raise ValueError(f"{guild.name} has no text channel; add one or pass channel=")
        return guild.text_channels[0]

    def _component(
        self, message: MessageRecord, custom_id: str, *, kinds: tuple[int, ...]
    ) -> Mapping[str, Any]:
        component = find_component(message.components, custom_id)
        if component is None or component.get("type") not in kinds:
            raise ValueError(f"message {message.id} has no component {custom_id!r} of type {kinds}")
        if component.get("disabled"):
            raise ValueError(f"component {custom_id!r} is disabled")
        return component

    def _require_member(self, guild: GuildRecord, member: MemberRecord) -> None:
        if guild.members.get(member.id) is not member:
            raise ValueError(f"{member.user.username} is not a member of {guild.name}")

    # Recording, waiting, faults, violations ------------------------------------------------------

    def calls(
        self, method: str | None = None, route: str | None = None, **path_params: Any
    ) -> list[RecordedCall]:
        """Recorded calls, oldest first, filtered by method, route template and path parameters.

        ``fake.calls("POST", "/channels/{channel_id}/messages", channel_id=general.id)``
        """
        self.log.check_route(method, route)
        return list(self.log.matching(method, route, path_params))

    def mark(self) -> int:
        """The position in the call log now: pass it as ``since`` to wait only for later calls."""
        return len(self.log.calls)

    async def wait_for_call(
        self,
        method: str,
        route: str,
        *,
        timeout: float = 5.0,  # noqa: ASYNC109
        since: int = 0,
        count: int = 1,
        **path_params: Any,
    ) -> RecordedCall:
        """Wait for ``count`` matching calls recorded after position ``since``; return the last of them."""
        self.log.check_route(method, route)

        def probe() -> RecordedCall | None:
            found = list(self.log.matching(method, route, path_params, since))
            return found[count - 1] if len(found) >= count else None

        return await self.notifier.wait_for(
            probe, timeout, lambda: f"call #{count} to {method} {route} {path_params}"
        )

    def fail_next(
        self,
        method: str,
        route: str,
        *,
        status: int,
        times: int = 1,
        code: int | None = None,
        message: str | None = None,
        retry_after: float = 0.05,
        is_global: bool = False,
    ) -> Fault:
        """Answer the next ``times`` calls to ``method route`` with an error instead of handling them.

        403 and 404 get Discord's usual codes (50013; the 404 code of the route's last id), 429 gets
        ``retry_after`` in the body and every rate-limit header discord.py reads, so it retries.
        """
        self.log.check_route(method, route)
        fault = Fault(
            method=method.upper(),
            route=route,
            status=status,
            times=times,
            code=code,
            message=message,
            retry_after=retry_after,
            is_global=is_global,
        )
        self.log.faults.append(fault)
        return fault

    @property
    def violations(self) -> list[Violation]:
        """Calls that broke a Discord rule, not yet claimed by :meth:`expect_violations`."""
        return list(self.log.violations)

    def assert_no_violations(self) -> None:
        """Fail listing every rule the client broke (the fixture calls this at teardown)."""
        if self.log.violations:
            listing = "\n  ".join(str(v) for v in self.log.violations)
            raise AssertionError(
                f"the client broke Discord's rules {len(self.log.violations)} time(s):\n  {listing}"
            )

    @contextlib.contextmanager
    def expect_violations(self, *codes: int) -> Iterator[list[Violation]]:
        """Declare that the block makes the client break a rule; yields the violations caught.

        Fails if none happened or (given ``codes``) one had another code. Caught violations are not
        reported at teardown. Await the offending call inside the block.
        """
        start = len(self.log.violations)
        caught: list[Violation] = []
        yield caught
        caught.extend(self.log.violations[start:])
        del self.log.violations[start:]
        if not caught:
            raise AssertionError("expected the client to break a Discord rule, but it broke none")
        unexpected = [v for v in caught if codes and v.code not in codes]
        if unexpected:
            raise AssertionError(
                f"expected violations with codes {codes}, got: {[str(v) for v in unexpected]}"
            )
