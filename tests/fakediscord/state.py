"""The fake's model of Discord: users, guilds, roles, channels, members, messages, attachments.

Plain dataclasses that REST handlers mutate and payload builders serialize. The permission and
role-hierarchy rules that Discord applies to a bot's calls live here too, next to the data they read.
Lookups of ids that do not exist raise the matching 404 :class:`~.errors.DiscordError`, so REST
handlers can call them directly.
"""

from __future__ import annotations

import datetime as dt
import enum
from dataclasses import dataclass, field
from typing import Any

from . import errors
from .permissions import ALL_PERMISSIONS, TIMED_OUT_ALLOWED, Permission
from .snowflakes import FakeClock, SnowflakeFactory, snowflake_time


class ChannelType(enum.IntEnum):
    """The channel types the fake models."""

    TEXT = 0
    CATEGORY = 4
    ANNOUNCEMENT = 5
    PUBLIC_THREAD = 11
    PRIVATE_THREAD = 12


THREAD_TYPES = frozenset({ChannelType.PUBLIC_THREAD, ChannelType.PRIVATE_THREAD})


@dataclass
class UserRecord:
    """A Discord account. Its id is minted at its creation time, which gives its account age."""

    id: int
    username: str
    global_name: str | None = None
    bot: bool = False
    avatar: str | None = None

    @property
    def created_at(self) -> dt.datetime:
        return snowflake_time(self.id)

    @property
    def mention(self) -> str:
        return f"<@{self.id}>"


@dataclass
class RoleRecord:
    """A guild role. The @everyone role has the guild's id and position 0."""

    id: int
    guild_id: int
    name: str
    permissions: int
    position: int
    color: int = 0
    hoist: bool = False
    mentionable: bool = False
    managed: bool = False
    bot_id: int | None = None
    """Set on the role Discord creates for a bot when it joins; such a role is ``managed``."""

    @property
    def is_everyone(self) -> bool:
        return self.id == self.guild_id

    @property
    def mention(self) -> str:
        return f"<@&{self.id}>"


@dataclass
class PermissionOverwrite:
    """A channel's allow/deny pair for one role (``type`` 0) or one member (``type`` 1)."""

    id: int
    type: int
    allow: int = 0
    deny: int = 0


@dataclass
class ChannelRecord:
    """A guild channel or thread."""

    id: int
    guild_id: int
    name: str
    type: ChannelType
    position: int = 0
    parent_id: int | None = None
    topic: str | None = None
    nsfw: bool = False
    overwrites: list[PermissionOverwrite] = field(default_factory=list)
    last_message_id: int | None = None
    owner_id: int | None = None
    """The creator of a thread."""
    archived: bool = False

    @property
    def is_thread(self) -> bool:
        return self.type in THREAD_TYPES

    @property
    def mention(self) -> str:
        return f"<#{self.id}>"


@dataclass
class MemberRecord:
    """A user's membership of one guild."""

    guild_id: int
    user: UserRecord
    role_ids: list[int]
    joined_at: dt.datetime
    nick: str | None = None
    communication_disabled_until: dt.datetime | None = None
    pending: bool = False

    @property
    def id(self) -> int:
        return self.user.id

    @property
    def mention(self) -> str:
        return self.user.mention

    def is_timed_out(self, now: dt.datetime) -> bool:
        until = self.communication_disabled_until
        return until is not None and until > now


@dataclass
class AttachmentRecord:
    """A file Discord hosts, served by the fake at ``url``."""

    id: int
    filename: str
    data: bytes
    content_type: str
    url: str
    description: str | None = None

    @property
    def size(self) -> int:
        return len(self.data)


@dataclass
class MessageRecord:
    """A message in a channel, as the fake stores it."""

    id: int
    channel_id: int
    guild_id: int | None
    author: UserRecord
    content: str
    timestamp: dt.datetime
    edited_timestamp: dt.datetime | None = None
    type: int = 0
    flags: int = 0
    tts: bool = False
    embeds: list[dict[str, Any]] = field(default_factory=list)
    attachments: list[AttachmentRecord] = field(default_factory=list)
    components: list[dict[str, Any]] = field(default_factory=list)
    message_reference: dict[str, Any] | None = None
    mention_user_ids: list[int] = field(default_factory=list)
    mention_role_ids: list[int] = field(default_factory=list)
    mention_everyone: bool = False
    reactions: dict[str, list[int]] = field(default_factory=dict)
    """Emoji key (a unicode emoji or ``name:id``) to the ids of the users who reacted, in order."""
    webhook_id: int | None = None
    application_id: int | None = None
    interaction_metadata: dict[str, Any] | None = None
    nonce: str | None = None
    deleted: bool = False

    EPHEMERAL = 1 << 6
    LOADING = 1 << 7

    @property
    def ephemeral(self) -> bool:
        return bool(self.flags & self.EPHEMERAL)

    @property
    def loading(self) -> bool:
        """A deferred interaction response still "thinking"."""
        return bool(self.flags & self.LOADING)


