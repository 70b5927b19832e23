"""REST routes for login, the gateway URL, application commands, guilds, members, roles and bans.

Member moderation (timeout, roles, kick, ban) applies Discord's checks in Discord's order: the target
exists, the bot holds the permission, the bot outranks the target (and the role it hands out), and
the body is valid. Mutations are announced on the gateway (GUILD_MEMBER_UPDATE, GUILD_MEMBER_REMOVE,
GUILD_BAN_ADD) so the client's cache stays true.
"""

from __future__ import annotations

import datetime as dt
import re
from typing import TYPE_CHECKING, Any

from . import errors
from .errors import FormErrors
from .http_app import Answer, ApiRequest, RouteSpec
from .payloads import channel_payload, guild_payload, member_payload, role_payload, user_payload
from .permissions import ALL_PERMISSIONS, Permission
from .snowflakes import parse_iso8601
from .state import GuildRecord, MemberRecord
from .validation import MAX_BAN_DELETE_SECONDS, MAX_TIMEOUT_DAYS

if TYPE_CHECKING:
    from .server import FakeDiscord

_COMMAND_NAME = re.compile(r"^[-_\w]{1,32}$")
MAX_COMMAND_OPTIONS = 25
MAX_NICK = 32


class CoreRoutes:
    """Handlers for everything that is not a message or an interaction."""

    def __init__(self, fake: FakeDiscord) -> None:
        self._fake = fake
        self._state = fake.state

    def specs(self) -> list[RouteSpec]:
        # Literal segments (@me) are registered before the parameters they would otherwise match.
        return [
            RouteSpec("GET", "/users/@me", self.get_me),
            RouteSpec("GET", "/users/{user_id}", self.get_user),
            RouteSpec("GET", "/oauth2/applications/@me", self.get_application),
            RouteSpec("GET", "/gateway", self.get_gateway),
            RouteSpec("GET", "/gateway/bot", self.get_gateway_bot),
            RouteSpec("GET", "/applications/{application_id}/commands", self.get_commands),
            RouteSpec("PUT", "/applications/{application_id}/commands", self.put_commands),
            RouteSpec("POST", "/applications/{application_id}/commands", self.post_command),
            RouteSpec("DELETE", "/applications/{application_id}/commands/{command_id}", self.delete_command),
            RouteSpec("GET", "/applications/{application_id}/guilds/{guild_id}/commands", self.get_commands),
            RouteSpec("PUT", "/applications/{application_id}/guilds/{guild_id}/commands", self.put_commands),
            RouteSpec("POST", "/applications/{application_id}/guilds/{guild_id}/commands", self.post_command),
            RouteSpec(
                "DELETE",
                "/applications/{application_id}/guilds/{guild_id}/commands/{command_id}",
                self.delete_command,
            ),
            RouteSpec("GET", "/guilds/{guild_id}", self.get_guild),
            RouteSpec("GET", "/guilds/{guild_id}/channels", self.get_guild_channels),
            RouteSpec("GET", "/guilds/{guild_id}/roles", self.get_roles),
            RouteSpec("GET", "/guilds/{guild_id}/roles/{role_id}", self.get_role),
            RouteSpec("GET", "/guilds/{guild_id}/members", self.list_members),
            RouteSpec("GET", "/guilds/{guild_id}/members/{member_id}", self.get_member),
            RouteSpec("PATCH", "/guilds/{guild_id}/members/{user_id}", self.edit_member),
            RouteSpec("DELETE", "/guilds/{guild_id}/members/{user_id}", self.kick_member),
            RouteSpec("PUT", "/guilds/{guild_id}/members/{user_id}/roles/{role_id}", self.add_member_role),
            RouteSpec(
                "DELETE", "/guilds/{guild_id}/members/{user_id}/roles/{role_id}", self.remove_member_role
            ),
            RouteSpec("GET", "/guilds/{guild_id}/bans/{user_id}", self.get_ban),
            RouteSpec("PUT", "/guilds/{guild_id}/bans/{user_id}", self.ban),
            RouteSpec("DELETE", "/guilds/{guild_id}/bans/{user_id}", self.unban),
            RouteSpec("GET", "/channels/{channel_id}", self.get_channel),
        ]

    # Login and gateway ------------------------------------------------------------------------

    async def get_me(self, request: ApiRequest) -> dict[str, Any]:
        return user_payload(self._fake.bot_user) | {"verified": True, "mfa_enabled": False, "email": None}

    async def get_user(self, request: ApiRequest) -> dict[str, Any]:
        return user_payload(self._state.user(request.snowflake("user_id")))

    async def get_application(self, request: ApiRequest) -> dict[str, Any]:
        fake = self._fake
        return {
            "id": str(fake.application_id),
            "name": fake.bot_user.username,
            "icon": None,
            "description": "",
            "summary": "",
            "type": None,
            "bot_public": True,
            "bot_require_code_grant": False,
            "verify_key": "0" * 64,
            "flags": fake.application_flags,
            "owner": user_payload(fake.application_owner),
            "team": None,
            "bot": user_payload(fake.bot_user),
            "interactions_endpoint_url": None,
            "redirect_uris": [],
            "rpc_origins": [],
            "tags": [],
            "install_params": {"scopes": ["bot", "applications.commands"], "permissions": "0"},
            "integration_types_config": {"0": {}},
        }

    async def get_gateway(self, request: ApiRequest) -> dict[str, Any]:
        return {"url": self._fake.gateway_url}

    async def get_gateway_bot(self, request: ApiRequest) -> dict[str, Any]:
        return {
            "url": self._fake.gateway_url,
            "shards": 1,
            "session_start_limit": {
                "total": 1000,
                "remaining": 999,
                "reset_after": 14_400_000,
                "max_concurrency": 1,
            },
        }

    # Application commands -----------------------------------------------------------------------

    def _command_scope(self, request: ApiRequest) -> tuple[int | None, dict[int, dict[str, Any]]]:
        if request.snowflake("application_id") != self._fake.application_id:
            raise errors.missing_access()
        if "guild_id" not in request.params:
            return None, self._state.global_commands
        guild = self._state.guild(request.snowflake("guild_id"))
        return guild.id, self._state.guild_commands.setdefault(guild.id, {})

    async def get_commands(self, request: ApiRequest) -> list[dict[str, Any]]:
        _, commands = self._command_scope(request)
        return list(commands.values())

    async def put_commands(self, request: ApiRequest) -> list[dict[str, Any]]:
        """Bulk overwrite: the body becomes the whole set; commands keep their id across syncs by name."""
        guild_id, commands = self._command_scope(request)
        body = request.json
        if not isinstance(body, list):
            form = FormErrors()
            form.add((), "LIST_TYPE_CONVERT", "Only iterables may be used in a ListType")
            form.raise_if_any()
        form = FormErrors()
        for index, command in enumerate(body):
            _check_command(command, form, (index,))
        keys = [(c.get("name"), c.get("type", 1)) for c in body]
        for index, key in enumerate(keys):
            if keys.index(key) != index:
                form.add(
                    (index, "name"),
                    "APPLICATION_COMMANDS_DUPLICATE_NAME",
                    f"Application command names must be unique: {key[0]}",
                )
        form.raise_if_any()
        existing = {(c["name"], c["type"]): c for c in commands.values()}
        commands.clear()
        for command in body:
            previous = existing.get((command["name"], command.get("type", 1)))
            stored = self._store_command(command, guild_id, previous)
            commands[int(stored["id"])] = stored
        return list(commands.values())

    async def post_command(self, request: ApiRequest) -> Answer:
        """Create or overwrite one command (by name and type)."""
        guild_id, commands = self._command_scope(request)
        form = FormErrors()
        _check_command(request.json or {}, form, ())
        form.raise_if_any()
        command = request.json
        previous = next(
            (
                c
                for c in commands.values()
                if (c["name"], c["type"]) == (command["name"], command.get("type", 1))
            ),
            None,
        )
        stored = self._store_command(command, guild_id, previous)
        commands[int(stored["id"])] = stored
        return Answer(200 if previous is not None else 201, stored)

    async def delete_command(self, request: ApiRequest) -> None:
        _, commands = self._command_scope(request)
        if commands.pop(request.snowflake("command_id"), None) is None:
            raise errors.unknown("application_command")

    def _store_command(
        self, command: dict[str, Any], guild_id: int | None, previous: dict[str, Any] | None
    ) -> dict[str, Any]:
        stored = {
            "type": 1,
            "description": "",
            "options": [],
            "default_member_permissions": None,
            "nsfw": False,
            "contexts": [0, 1, 2] if guild_id is None else None,
            "integration_types": [0],
            "name_localizations": None,
            "description_localizations": None,
        } | command
        stored["id"] = previous["id"] if previous is not None else str(self._state.snowflakes.new())
        stored["application_id"] = str(self._fake.application_id)
        stored["version"] = str(self._state.snowflakes.new())
        if guild_id is not None:
            stored["guild_id"] = str(guild_id)
        return stored

    # Guilds, channels, roles --------------------------------------------------------------------

    def _guild(self, request: ApiRequest) -> GuildRecord:
        guild = self._state.guild(request.snowflake("guild_id"))
        if self._fake.bot_user.id not in guild.members:
            raise errors.missing_access()
        return guild

    async def get_guild(self, request: ApiRequest) -> dict[str, Any]:
        guild = self._guild(request)
        payload = guild_payload(guild)
        if request.query.get("with_counts") in ("true", "1"):
            payload |= {"approximate_member_count": len(guild.members), "approximate_presence_count": 0}
        return payload

    async def get_guild_channels(self, request: ApiRequest) -> list[dict[str, Any]]:
        guild = self._guild(request)
        return [channel_payload(c) for c in guild.channels.values() if not c.is_thread]

    async def get_roles(self, request: ApiRequest) -> list[dict[str, Any]]:
        return [role_payload(r) for r in self._guild(request).roles.values()]

    async def get_role(self, request: ApiRequest) -> dict[str, Any]:
        return role_payload(self._guild(request).role(request.snowflake("role_id")))

    async def get_channel(self, request: ApiRequest) -> dict[str, Any]:
        channel = self._state.channel(request.snowflake("channel_id"))
        guild = self._state.guild(channel.guild_id)
        bot = self._state.bot_member(guild)
        if not guild.channel_permissions(bot, channel, self._fake.clock.now()) & Permission.VIEW_CHANNEL:
            raise errors.missing_access()
        return channel_payload(channel)

    # Members --------------------------------------------------------------------------------------

    async def list_members(self, request: ApiRequest) -> list[dict[str, Any]]:
        guild = self._guild(request)
        limit = int(request.query.get("limit", 1))
        after = int(request.query.get("after", 0))
        members = sorted((m for m in guild.members.values() if m.id > after), key=lambda m: m.id)
        return [member_payload(m) for m in members[:limit]]

    async def get_member(self, request: ApiRequest) -> dict[str, Any]:
        guild = self._guild(request)
        return member_payload(guild.member(request.snowflake("member_id")))

    def _moderation_target(
        self, request: ApiRequest, permission: Permission
    ) -> tuple[GuildRecord, MemberRecord]:
        """The target member after Discord's checks: it exists, the bot has ``permission`` and outranks it."""
        guild = self._guild(request)
        target = guild.member(request.snowflake("user_id"))
        bot = self._state.bot_member(guild)
        if not guild.base_permissions(bot, self._fake.clock.now()) & permission:
            raise errors.missing_permissions()
        if not guild.outranks(bot, target):
            raise errors.missing_permissions()
        return guild, target

    async def edit_member(self, request: ApiRequest) -> dict[str, Any]:
        body = request.json or {}
        guild = self._guild(request)
        target = guild.member(request.snowflake("user_id"))
        now = self._fake.clock.now()
        if "communication_disabled_until" in body:
            self._moderation_target(request, Permission.MODERATE_MEMBERS)
            if guild.base_permissions(target, now) == ALL_PERMISSIONS:
                # Discord refuses to time out the owner or an administrator.
                raise errors.missing_permissions()
        if "roles" in body:
            self._moderation_target(request, Permission.MANAGE_ROLES)
        if "nick" in body:
            self._moderation_target(request, Permission.MANAGE_NICKNAMES)
        if body.get("mute") is not None or body.get("deaf") is not None or body.get("channel_id") is not None:
            raise errors.bad_request(40032, "Target user is not connected to voice.")
        form = FormErrors()
        until = self._timeout_until(body, form, now)
        roles = self._new_roles(guild, target, body, form)
        if body.get("nick") is not None and len(body["nick"]) > MAX_NICK:
            form.add(("nick",), "BASE_TYPE_MAX_LENGTH", f"Must be {MAX_NICK} or fewer in length.")
        form.raise_if_any()
        if "communication_disabled_until" in body:
            target.communication_disabled_until = until
        if roles is not None:
            target.role_ids = roles
        if "nick" in body:
            target.nick = body["nick"] or None
        await self._announce_member_update(guild, target)
        return member_payload(target)

    def _timeout_until(self, body: dict[str, Any], form: FormErrors, now: dt.datetime) -> dt.datetime | None:
        raw = body.get("communication_disabled_until")
        if raw is None:
            return None
        try:
            until = parse_iso8601(str(raw))
        except ValueError:
            form.add(
                ("communication_disabled_until",),
                "DATE_TYPE_PARSE",
                f"Could not parse {raw}. Should be ISO8601.",
            )
            return None
        if until - now > dt.timedelta(days=MAX_TIMEOUT_DAYS):
            form.add(
                ("communication_disabled_until",),
                "BASE_TYPE_BAD_TIME",
                f"Must be less than or equal to {MAX_TIMEOUT_DAYS} days in the future.",
            )
        return until

    def _new_roles(
        self, guild: GuildRecord, target: MemberRecord, body: dict[str, Any], form: FormErrors
    ) -> list[int] | None:
        if "roles" not in body:
            return None
        wanted = []
        for index, raw in enumerate(body["roles"] or []):
            role_id = int(raw) if str(raw).isdigit() else -1
            if role_id not in guild.roles or role_id == guild.id:
                form.add(("roles", index), "UNKNOWN_ROLE", f"Role {raw} does not exist.")
            else:
                wanted.append(role_id)
        bot = self._state.bot_member(guild)
        changed = set(wanted) ^ set(target.role_ids)
        if any(not guild.can_manage_role(bot, guild.roles[r]) for r in changed if r in guild.roles):
            raise errors.missing_permissions()
        return wanted

    async def kick_member(self, request: ApiRequest) -> None:
        guild, target = self._moderation_target(request, Permission.KICK_MEMBERS)
        del guild.members[target.id]
        await self._fake.dispatch(
            "GUILD_MEMBER_REMOVE",
            {"guild_id": str(guild.id), "user": user_payload(target.user)},
            guild_id=guild.id,
        )

    async def _member_role_target(self, request: ApiRequest) -> tuple[GuildRecord, MemberRecord, int]:
        guild, target = self._moderation_target(request, Permission.MANAGE_ROLES)
        role = guild.role(request.snowflake("role_id"))
        if not guild.can_manage_role(self._state.bot_member(guild), role):
            raise errors.missing_permissions()
        return guild, target, role.id

    async def add_member_role(self, request: ApiRequest) -> None:
        guild, target, role_id = await self._member_role_target(request)
        if role_id not in target.role_ids:
            target.role_ids.append(role_id)
            await self._announce_member_update(guild, target)

    async def remove_member_role(self, request: ApiRequest) -> None:
        guild, target, role_id = await self._member_role_target(request)
        if role_id in target.role_ids:
            target.role_ids.remove(role_id)
            await self._announce_member_update(guild, target)

    async def _announce_member_update(self, guild: GuildRecord, member: MemberRecord) -> None:
        await self._fake.dispatch(
            "GUILD_MEMBER_UPDATE", member_payload(member) | {"guild_id": str(guild.id)}, guild_id=guild.id
        )

    # Bans ---------------------------------------------------------------------------------------

    async def get_ban(self, request: ApiRequest) -> dict[str, Any]:
        guild = self._guild(request)
        user_id = request.snowflake("user_id")
        if user_id not in guild.bans:
            raise errors.unknown("ban")
        return {"user": user_payload(self._state.user(user_id)), "reason": guild.bans[user_id]}

    async def ban(self, request: ApiRequest) -> None:
        """Ban by user id (member or not); removes the member and their recent messages."""
        guild = self._guild(request)
        user = self._state.user(request.snowflake("user_id"))
        bot = self._state.bot_member(guild)
        now = self._fake.clock.now()
        if not guild.base_permissions(bot, now) & Permission.BAN_MEMBERS:
            raise errors.missing_permissions()
        target = guild.members.get(user.id)
        if target is not None and not guild.outranks(bot, target):
            raise errors.missing_permissions()
        raw_seconds = request.query.get(
            "delete_message_seconds", (request.json or {}).get("delete_message_seconds", 0)
        )
        seconds = int(raw_seconds) if str(raw_seconds).isdigit() else -1
        if not 0 <= seconds <= MAX_BAN_DELETE_SECONDS:
            form = FormErrors()
            form.add(
                ("delete_message_seconds",),
                "NUMBER_TYPE_MAX",
                f"int value should be less than or equal to {MAX_BAN_DELETE_SECONDS}.",
            )
            form.raise_if_any()
        if user.id in guild.bans:
            return
        guild.bans[user.id] = request.reason
        if target is not None:
            del guild.members[user.id]
            await self._fake.dispatch(
                "GUILD_MEMBER_REMOVE",
                {"guild_id": str(guild.id), "user": user_payload(user)},
                guild_id=guild.id,
            )
        await self._fake.dispatch(
            "GUILD_BAN_ADD", {"guild_id": str(guild.id), "user": user_payload(user)}, guild_id=guild.id
        )
        await self._delete_recent_messages(guild, user.id, now - dt.timedelta(seconds=seconds))

    async def _delete_recent_messages(self, guild: GuildRecord, user_id: int, since: dt.datetime) -> None:
        by_channel: dict[int, list[str]] = {}
        for message in self._state.messages.values():
            if (
                message.guild_id == guild.id
                and message.author.id == user_id
                and not message.deleted
                and message.timestamp >= since
            ):
                message.deleted = True
                by_channel.setdefault(message.channel_id, []).append(str(message.id))
        for channel_id, ids in by_channel.items():
            await self._fake.dispatch(
                "MESSAGE_DELETE_BULK",
                {"ids": ids, "channel_id": str(channel_id), "guild_id": str(guild.id)},
                guild_id=guild.id,
            )

    async def unban(self, request: ApiRequest) -> None:
        guild = self._guild(request)
        user_id = request.snowflake("user_id")
        if (
            not guild.base_permissions(self._state.bot_member(guild), self._fake.clock.now())
            & Permission.BAN_MEMBERS
        ):
            raise errors.missing_permissions()
        if user_id not in guild.bans:
            raise errors.unknown("ban")
        del guild.bans[user_id]
        await self._fake.dispatch(
            "GUILD_BAN_REMOVE",
            {"guild_id": str(guild.id), "user": user_payload(self._state.user(user_id))},
            guild_id=guild.id,
        )


