"""Moderation actions out: the action tables scripts asked for, checked, then carried out.

Scripts never touch Discord. After a handler returns, its actions (plain dicts built by
``@warden/discord``) come here in order. Each one is checked before anything is sent:

1. **Capability**: ``reply``, ``send``, ``react`` and ``log`` are granted by default; deleting,
   timeouts, kicks, bans and role changes need an admin's explicit grant to that script.
2. **Guild**: the channel, role or member must belong to the guild the event came from.
3. **Hierarchy and permissions**: the bot's own permissions, and the role hierarchy Discord would
   enforce, so the admin reads "Warden needs Kick Members" rather than a raw 403.
4. **Rate**: a per-guild limit on actions, stricter for kicks and bans.

Messages go out with no pings unless the guild allows user pings; never ``@everyone``, ``@here`` or
roles. Audit-log reasons read ``Warden script <name>: <reason>``.
"""

from __future__ import annotations

import datetime
import logging
import time
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import discord

from bot.storage import GuildSettings

log = logging.getLogger(__name__)

#: The capability each action needs; ``None``: granted to every script.
CAPABILITY_FOR_ACTION: dict[str, str | None] = {
    "reply": None,
    "send": None,
    "react": None,
    "log": None,
    "delete_message": "delete",
    "timeout": "timeout",
    "kick": "kick",
    "ban": "ban",
    "add_role": "roles",
    "remove_role": "roles",
}
#: Capabilities an admin can grant, with what each allows (shown in /script grant).
GRANTABLE_CAPABILITIES: dict[str, str] = {
    "delete": "delete messages",
    "timeout": "time members out",
    "kick": "kick members",
    "ban": "ban members",
    "roles": "add and remove roles",
}

#: Per-guild action rates, as comparable bots set them: (actions, seconds).
ACTION_RATE = (20, 5.0)
REMOVAL_RATE = (5, 30.0)
_REMOVALS = frozenset({"kick", "ban"})


@dataclass(frozen=True, slots=True)
class ActionOutcome:
    """What became of one action. ``problem`` is a sentence for the guild's admins."""

    action: Mapping[str, Any]
    ok: bool
    problem: str | None = None

    @property
    def script(self) -> str:
        return str(self.action.get("script", "?"))


class ActionRefused(Exception):
    """A check failed before anything was sent; the message is for the guild's admins."""


class SlidingWindow:
    """At most ``limit`` events per ``seconds`` per key."""

    def __init__(self, limit: int, seconds: float, clock: Any = time.monotonic) -> None:
        self.limit, self.seconds, self._clock = limit, seconds, clock
        self._events: dict[int, deque[float]] = {}

    def try_acquire(self, key: int) -> bool:
        now = self._clock()
        events = self._events.setdefault(key, deque())
        while events and now - events[0] >= self.seconds:
            events.popleft()
        if len(events) >= self.limit:
            return False
        events.append(now)
        return True


def allowed_mentions(settings: GuildSettings) -> discord.AllowedMentions:
    """No pings at all, or user pings only: never everyone, here or roles."""
    if settings.mention_policy == "users":
        return discord.AllowedMentions(everyone=False, roles=False, users=True, replied_user=False)
    return discord.AllowedMentions.none()


def audit_reason(action: Mapping[str, Any]) -> str:
    reason = action.get("reason") or "no reason given"
    return f"Warden script {action.get('script', '?')}: {reason}"[:512]


