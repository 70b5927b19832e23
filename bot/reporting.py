"""Telling a guild's admins what their scripts did wrong.

Every script error, failed action and ``print`` line goes to the guild's run log (``/script logs``),
up to :data:`RUN_LOG_ROWS_PER_MINUTE` rows a minute per guild: the database is shared by every
guild, so one guild's scripts printing on every event of a busy server must not make it write for
everyone. Past that, the rows (and their lines in the bot's log) are dropped, and the first row of
the guild's next minute says how many were.
Errors and failed actions are also posted to the guild's error channel when one is set, at most once
per script per minute, and at most :data:`REPORTS_PER_GUILD` times per minute for the whole guild:
the next report says how many were held back, so neither a script that fails on every message nor
twenty-five scripts failing together can flood the channel.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import discord

from bot.actions import ActionOutcome
from bot.storage import GuildSettings, RunLogLine, Storage
from lua_runtime.results import EventResult

log = logging.getLogger(__name__)

#: Seconds between two error-channel reports about the same script.
REPORT_INTERVAL = 60.0
#: Error-channel reports about one guild, all its scripts together, in any REPORT_INTERVAL. Without
#: it a guild's 25 scripts failing on every message posted 25 embeds a minute, each one waiting
#: its turn in Discord's rate limit for the channel.
REPORTS_PER_GUILD = 5
#: Run-log rows (print lines, errors, failed actions) one guild may write per RUN_LOG_WINDOW. The
#: run log keeps a guild's newest 200 rows: a minute's worth is all anyone can read back anyway.
RUN_LOG_ROWS_PER_MINUTE = 600
RUN_LOG_WINDOW = 60.0

_KIND_TITLES = {
    "syntax": "Syntax error",
    "runtime": "Runtime error",
    "time_limit": "Time limit exceeded",
    "memory_limit": "Memory limit exceeded",
    "limit": "Limit reached",
    "action": "Action failed",
    "internal": "Could not run",
}


@dataclass(frozen=True, slots=True)
class Incident:
    """One thing to tell the admins about one script."""

    script: str
    kind: str
    message: str
    line: int | None = None

    def describe(self) -> str:
        where = f" (line {self.line})" if self.line is not None else ""
        return f"{_KIND_TITLES.get(self.kind, self.kind)}{where}: {self.message}"


def incidents_of(result: EventResult | None, outcomes: Iterable[ActionOutcome]) -> list[Incident]:
    found = [] if result is None else [Incident(e.script, e.kind, e.message, e.line) for e in result.errors]
    found += [Incident(o.script, "action", o.problem or "failed") for o in outcomes if not o.ok]
    return found


class IncidentReporter:
    """Writes the run log and posts throttled reports to error channels."""

    def __init__(self, storage: Storage, clock: Any = time.monotonic) -> None:
        self._storage = storage
        self._clock = clock
        # (guild, script) -> (time of the last report, reports held back since)
        self._last: dict[tuple[int, str], tuple[float, int]] = {}
        # guild -> times of its reports in the last REPORT_INTERVAL, oldest first
        self._guild_reports: dict[int, list[float]] = {}
        # guild -> [start of its run-log window, rows written in it, rows dropped in it]
        self._run_log_windows: dict[int, list[float]] = {}

    async def record(
        self,
        guild: discord.Guild | None,
        guild_id: int,
        settings: GuildSettings,
        result: EventResult | None,
        incidents: list[Incident],
    ) -> None:
        """Log ``result``'s output and every incident, then report the incidents. Never raises."""
        errors = [RunLogLine(guild_id, i.script, "error", i.describe()) for i in incidents]
        prints = (
            [] if result is None else [RunLogLine(guild_id, o.script, "print", o.text) for o in result.output]
        )
        kept = self._within_run_log_budget(guild_id, prints, errors)
        if kept:
            try:
                await self._storage.append_run_log_many(kept)
            except Exception:
                log.exception("guild %s: could not write %d run-log lines", guild_id, len(kept))
        logged = sum(1 for line in kept if line.kind == "error")
        for incident in incidents:
            if logged > 0:
                logged -= 1
                log.info("guild %s, script %s: %s", guild_id, incident.script, incident.describe())
            if guild is not None and settings.error_channel_id is not None:
                await self._report(guild, settings.error_channel_id, incident)

    def _within_run_log_budget(
        self, guild_id: int, prints: list[RunLogLine], errors: list[RunLogLine]
    ) -> list[RunLogLine]:
        """The rows to write, in order (an event's output, then its errors): as many as fit in the
        guild's run-log budget for this minute, errors first, since they are what its admins need.
        A new minute starts with a row saying how many the last one dropped."""
        now = self._clock()
        window = self._run_log_windows.get(guild_id)
        summary: list[RunLogLine] = []
        if window is None or now - window[0] >= RUN_LOG_WINDOW:
            if window is not None and window[2]:
                text = (
                    f"{int(window[2])} run-log lines were not kept in the last minute: the run log "
                    f"keeps at most {RUN_LOG_ROWS_PER_MINUTE} lines a minute per server"
                )
                summary.append(RunLogLine(guild_id, "(all scripts)", "error", text))
            window = self._run_log_windows[guild_id] = [now, 0, 0]
        room = max(0, RUN_LOG_ROWS_PER_MINUTE - int(window[1]))
        kept_errors = errors[:room]
        kept_prints = prints[: room - len(kept_errors)]
        kept = len(kept_errors) + len(kept_prints)
        window[1] += kept
        window[2] += len(prints) + len(errors) - kept
        return summary + kept_prints + kept_errors

    async def _report(self, guild: discord.Guild, channel_id: int, incident: Incident) -> None:
        key = (guild.id, incident.script)
        now = self._clock()
        last, held_back = self._last.get(key, (float("-inf"), 0))
        recent = [at for at in self._guild_reports.get(guild.id, ()) if now - at < REPORT_INTERVAL]
        self._guild_reports[guild.id] = recent
        if now - last < REPORT_INTERVAL or len(recent) >= REPORTS_PER_GUILD:
            self._last[key] = (last, held_back + 1)
            return
        self._last[key] = (now, 0)
        recent.append(now)
        channel = guild.get_channel_or_thread(channel_id)
        if channel is None or not hasattr(channel, "send"):
            log.warning("guild %s: error channel %s is gone", guild.id, channel_id)
            return
        embed = discord.Embed(
            title=f"Script {incident.script}",
            description=incident.describe()[:4000],
            colour=discord.Colour.red(),
        )
        if held_back:
            embed.set_footer(
                text=f"{held_back} more report(s) held back in the last minute; see /script logs"
            )
        try:
            await channel.send(embed=embed, allowed_mentions=discord.AllowedMentions.none())
        except discord.HTTPException as exc:
            log.warning("guild %s: cannot post to error channel %s: %s", guild.id, channel_id, exc)
