"""The incident reporter's run-log budget: one guild's scripts cannot make the shared database
write for everyone. Real storage (a SQLite file); a hand-moved clock."""

from __future__ import annotations

from pathlib import Path

from bot.reporting import RUN_LOG_ROWS_PER_MINUTE, RUN_LOG_WINDOW, Incident, IncidentReporter
from bot.storage import GuildSettings, Storage
from lua_runtime.limits import SandboxLimits
from lua_runtime.results import EventResult, OutputLine

GUILD = 42


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def printed(n: int, text: str = "line") -> EventResult:
    return EventResult("message", output=[OutputLine("chatty", f"{text} {i}") for i in range(n)])


async def test_a_guild_writes_at_most_its_run_log_budget_a_minute_and_then_hears_what_was_dropped(
    tmp_path: Path,
) -> None:
    storage = await Storage.open(tmp_path / "warden.db", SandboxLimits())
    try:
        clock = Clock()
        reporter = IncidentReporter(storage, clock=clock)
        settings = GuildSettings(GUILD)
        events = RUN_LOG_ROWS_PER_MINUTE // 100
        for _ in range(events):
            await reporter.record(None, GUILD, settings, printed(100), [])
        # The budget is spent: neither this event's output nor its error is written.
        late = Incident("chatty", "runtime", "boom", 3)
        await reporter.record(None, GUILD, settings, printed(100, "late"), [late])
        [newest] = await storage.recent_run_log(GUILD, None, limit=1)
        assert (newest.kind, newest.message) == ("print", "line 99")

        # Another guild is not held back by this one's budget.
        await reporter.record(None, GUILD + 1, GuildSettings(GUILD + 1), printed(1, "other"), [])
        [other] = await storage.recent_run_log(GUILD + 1, None, limit=1)
        assert other.message == "other 0"

        # The next minute starts with a row saying what was dropped, then writes again; an error
        # goes in before print lines when the budget cannot take both.
        clock.now += RUN_LOG_WINDOW
        await reporter.record(None, GUILD, settings, printed(1, "again"), [])
        newest_first = await storage.recent_run_log(GUILD, None, limit=2)
        assert [row.message for row in newest_first] == [
            "again 0",
            f"101 run-log lines were not kept in the last minute: the run log keeps at most "
            f"{RUN_LOG_ROWS_PER_MINUTE} lines a minute per server",
        ]
        for _ in range(events - 1):
            await reporter.record(None, GUILD, settings, printed(100), [])
        await reporter.record(None, GUILD, settings, printed(100, "last"), [late])
        rows = await storage.recent_run_log(GUILD, None, limit=100)
        assert rows[0].kind == "error" and rows[0].message == late.describe()
        assert rows[1].message == "last 97"  # 99 of the budget's rows were left: 98 prints, 1 error
    finally:
        await storage.close()