class ActionExecutor:
    """Carries out checked actions for one bot. One instance per bot; state is the rate windows."""

    def __init__(self, clock: Any = time.monotonic) -> None:
        self._actions = SlidingWindow(*ACTION_RATE, clock=clock)
        self._removals = SlidingWindow(*REMOVAL_RATE, clock=clock)

    async def execute(
        self,
        guild: discord.Guild,
        actions: list[Mapping[str, Any]],
        grants: Mapping[str, frozenset[str]],
        settings: GuildSettings,
    ) -> list[ActionOutcome]:
        """Run ``actions`` in order; one failing never stops the next.

        ``grants`` maps each script's name to the capabilities an admin granted it.
        """
        outcomes = []
        for action in actions:
            try:
                self._check_capability(action, grants)
                self._check_rate(guild.id, action["type"])
                await self._perform(guild, action, settings)
            except ActionRefused as exc:
                outcomes.append(ActionOutcome(action, False, str(exc)))
            except discord.HTTPException as exc:
                outcomes.append(ActionOutcome(action, False, _explain_http_error(action, exc)))
            except (ValueError, TypeError) as exc:
                # discord.py refused to build the request (a body Discord would refuse, say): the
                # script's mistake, reported like Discord's own refusals.
                outcomes.append(ActionOutcome(action, False, f"{action.get('type')} refused: {exc}"))
            except Exception:
                # Never lose the rest of the event's actions, nor its report, to one action.
                log.exception("guild %s: carrying out a %s action failed", guild.id, action.get("type"))
                problem = f"{action.get('type')} failed inside Warden; the error is in the bot's log"
                outcomes.append(ActionOutcome(action, False, problem))
            else:
                outcomes.append(ActionOutcome(action, True))
        return outcomes

    def _check_capability(self, action: Mapping[str, Any], grants: Mapping[str, frozenset[str]]) -> None:
        kind = action.get("type")
        if kind not in CAPABILITY_FOR_ACTION:
            raise ActionRefused(f"unknown action {kind!r}")
        needed = CAPABILITY_FOR_ACTION[kind]
        script = action.get("script", "?")
        if needed is not None and needed not in grants.get(script, frozenset()):
            raise ActionRefused(
                f"{kind} needs the '{needed}' capability, which script {script} was not granted "
                f"(an admin can grant it with /script grant)"
            )

    def _check_rate(self, guild_id: int, kind: str) -> None:
        if kind in _REMOVALS and not self._removals.try_acquire(guild_id):
            limit, seconds = REMOVAL_RATE
            raise ActionRefused(
                f"{kind} skipped: at most {limit} kicks and bans per {seconds:g} s per server"
            )
        if not self._actions.try_acquire(guild_id):
            limit, seconds = ACTION_RATE
            raise ActionRefused(f"{kind} skipped: at most {limit} actions per {seconds:g} s per server")

    async def _perform(
        self, guild: discord.Guild, action: Mapping[str, Any], settings: GuildSettings
    ) -> None:
        kind = action["type"]
        if kind in ("reply", "send", "react", "delete_message"):
            channel = _channel(guild, action["channel_id"])
            await _MESSAGE_ACTIONS[kind](guild, channel, action, settings)
        elif kind == "log":
            await _log(guild, action, settings)
        else:
            member = await _member(guild, action["user_id"])
            await _MEMBER_ACTIONS[kind](guild, member, action)


def _channel(guild: discord.Guild, channel_id: str) -> Any:
    channel = guild.get_channel_or_thread(int(channel_id))
    if channel is None or not hasattr(channel, "send"):
        raise ActionRefused(f"channel {channel_id} is not a text channel of this server")
    return channel


def _require(permissions: discord.Permissions, name: str, where: str) -> None:
    if not getattr(permissions, name):
        label = name.replace("_", " ").title()
        raise ActionRefused(f"Warden needs the {label} permission {where}")


async def _member(guild: discord.Guild, user_id: str) -> discord.Member:
    member = guild.get_member(int(user_id))
    if member is None:
        try:
            member = await guild.fetch_member(int(user_id))
        except discord.NotFound:
            raise ActionRefused(f"user {user_id} is not a member of this server") from None
    return member


def _check_hierarchy(guild: discord.Guild, member: discord.Member, doing: str) -> None:
    if member.id == guild.owner_id:
        raise ActionRefused(f"cannot {doing} the server owner")
    if guild.me is not None and member.id == guild.me.id:
        raise ActionRefused(f"cannot {doing} Warden itself")
    if guild.me is not None and member.top_role >= guild.me.top_role:
        raise ActionRefused(
            f"cannot {doing} {member}: their highest role is at or above Warden's (move Warden's role higher)"
        )


async def _send_message(
    guild: discord.Guild, channel: Any, action: Mapping[str, Any], settings: GuildSettings
) -> None:
    permissions = channel.permissions_for(guild.me)
    need = "send_messages_in_threads" if isinstance(channel, discord.Thread) else "send_messages"
    _require(permissions, need, f"in #{channel}")
    embeds = [discord.Embed.from_dict(embed) for embed in action.get("embeds", [])]
    kwargs: dict[str, Any] = {
        "content": action.get("content"),
        "allowed_mentions": allowed_mentions(settings),
    }
    if embeds:
        _require(permissions, "embed_links", f"in #{channel}")
        kwargs["embeds"] = embeds
    if action["type"] == "reply":
        # Scripts often delete a message and answer it in the same breath: if the message is gone
        # by the time the reply goes out, it is sent without the reference instead of failing.
        message = channel.get_partial_message(int(action["message_id"]))
        kwargs["reference"] = message.to_reference(fail_if_not_exists=False)
    if "delete_after" in action:
        # discord.py deletes the sent message from a task of this process once the delay has passed:
        # no permission is needed for the bot's own message, and a restart before then leaves it.
        kwargs["delete_after"] = float(action["delete_after"])
    await channel.send(**kwargs)


