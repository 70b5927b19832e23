"""Time and ids as Discord makes them: snowflakes from a clock, ISO-8601 timestamps.

A snowflake's top 42 bits are milliseconds since the Discord epoch, so an id *is* a creation time:
discord.py derives ``created_at`` (and the bot derives a user's account age) from it. The fake
therefore mints every id from :class:`FakeClock`, and can mint ids in the past for accounts that
should look old.

The clock can be advanced by a test: deadlines the fake enforces (the 3-second interaction
acknowledgement window, the 15-minute followup window) are measured on it, so a test can step past
a deadline without sleeping.
"""

from __future__ import annotations

import datetime as dt
import itertools
import time

DISCORD_EPOCH_MS = 1_420_070_400_000
"""2015-01-01T00:00:00Z in Unix milliseconds, the zero of every snowflake."""

# Worker and process ids are 5 bits each in a real snowflake; any fixed value is realistic.
_WORKER_ID = 1
_PROCESS_ID = 0


class FakeClock:
    """Wall-clock and monotonic time that a test can move forward.

    Both readings are the real ones plus a shared offset, so time keeps flowing normally between
    :meth:`advance` calls and discord.py (which reads the real clock) sees timestamps close to its own.
    """

    def __init__(self) -> None:
        self._offset = 0.0

    def now(self) -> dt.datetime:
        """The current UTC time as the fake sees it."""
        return dt.datetime.now(dt.UTC) + dt.timedelta(seconds=self._offset)

    def monotonic(self) -> float:
        """A monotonic reading in seconds, used for deadlines."""
        return time.monotonic() + self._offset

    def advance(self, seconds: float) -> None:
        """Move the fake's time forward, e.g. past an interaction's response window."""
        if seconds < 0:
            raise ValueError("the clock only moves forward")
        self._offset += seconds


class SnowflakeFactory:
    """Mints unique snowflakes whose timestamp is the clock's now, or a given moment."""

    def __init__(self, clock: FakeClock) -> None:
        self._clock = clock
        self._increment = itertools.count()

    def new(self, at: dt.datetime | None = None) -> int:
        """A fresh snowflake created at ``at`` (default: now)."""
        moment = at if at is not None else self._clock.now()
        millis = int(moment.timestamp() * 1000) - DISCORD_EPOCH_MS
        if millis < 0:
            raise ValueError(f"{moment.isoformat()} is before the Discord epoch")
        return (millis << 22) | (_WORKER_ID << 17) | (_PROCESS_ID << 12) | (next(self._increment) & 0xFFF)


def snowflake_time(snowflake: int) -> dt.datetime:
    """The creation time encoded in a snowflake."""
    return dt.datetime.fromtimestamp(((snowflake >> 22) + DISCORD_EPOCH_MS) / 1000, dt.UTC)


def iso8601(moment: dt.datetime | None) -> str | None:
    """Discord's timestamp format: ISO-8601 with microseconds and a ``+00:00`` offset."""
    if moment is None:
        return None
    return moment.astimezone(dt.UTC).isoformat(timespec="microseconds")


def parse_iso8601(text: str) -> dt.datetime:
    """Parse a timestamp sent by a client; naive times are taken as UTC, as Discord does."""
    moment = dt.datetime.fromisoformat(text)
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=dt.UTC)
    return moment