@dataclass
class GuildRecord:
    """A guild and everything in it that the fake models."""

    id: int
    name: str
    owner_id: int
    roles: dict[int, RoleRecord] = field(default_factory=dict)
    channels: dict[int, ChannelRecord] = field(default_factory=dict)
    members: dict[int, MemberRecord] = field(default_factory=dict)
    bans: dict[int, str | None] = field(default_factory=dict)
    """Banned user id to the audit-log reason given."""
    bot_role_id: int = 0
    preferred_locale: str = "en-US"

    # Lookups raising Discord's 404s -------------------------------------------------------------

    def member(self, user_id: int) -> MemberRecord:
        try:
            return self.members[user_id]
        except KeyError:
            raise errors.unknown("member") from None

    def role(self, role_id: int) -> RoleRecord:
        try:
            return self.roles[role_id]
        except KeyError:
            raise errors.unknown("role") from None

    @property
    def everyone_role(self) -> RoleRecord:
        return self.roles[self.id]

    @property
    def bot_role(self) -> RoleRecord:
        """The managed role Discord gave the bot when it joined."""
        return self.roles[self.bot_role_id]

    @property
    def text_channels(self) -> list[ChannelRecord]:
        return sorted(
            (c for c in self.channels.values() if c.type == ChannelType.TEXT), key=lambda c: c.position
        )

    # Role hierarchy and permissions, as Discord computes them -----------------------------------

    def top_role(self, member: MemberRecord) -> RoleRecord:
        """The member's highest role (ties, which Discord avoids, go to the lower id)."""
        candidates = [self.roles[r] for r in member.role_ids if r in self.roles] + [self.everyone_role]
        return max(candidates, key=lambda role: (role.position, -role.id))

    def outranks(self, actor: MemberRecord, target: MemberRecord) -> bool:
        """Whether ``actor`` may moderate ``target``: owner, or a strictly higher top role."""
        if target.id == self.owner_id:
            return False
        if actor.id == self.owner_id:
            return True
        return self.top_role(actor).position > self.top_role(target).position

    def can_manage_role(self, actor: MemberRecord, role: RoleRecord) -> bool:
        """Whether ``actor`` may give or take ``role``: it must sit below the actor's top role."""
        if role.managed or role.is_everyone:
            return False
        if actor.id == self.owner_id:
            return True
        return role.position < self.top_role(actor).position

    def base_permissions(self, member: MemberRecord, now: dt.datetime) -> int:
        """Guild-wide permissions: @everyone plus every role, all of them for owner and admins."""
        if member.id == self.owner_id:
            return ALL_PERMISSIONS
        permissions = self.everyone_role.permissions
        for role_id in member.role_ids:
            if role_id in self.roles:
                permissions |= self.roles[role_id].permissions
        if permissions & Permission.ADMINISTRATOR:
            return ALL_PERMISSIONS
        if member.is_timed_out(now):
            permissions &= TIMED_OUT_ALLOWED
        return permissions

    def channel_permissions(self, member: MemberRecord, channel: ChannelRecord, now: dt.datetime) -> int:
        """Permissions in one channel: base permissions with the channel's overwrites applied.

        Threads take their parent's overwrites. A member who cannot view a channel has no
        permission in it at all.
        """
        base = self.base_permissions(member, now)
        if base == ALL_PERMISSIONS:
            return ALL_PERMISSIONS
        source = self.channels.get(channel.parent_id, channel) if channel.is_thread else channel
        by_target = {(o.type, o.id): o for o in source.overwrites}
        permissions = base
        everyone = by_target.get((0, self.id))
        if everyone is not None:
            permissions = (permissions & ~everyone.deny) | everyone.allow
        allow = deny = 0
        for role_id in member.role_ids:
            overwrite = by_target.get((0, role_id))
            if overwrite is not None:
                allow |= overwrite.allow
                deny |= overwrite.deny
        permissions = (permissions & ~deny) | allow
        personal = by_target.get((1, member.id))
        if personal is not None:
            permissions = (permissions & ~personal.deny) | personal.allow
        if member.is_timed_out(now):
            permissions &= TIMED_OUT_ALLOWED
        if not permissions & Permission.VIEW_CHANNEL:
            return 0
        return permissions