async def _react(
    guild: discord.Guild, channel: Any, action: Mapping[str, Any], settings: GuildSettings
) -> None:
    _require(channel.permissions_for(guild.me), "add_reactions", f"in #{channel}")
    await channel.get_partial_message(int(action["message_id"])).add_reaction(action["emoji"])


async def _delete(
    guild: discord.Guild, channel: Any, action: Mapping[str, Any], settings: GuildSettings
) -> None:
    # Deleting the bot's own message needs no permission; anyone else's needs Manage Messages,
    # which Discord checks for us (a 403 is explained below). Message.delete() takes no audit
    # reason, so the route is called directly: the server's audit log then names the script.
    message = channel.get_partial_message(int(action["message_id"]))
    await message._state.http.delete_message(channel.id, message.id, reason=audit_reason(action))


async def _log(guild: discord.Guild, action: Mapping[str, Any], settings: GuildSettings) -> None:
    if settings.log_channel_id is None:
        raise ActionRefused("log: this server has no log channel (set one with /script config)")
    channel = _channel(guild, str(settings.log_channel_id))
    _require(channel.permissions_for(guild.me), "send_messages", f"in the log channel #{channel}")
    text = f"[{action.get('script', '?')}] {action['content']}"
    await channel.send(text[:2000], allowed_mentions=discord.AllowedMentions.none())


async def _timeout(guild: discord.Guild, member: discord.Member, action: Mapping[str, Any]) -> None:
    _require(guild.me.guild_permissions, "moderate_members", "in this server")
    _check_hierarchy(guild, member, "time out")
    if member.guild_permissions.administrator:
        raise ActionRefused(f"cannot time out {member}: Discord never times out administrators")
    await member.timeout(datetime.timedelta(seconds=action["seconds"]), reason=audit_reason(action))


async def _kick(guild: discord.Guild, member: discord.Member, action: Mapping[str, Any]) -> None:
    _require(guild.me.guild_permissions, "kick_members", "in this server")
    _check_hierarchy(guild, member, "kick")
    await member.kick(reason=audit_reason(action))


async def _ban(guild: discord.Guild, member: discord.Member, action: Mapping[str, Any]) -> None:
    _require(guild.me.guild_permissions, "ban_members", "in this server")
    _check_hierarchy(guild, member, "ban")
    await guild.ban(
        member, reason=audit_reason(action), delete_message_seconds=action.get("delete_message_seconds", 0)
    )


async def _change_role(guild: discord.Guild, member: discord.Member, action: Mapping[str, Any]) -> None:
    _require(guild.me.guild_permissions, "manage_roles", "in this server")
    role = guild.get_role(int(action["role_id"]))
    if role is None:
        raise ActionRefused(f"role {action['role_id']} is not a role of this server")
    if role.is_default() or role.managed:
        raise ActionRefused(
            f"role {role.name} is managed by Discord or an integration and cannot be assigned"
        )
    if guild.me is not None and role >= guild.me.top_role:
        raise ActionRefused(
            f"role {role.name} is at or above Warden's highest role (move Warden's role higher)"
        )
    _check_hierarchy(guild, member, "change the roles of")
    if action["type"] == "add_role":
        await member.add_roles(role, reason=audit_reason(action))
    else:
        await member.remove_roles(role, reason=audit_reason(action))


_MESSAGE_ACTIONS = {"reply": _send_message, "send": _send_message, "react": _react, "delete_message": _delete}
_MEMBER_ACTIONS = {
    "timeout": _timeout,
    "kick": _kick,
    "ban": _ban,
    "add_role": _change_role,
    "remove_role": _change_role,
}

_NEEDED_FOR_403 = {
    "reply": "Send Messages",
    "send": "Send Messages",
    "react": "Add Reactions (or Read Message History)",
    "delete_message": "Manage Messages",
    "log": "Send Messages in the log channel",
    "timeout": "Moderate Members, and a role above the member's",
    "kick": "Kick Members, and a role above the member's",
    "ban": "Ban Members, and a role above the member's",
    "add_role": "Manage Roles, and a role above the role and the member's",
    "remove_role": "Manage Roles, and a role above the role and the member's",
}


def _explain_http_error(action: Mapping[str, Any], exc: discord.HTTPException) -> str:
    kind = action["type"]
    if isinstance(exc, discord.Forbidden):
        return f"{kind} refused by Discord: Warden needs {_NEEDED_FOR_403[kind]}"
    if isinstance(exc, discord.NotFound):
        return f"{kind} failed: the target no longer exists (Discord: {exc.text or 'not found'})"
    if exc.status == 429:
        return f"{kind} failed: Discord is rate-limiting Warden; try again later"
    return f"{kind} failed: Discord answered {exc.status} ({exc.text or 'no detail'})"
