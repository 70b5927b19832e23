"""Interactions: what the fake sends as INTERACTION_CREATE, and how it tracks the bot's answers.

An :class:`InteractionRecord` is both the fake's server-side state for one interaction (its token,
its deadlines, whether it was acknowledged) and the test's handle on it: ``await
record.wait_response()``, ``await record.wait_followup()``. Slash command payloads are built from the
commands the bot synced, so options get their real types and the test cannot invoke a command the
bot never registered.
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from .payloads import attachment_payload, channel_payload, member_payload, role_payload, user_payload
from .recording import Notifier
from .state import (
    AttachmentRecord,
    ChannelRecord,
    GuildRecord,
    MemberRecord,
    MessageRecord,
    RoleRecord,
    UserRecord,
)
from .validation import text_inputs

if TYPE_CHECKING:
    from .server import FakeDiscord

ACK_WINDOW_SECONDS = 3.0
"""The first response must reach Discord within 3 s of the interaction."""
TOKEN_LIFETIME_SECONDS = 15 * 60.0
"""Followups and edits of the original response are accepted for 15 minutes."""
ATTACHMENT_SIZE_LIMIT = 10 * 1024 * 1024


class InteractionType(enum.IntEnum):
    PING = 1
    APPLICATION_COMMAND = 2
    MESSAGE_COMPONENT = 3
    AUTOCOMPLETE = 4
    MODAL_SUBMIT = 5


class CallbackType(enum.IntEnum):
    PONG = 1
    CHANNEL_MESSAGE = 4
    DEFERRED_CHANNEL_MESSAGE = 5
    DEFERRED_UPDATE_MESSAGE = 6
    UPDATE_MESSAGE = 7
    AUTOCOMPLETE_RESULT = 8
    MODAL = 9


ALLOWED_CALLBACKS: dict[InteractionType, frozenset[int]] = {
    InteractionType.APPLICATION_COMMAND: frozenset({4, 5, 9}),
    InteractionType.MESSAGE_COMPONENT: frozenset({4, 5, 6, 7, 9}),
    InteractionType.AUTOCOMPLETE: frozenset({8}),
    InteractionType.MODAL_SUBMIT: frozenset({4, 5, 6, 7}),
}
"""Which response types Discord accepts for each interaction type."""


class OptionType(enum.IntEnum):
    SUB_COMMAND = 1
    SUB_COMMAND_GROUP = 2
    STRING = 3
    INTEGER = 4
    BOOLEAN = 5
    USER = 6
    CHANNEL = 7
    ROLE = 8
    MENTIONABLE = 9
    NUMBER = 10
    ATTACHMENT = 11


@dataclass(frozen=True)
class InteractionCallback:
    """The bot's first response to an interaction."""

    type: CallbackType
    data: Mapping[str, Any]

    @property
    def ephemeral(self) -> bool:
        return bool(int(self.data.get("flags") or 0) & MessageRecord.EPHEMERAL)

    @property
    def deferred(self) -> bool:
        return self.type in (CallbackType.DEFERRED_CHANNEL_MESSAGE, CallbackType.DEFERRED_UPDATE_MESSAGE)

    @property
    def content(self) -> str | None:
        return self.data.get("content")

    @property
    def embeds(self) -> list[dict[str, Any]]:
        return list(self.data.get("embeds") or [])

    @property
    def choices(self) -> list[dict[str, Any]]:
        """Autocomplete choices (type 8)."""
        return list(self.data.get("choices") or [])

    @property
    def modal(self) -> Mapping[str, Any] | None:
        """The modal shown (type 9)."""
        return self.data if self.type == CallbackType.MODAL else None


@dataclass(eq=False)
class InteractionRecord:
    """One interaction the fake dispatched, and everything the bot answered to it."""

    id: int
    token: str
    type: InteractionType
    guild: GuildRecord
    channel: ChannelRecord
    member: MemberRecord
    payload: dict[str, Any]
    """The INTERACTION_CREATE payload as dispatched."""
    dispatched_at: float
    notifier: Notifier
    source_message: MessageRecord | None = None
    """The message whose component was used (component interactions, and modals opened from one)."""
    callback: InteractionCallback | None = None
    original: MessageRecord | None = None
    """The original response message (for an update response, the component's message)."""
    followups: list[MessageRecord] = field(default_factory=list)
    original_edits: int = 0
    """How many times the original response was edited through the webhook."""

    @property
    def acknowledged(self) -> bool:
        return self.callback is not None

    async def wait_until(
        self,
        probe: Callable[[InteractionRecord], Any],
        *,
        timeout: float,  # noqa: ASYNC109
        what: str,
    ) -> Any:
        """Wait until ``probe(self)`` is not None and return it."""
        return await self.notifier.wait_for(
            lambda: probe(self), timeout, lambda: f"{what} of interaction {self.id}"
        )

    async def wait_response(self, timeout: float = 5.0) -> InteractionCallback:  # noqa: ASYNC109
        """The bot's first response (callback) to this interaction."""
        return await self.wait_until(lambda r: r.callback, timeout=timeout, what="the response")

    async def wait_followup(self, index: int = 0, timeout: float = 5.0) -> MessageRecord:  # noqa: ASYNC109
        """The ``index``-th followup message (0 = the first)."""

        def probe(record: InteractionRecord) -> MessageRecord | None:
            return record.followups[index] if len(record.followups) > index else None

        return await self.wait_until(probe, timeout=timeout, what=f"followup #{index}")

    async def wait_original_edit(self, count: int = 1, timeout: float = 5.0) -> MessageRecord:  # noqa: ASYNC109
        """The original response after it was edited ``count`` times (e.g. after a deferral)."""

        def probe(record: InteractionRecord) -> MessageRecord | None:
            return record.original if record.original_edits >= count else None

        return await self.wait_until(probe, timeout=timeout, what=f"edit #{count} of the original response")


