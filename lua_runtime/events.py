"""The events scripts can handle, and a realistic sample payload for each.

Payloads are plain tables: snowflake ids are strings (Luau numbers are doubles and would lose digits),
times are ISO-8601 strings, counts are numbers. ``cogs/events.py`` builds the real ones from
discord.py objects in exactly these shapes; the samples feed the offline CLI and ``/script test``
when no payload is given. ``docs/scripting.md`` documents every field.
"""

from __future__ import annotations

import copy
from typing import Any

EVENT_NAMES: tuple[str, ...] = (
    "message",
    "message_edit",
    "message_delete",
    "member_join",
    "member_leave",
    "reaction_add",
    "reaction_remove",
)

_GUILD = "1100000000000000001"
_CHANNEL = "1100000000000000002"
_MESSAGE = "1100000000000000003"
_MEMBER = {
    "id": "1100000000000000004",
    "username": "alice",
    "display_name": "Alice",
    "bot": False,
    "roles": ["1100000000000000005"],
    "account_age_days": 412.0,
    "joined_at": "2025-06-01T12:00:00+00:00",
}

_SAMPLES: dict[str, dict[str, Any]] = {
    "message": {
        "id": _MESSAGE,
        "channel_id": _CHANNEL,
        "guild_id": _GUILD,
        "thread_id": None,
        "content": "hello everyone, check out this badword",
        "author": _MEMBER,
        "mentions": [],
        "role_mentions": [],
        "mention_everyone": False,
        "attachments": [],
        "reference_message_id": None,
        "created_at": "2026-11-24T10:00:00+00:00",
    },
    "message_edit": {
        "id": _MESSAGE,
        "channel_id": _CHANNEL,
        "guild_id": _GUILD,
        "thread_id": None,
        "content": "hello everyone (edited)",
        "before_content": "hello everyone",
        "author": _MEMBER,
        "edited_at": "2026-11-24T10:01:00+00:00",
    },
    "message_delete": {
        "id": _MESSAGE,
        "channel_id": _CHANNEL,
        "guild_id": _GUILD,
        "thread_id": None,
        "content": "hello everyone",
        "author": _MEMBER,
    },
    "member_join": {"guild_id": _GUILD, "member": {**_MEMBER, "account_age_days": 0.5, "roles": []}},
    "member_leave": {"guild_id": _GUILD, "member": _MEMBER},
    "reaction_add": {
        "guild_id": _GUILD,
        "channel_id": _CHANNEL,
        "message_id": _MESSAGE,
        "user_id": _MEMBER["id"],
        "member": _MEMBER,
        "emoji": {"name": "👍", "id": None, "animated": False},
    },
    "reaction_remove": {
        "guild_id": _GUILD,
        "channel_id": _CHANNEL,
        "message_id": _MESSAGE,
        "user_id": _MEMBER["id"],
        "emoji": {"name": "👍", "id": None, "animated": False},
    },
}


def sample_payload(event: str) -> dict[str, Any]:
    """A fresh, realistic payload for ``event`` (a deep copy: callers may change it)."""
    try:
        return copy.deepcopy(_SAMPLES[event])
    except KeyError:
        raise ValueError(f"unknown event {event!r}; events are {', '.join(EVENT_NAMES)}") from None
