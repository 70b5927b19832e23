"""The cost of turning discord.py objects into event tables, per event.

For each event the table below sets the time ``cogs/events.py`` takes to build the payload beside the
time discord.py itself takes to parse the same gateway event into its objects (which every bot pays
anyway), measured in the same run. Run: ``python bench/events.py``.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable

import discord

from cogs.events import message_delete_table, message_table, reaction_table, user_table

GUILD_ID, CHANNEL_ID, ROLE_ID, USER_ID, MESSAGE_ID = (
    1100000000000000001,
    1100000000000000002,
    1100000000000000005,
    1100000000000000004,
    1100000000000000003,
)
USER = {"id": str(USER_ID), "username": "alice", "discriminator": "0", "global_name": "Alice", "avatar": None}
MEMBER = {
    "roles": [str(ROLE_ID)],
    "joined_at": "2025-06-01T12:00:00+00:00",
    "deaf": False,
    "mute": False,
    "flags": 0,
}
GUILD = {
    "id": str(GUILD_ID),
    "name": "Bench",
    "owner_id": "1100000000000000009",
    "roles": [
        {"id": str(GUILD_ID), "name": "@everyone", "permissions": "1024", "position": 0},
        {"id": str(ROLE_ID), "name": "Member", "permissions": "0", "position": 1},
    ],
    "channels": [{"id": str(CHANNEL_ID), "name": "general", "type": 0, "position": 0}],
    "members": [{**MEMBER, "user": USER}],
    "member_count": 1,
}
MESSAGE = {
    "id": str(MESSAGE_ID),
    "channel_id": str(CHANNEL_ID),
    "guild_id": str(GUILD_ID),
    "author": USER,
    "member": MEMBER,
    "content": "hello everyone, this is a perfectly ordinary message <@1100000000000000004>",
    "timestamp": "2026-11-24T10:00:00+00:00",
    "edited_timestamp": None,
    "tts": False,
    "mention_everyone": False,
    "mentions": [USER],
    "mention_roles": [],
    "attachments": [],
    "embeds": [],
    "pinned": False,
    "type": 0,
}
REACTION = {
    "user_id": str(USER_ID),
    "channel_id": str(CHANNEL_ID),
    "message_id": str(MESSAGE_ID),
    "guild_id": str(GUILD_ID),
    "emoji": {"id": None, "name": "👍"},
    "member": {**MEMBER, "user": USER},
    "type": 0,
}


def per_call_us(call: Callable[[], object], seconds: float = 0.5) -> float:
    rounds = []
    for _ in range(5):
        count, started = 0, time.perf_counter()
        while time.perf_counter() - started < seconds / 5:
            for _ in range(100):
                call()
            count += 100
        rounds.append((time.perf_counter() - started) / count * 1e6)
    return statistics.median(rounds)


def main() -> None:
    client = discord.Client(intents=discord.Intents.all())
    state = client._connection  # the parser a connected client would use
    guild = discord.Guild(data=GUILD, state=state)
    state._add_guild(guild)
    channel = guild.get_channel(CHANNEL_ID)
    now = discord.utils.utcnow()

    message = discord.Message(state=state, channel=channel, data=MESSAGE)
    delete = discord.RawMessageDeleteEvent(
        {"id": str(MESSAGE_ID), "channel_id": str(CHANNEL_ID), "guild_id": str(GUILD_ID)}
    )
    delete.cached_message = message
    reaction = discord.RawReactionActionEvent(REACTION, discord.PartialEmoji(name="👍"), "REACTION_ADD")
    reaction.member = guild.get_member(USER_ID)
    member = guild.get_member(USER_ID)

    rows = [
        (
            "message",
            per_call_us(lambda: message_table(message, now)),
            per_call_us(lambda: discord.Message(state=state, channel=channel, data=MESSAGE)),
        ),
        (
            "message_delete (cached)",
            per_call_us(lambda: message_delete_table(delete, channel, now)),
            per_call_us(
                lambda: discord.RawMessageDeleteEvent(
                    {"id": str(MESSAGE_ID), "channel_id": str(CHANNEL_ID), "guild_id": str(GUILD_ID)}
                )
            ),
        ),
        (
            "member_join",
            per_call_us(lambda: {"guild_id": str(GUILD_ID), "member": user_table(member, now)}),
            per_call_us(lambda: discord.Member(data={**MEMBER, "user": USER}, guild=guild, state=state)),
        ),
        (
            "reaction_add",
            per_call_us(lambda: reaction_table(reaction, now)),
            per_call_us(
                lambda: discord.RawReactionActionEvent(
                    REACTION, discord.PartialEmoji(name="👍"), "REACTION_ADD"
                )
            ),
        ),
    ]
    header = ("event", "event table (us)", "discord.py parse (us)", "ratio")
    lines = [header, tuple("-" * len(h) for h in header)]
    lines += [(name, f"{ours:.2f}", f"{theirs:.2f}", f"{ours / theirs:.2f}x") for name, ours, theirs in rows]
    widths = [max(len(line[i]) for line in lines) for i in range(len(header))]
    for line in lines:
        print("  ".join(cell.ljust(width) for cell, width in zip(line, widths, strict=True)).rstrip())


if __name__ == "__main__":
    main()