def find_component(components: Sequence[Mapping[str, Any]], custom_id: str) -> Mapping[str, Any] | None:
    """The component with ``custom_id`` anywhere in a message's (possibly nested) components."""
    for component in components:
        if component.get("custom_id") == custom_id:
            return component
        nested = [
            *component.get("components", []),
            *[component[k] for k in ("component", "accessory") if k in component],
        ]
        found = find_component(nested, custom_id)
        if found is not None:
            return found
    return None


def modal_submit_data(modal: Mapping[str, Any], values: Mapping[str, str]) -> dict[str, Any]:
    """MODAL_SUBMIT data mirroring the modal's layout, with each text input's value.

    Raises ValueError for what Discord's client would not let a user submit: a required input left
    empty, a value outside the input's length bounds, or a value for an input the modal lacks.
    """
    inputs = {
        component["custom_id"]: component for component in text_inputs(list(modal.get("components", [])))
    }
    unknown = set(values) - set(inputs)
    if unknown:
        raise ValueError(
            f"modal {modal.get('custom_id')!r} has no text inputs {sorted(unknown)}; it has {sorted(inputs)}"
        )
    # An input the test leaves out is submitted with its pre-filled value, as by a user who left it alone.
    entered = {
        custom_id: values.get(custom_id, field.get("value") or "") for custom_id, field in inputs.items()
    }
    for custom_id, component in inputs.items():
        value = entered[custom_id]
        if component.get("required", True) and not value:
            raise ValueError(f"text input {custom_id!r} is required")
        if value and not component.get("min_length", 0) <= len(value) <= component.get("max_length", 4000):
            raise ValueError(
                f"text input {custom_id!r} takes {component.get('min_length', 0)} to "
                f"{component.get('max_length', 4000)} characters, got {len(value)}"
            )

    def submitted(component: Mapping[str, Any]) -> dict[str, Any]:
        kind = component.get("type")
        if kind == 1:
            return {"type": 1, "components": [submitted(c) for c in component.get("components", [])]}
        if kind == 18:
            return {"type": 18, "id": component.get("id", 0), "component": submitted(component["component"])}
        if kind == 4:
            return {
                "type": 4,
                "id": component.get("id", 0),
                "custom_id": component["custom_id"],
                "value": entered[component["custom_id"]],
            }
        return {"type": kind, "id": component.get("id", 0)}

    return {
        "custom_id": modal["custom_id"],
        "components": [submitted(c) for c in modal.get("components", [])],
    }