def _check_command(command: Any, form: FormErrors, path: tuple[str | int, ...]) -> None:
    """Discord's checks on a command definition: name, description, option count and order."""
    if not isinstance(command, dict):
        form.add(path, "DICT_TYPE_CONVERT", "Only dictionaries may be used in a DictType")
        return
    name = command.get("name") or ""
    chat_input = command.get("type", 1) == 1
    if not _COMMAND_NAME.match(name) or (chat_input and name != name.lower()):
        form.add((*path, "name"), "APPLICATION_COMMAND_INVALID_NAME", "Command name is invalid")
    description = command.get("description") or ""
    if chat_input and not 1 <= len(description) <= 100:
        form.add((*path, "description"), "BASE_TYPE_BAD_LENGTH", "Must be between 1 and 100 in length.")
    _check_options(command.get("options") or [], form, (*path, "options"))


def _check_options(options: list[dict[str, Any]], form: FormErrors, path: tuple[str | int, ...]) -> None:
    if len(options) > MAX_COMMAND_OPTIONS:
        form.add(path, "BASE_TYPE_MAX_LENGTH", f"Must be {MAX_COMMAND_OPTIONS} or fewer in length.")
    seen_optional = False
    for index, option in enumerate(options):
        name = option.get("name") or ""
        if not _COMMAND_NAME.match(name) or name != name.lower():
            form.add((*path, index, "name"), "APPLICATION_COMMAND_INVALID_NAME", "Command name is invalid")
        if not 1 <= len(option.get("description") or "") <= 100:
            form.add(
                (*path, index, "description"), "BASE_TYPE_BAD_LENGTH", "Must be between 1 and 100 in length."
            )
        if option.get("type") in (1, 2):
            _check_options(option.get("options") or [], form, (*path, index, "options"))
            continue
        if option.get("required"):
            if seen_optional:
                form.add(
                    (*path, index),
                    "APPLICATION_COMMAND_OPTIONS_REQUIRED_INVALID",
                    "Required options must be placed before non-required options",
                )
        else:
            seen_optional = True
        if len(option.get("choices") or []) > 25:
            form.add((*path, index, "choices"), "BASE_TYPE_MAX_LENGTH", "Must be 25 or fewer in length.")