class DiscordState:
    """Everything the fake knows, indexed by id, with builders that keep the indexes consistent."""

    def __init__(self, clock: FakeClock, *, bot_name: str) -> None:
        self.clock = clock
        self.snowflakes = SnowflakeFactory(clock)
        self.users: dict[int, UserRecord] = {}
        self.guilds: dict[int, GuildRecord] = {}
        self.channels: dict[int, ChannelRecord] = {}
        self.messages: dict[int, MessageRecord] = {}
        self.attachments: dict[int, AttachmentRecord] = {}
        self.global_commands: dict[int, dict[str, Any]] = {}
        self.guild_commands: dict[int, dict[int, dict[str, Any]]] = {}
        self.bot_user = self.create_user(bot_name, bot=True, account_age_days=200)

    # Lookups raising Discord's 404s -------------------------------------------------------------

    def guild(self, guild_id: int) -> GuildRecord:
        try:
            return self.guilds[guild_id]
        except KeyError:
            raise errors.unknown("guild") from None

    def channel(self, channel_id: int) -> ChannelRecord:
        try:
            return self.channels[channel_id]
        except KeyError:
            raise errors.unknown("channel") from None

    def user(self, user_id: int) -> UserRecord:
        try:
            return self.users[user_id]
        except KeyError:
            raise errors.unknown("user") from None

    def message(self, channel_id: int, message_id: int) -> MessageRecord:
        found = self.messages.get(message_id)
        if found is None or found.deleted or found.channel_id != channel_id:
            raise errors.unknown("message")
        return found

    def bot_member(self, guild: GuildRecord) -> MemberRecord:
        return guild.members[self.bot_user.id]

    def channel_messages(self, channel_id: int) -> list[MessageRecord]:
        """Live messages of a channel, oldest first."""
        found = (m for m in self.messages.values() if m.channel_id == channel_id and not m.deleted)
        return sorted(found, key=lambda m: m.id)

    # Builders -----------------------------------------------------------------------------------

    def create_user(
        self,
        username: str,
        *,
        bot: bool = False,
        account_age_days: float = 365.0,
        global_name: str | None = None,
    ) -> UserRecord:
        """A new account whose id dates it ``account_age_days`` ago."""
        created = self.clock.now() - dt.timedelta(days=account_age_days)
        user = UserRecord(
            id=self.snowflakes.new(created), username=username, global_name=global_name or username, bot=bot
        )
        self.users[user.id] = user
        return user

    def create_guild(
        self, name: str, *, owner: UserRecord, bot_permissions: int, everyone_permissions: int
    ) -> GuildRecord:
        """A guild with its @everyone role, its owner, and the bot joined with its managed role."""
        created = self.clock.now() - dt.timedelta(days=400)
        guild_id = self.snowflakes.new(created)
        guild = GuildRecord(id=guild_id, name=name, owner_id=owner.id)
        guild.roles[guild_id] = RoleRecord(
            id=guild_id, guild_id=guild_id, name="@everyone", permissions=everyone_permissions, position=0
        )
        bot_role = RoleRecord(
            id=self.snowflakes.new(),
            guild_id=guild_id,
            name=self.bot_user.username,
            permissions=bot_permissions,
            position=1,
            managed=True,
            bot_id=self.bot_user.id,
        )
        guild.roles[bot_role.id] = bot_role
        guild.bot_role_id = bot_role.id
        self.guilds[guild_id] = guild
        joined = self.clock.now() - dt.timedelta(days=30)
        self.add_member(guild, owner, role_ids=[], joined_at=created)
        self.add_member(guild, self.bot_user, role_ids=[bot_role.id], joined_at=joined)
        return guild

    def add_member(
        self,
        guild: GuildRecord,
        user: UserRecord,
        *,
        role_ids: list[int],
        joined_at: dt.datetime,
        nick: str | None = None,
    ) -> MemberRecord:
        if user.id in guild.members:
            raise ValueError(f"{user.username} is already a member of {guild.name}")
        for role_id in role_ids:
            guild.role(role_id)
        member = MemberRecord(
            guild_id=guild.id, user=user, role_ids=list(role_ids), joined_at=joined_at, nick=nick
        )
        guild.members[user.id] = member
        return member

    def create_role(
        self,
        guild: GuildRecord,
        name: str,
        *,
        permissions: int,
        position: int | None,
        color: int = 0,
        hoist: bool = False,
        mentionable: bool = False,
    ) -> RoleRecord:
        """A role inserted at ``position`` (default: just below the bot's role), shifting the ones above."""
        if position is None:
            position = guild.bot_role.position
        if position < 1:
            raise ValueError("position 0 belongs to @everyone; roles start at 1")
        for role in guild.roles.values():
            if not role.is_everyone and role.position >= position:
                role.position += 1
        role = RoleRecord(
            id=self.snowflakes.new(),
            guild_id=guild.id,
            name=name,
            permissions=int(permissions),
            position=position,
            color=color,
            hoist=hoist,
            mentionable=mentionable,
        )
        guild.roles[role.id] = role
        return role

    def create_channel(
        self,
        guild: GuildRecord,
        name: str,
        *,
        type: ChannelType,
        parent: ChannelRecord | None = None,
        topic: str | None = None,
        overwrites: list[PermissionOverwrite] | None = None,
        owner_id: int | None = None,
    ) -> ChannelRecord:
        channel = ChannelRecord(
            id=self.snowflakes.new(),
            guild_id=guild.id,
            name=name,
            type=type,
            position=sum(1 for c in guild.channels.values() if not c.is_thread),
            parent_id=parent.id if parent is not None else None,
            topic=topic,
            overwrites=list(overwrites or []),
            owner_id=owner_id,
        )
        guild.channels[channel.id] = channel
        self.channels[channel.id] = channel
        return channel

    def add_message(self, message: MessageRecord) -> MessageRecord:
        self.messages[message.id] = message
        channel = self.channels.get(message.channel_id)
        if channel is not None and not message.ephemeral:
            channel.last_message_id = message.id
        return message