class CommandDataBuilder:
    """Builds ``data`` of a slash command or autocomplete interaction from the synced command.

    Option values are given as Python values or fake records and typed by the command's schema:
    members and users for USER options, :class:`ChannelRecord`, :class:`RoleRecord`, and attachment
    dicts (from ``fake.add_attachment``) or records for ATTACHMENT options; those land in ``resolved``.
    """

    def __init__(self, fake: FakeDiscord, guild: GuildRecord, channel: ChannelRecord) -> None:
        self._fake = fake
        self._guild = guild
        self._channel = channel
        self.resolved: dict[str, dict[str, Any]] = {}

    def build(
        self,
        command: Mapping[str, Any],
        *,
        subcommand: str | None,
        options: Mapping[str, Any],
        attachments: Sequence[Mapping[str, Any] | AttachmentRecord],
        focused: str | None,
    ) -> dict[str, Any]:
        data: dict[str, Any] = {"id": command["id"], "name": command["name"], "type": 1}
        if command.get("guild_id") is not None:
            data["guild_id"] = command["guild_id"]
        schema: list[Mapping[str, Any]] = list(command.get("options") or [])
        holder = data
        for name in (subcommand or "").split():
            node = next((o for o in schema if o["name"] == name and o["type"] in (1, 2)), None)
            if node is None:
                choices = [o["name"] for o in schema if o["type"] in (1, 2)]
                raise ValueError(f"/{command['name']} has no subcommand {name!r}; it has {choices}")
            entry: dict[str, Any] = {"name": name, "type": node["type"], "options": []}
            holder.setdefault("options", []).append(entry)
            holder = entry
            schema = list(node.get("options") or [])
        if any(o["type"] in (1, 2) for o in schema):
            choices = [o["name"] for o in schema if o["type"] in (1, 2)]
            raise ValueError(f"/{command['name']} {subcommand or ''} needs a subcommand among {choices}")
        values = self._options(schema, options, list(attachments), focused, command["name"])
        if values or holder is not data:
            holder["options"] = values
        if self.resolved:
            data["resolved"] = self.resolved
        return data

    def _options(
        self,
        schema: list[Mapping[str, Any]],
        given: Mapping[str, Any],
        attachments: list[Mapping[str, Any] | AttachmentRecord],
        focused: str | None,
        command_name: str,
    ) -> list[dict[str, Any]]:
        names = [o["name"] for o in schema]
        unknown = set(given) - set(names)
        if unknown:
            raise ValueError(f"/{command_name} has no options {sorted(unknown)}; it has {names}")
        if focused is not None and focused not in names:
            raise ValueError(f"cannot focus {focused!r}: /{command_name} has options {names}")
        given = dict(given)
        # Attachments passed separately fill the attachment options left unset, in declaration order.
        for option in schema:
            if option["type"] == OptionType.ATTACHMENT and option["name"] not in given and attachments:
                given[option["name"]] = attachments.pop(0)
        if attachments:
            raise ValueError(
                f"/{command_name} has no attachment option left for {len(attachments)} attachment(s)"
            )
        result = []
        for option in schema:
            name = option["name"]
            if name == focused:
                result.append(
                    {"name": name, "type": option["type"], "value": str(given.get(name, "")), "focused": True}
                )
                continue
            if name not in given:
                if option.get("required") and focused is None:
                    raise ValueError(f"/{command_name} requires option {name!r}")
                continue
            value = self._value(option, given[name])
            result.append({"name": name, "type": option["type"], "value": value})
        return result

    def _value(self, option: Mapping[str, Any], value: Any) -> Any:
        kind = OptionType(option["type"])
        name = option["name"]
        if kind == OptionType.STRING:
            if not isinstance(value, str):
                raise ValueError(f"option {name!r} takes a string, got {value!r}")
            if not option.get("min_length", 0) <= len(value) <= option.get("max_length", 6000):
                raise ValueError(f"option {name!r} is outside its length bounds")
        elif kind in (OptionType.INTEGER, OptionType.NUMBER):
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise ValueError(f"option {name!r} takes a number, got {value!r}")
            if kind == OptionType.INTEGER and not isinstance(value, int):
                raise ValueError(f"option {name!r} takes an integer, got {value!r}")
            low, high = option.get("min_value"), option.get("max_value")
            if (low is not None and value < low) or (high is not None and value > high):
                raise ValueError(f"option {name!r} takes {low} to {high}, got {value}")
        elif kind == OptionType.BOOLEAN:
            if not isinstance(value, bool):
                raise ValueError(f"option {name!r} takes a bool, got {value!r}")
        elif kind in (OptionType.USER, OptionType.MENTIONABLE) and isinstance(
            value, MemberRecord | UserRecord
        ):
            return self._resolve_user(value)
        elif kind in (OptionType.ROLE, OptionType.MENTIONABLE) and isinstance(value, RoleRecord):
            self.resolved.setdefault("roles", {})[str(value.id)] = role_payload(value)
            return str(value.id)
        elif kind == OptionType.CHANNEL and isinstance(value, ChannelRecord):
            return self._resolve_channel(value)
        elif kind == OptionType.ATTACHMENT and isinstance(value, Mapping | AttachmentRecord):
            return self._resolve_attachment(value)
        else:
            raise ValueError(f"option {name!r} of type {kind.name} cannot take {value!r}")
        choices = option.get("choices")
        if choices and value not in [c["value"] for c in choices]:
            raise ValueError(f"option {name!r} must be one of {[c['value'] for c in choices]}, got {value!r}")
        return value

    def _resolve_user(self, value: MemberRecord | UserRecord) -> str:
        user = value.user if isinstance(value, MemberRecord) else value
        self.resolved.setdefault("users", {})[str(user.id)] = user_payload(user)
        member = self._guild.members.get(user.id)
        if member is not None:
            permissions = self._guild.channel_permissions(member, self._channel, self._fake.clock.now())
            self.resolved.setdefault("members", {})[str(user.id)] = member_payload(
                member, with_user=False, permissions=permissions
            )
        return str(user.id)

    def _resolve_channel(self, channel: ChannelRecord) -> str:
        bot = self._fake.state.bot_member(self._guild)
        permissions = self._guild.channel_permissions(bot, channel, self._fake.clock.now())
        self.resolved.setdefault("channels", {})[str(channel.id)] = channel_payload(
            channel, permissions=permissions
        )
        return str(channel.id)

    def _resolve_attachment(self, value: Mapping[str, Any] | AttachmentRecord) -> str:
        attachment_id = value.id if isinstance(value, AttachmentRecord) else int(value["id"])
        record = self._fake.state.attachments.get(attachment_id)
        if record is None:
            raise ValueError(f"attachment {attachment_id} was not created with fake.add_attachment")
        self.resolved.setdefault("attachments", {})[str(record.id)] = attachment_payload(record)
        return str(record.id)
