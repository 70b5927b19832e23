"""The example library (``data/examples/*.luau``) does what its header comments promise.

Each example runs twice over: through the real VM pool (real guild VMs, a real SQLite KV store, and
one clock for both that the test moves, so that expiries pass and timers fall due without sleeping),
where realistic event sequences pin down exactly which actions it asks for;
and through the local Discord stand-in, uploaded with the grants its header names, where its actions
must reach Discord as the right REST calls. Settings that name server-specific ids are filled in the
way an admin would, by editing the line in the settings block.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import sqlite3
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from bot.storage import migrate
from cogs.scripts import parse_capabilities
from lua_runtime.dry_run import load_script
from lua_runtime.events import sample_payload
from lua_runtime.guild_vm import ScriptSource
from lua_runtime.kv_store import KVStore
from lua_runtime.limits import SandboxLimits
from lua_runtime.pool import InMemoryScripts, PoolConfig, VmPool
from lua_runtime.results import EventResult
from tests.support.harness import WardenHarness, open_harness

EXAMPLES_DIR = Path(__file__).resolve().parent.parent / "data" / "examples"
EXAMPLES = sorted(path.stem for path in EXAMPLES_DIR.glob("*.luau"))
LIMITS = SandboxLimits()

GUILD_ID = 1100000000000000001
CHANNEL = "1100000000000000002"
MESSAGE_ID = "1100000000000000003"
ALICE = "1100000000000000004"
BOB = "1100000000000000014"
ROLE = "1100000000000000021"
OTHER_ROLE = "1100000000000000022"

MESSAGES = "/channels/{channel_id}/messages"
MESSAGE = "/channels/{channel_id}/messages/{message_id}"
MEMBER = "/guilds/{guild_id}/members/{user_id}"
MEMBER_ROLE = "/guilds/{guild_id}/members/{user_id}/roles/{role_id}"

_UPLOAD_LINE = re.compile(r"^  /script upload file:(?P<file>\S+)(?: grant:(?P<grant>.+))?$", re.MULTILINE)


def example(name: str, **settings: str) -> str:
    """The source of ``data/examples/<name>.luau``, with the given settings lines set to Luau values.

    ``example("welcome", WELCOME_CHANNEL_ID='"123..."')`` edits ``local WELCOME_CHANNEL_ID = ""`` in
    the settings block, as the header tells admins to.
    """
    source = (EXAMPLES_DIR / f"{name}.luau").read_text(encoding="utf-8")
    for setting, value in settings.items():
        line = re.compile(rf"^(?P<declared>local {setting}(?:: [^=]+)?) = .*$", re.MULTILINE)
        source, count = line.subn(lambda m, value=value: f"{m['declared']} = {value}", source)
        assert count == 1, f"{name} has no setting {setting}"
    return source


def header_grant(name: str) -> str | None:
    """The ``grant:`` of the upload command in the example's header (None: it needs no grant)."""
    match = _UPLOAD_LINE.search(example(name))
    assert match is not None, f"{name}'s header has no '/script upload file:...' line"
    return match["grant"]


def author(user_id: str = ALICE, **fields: Any) -> dict[str, Any]:
    """A member table as events carry it (the sample member, with another id and fields)."""
    return sample_payload("message")["author"] | {"id": user_id} | fields


def without_script(actions: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [{key: value for key, value in action.items() if key != "script"} for action in actions]


@dataclass
class ManualClock:
    """The KV store's and the pool's clock, moved by the test so that expiries pass and timers fall
    due without sleeping."""

    now: float = field(default_factory=time.time)

    def __call__(self) -> float:
        return self.now


@dataclass
class ExampleGuild:
    """One guild running one example in the real VM pool, on a real KV store."""

    pool: VmPool
    kv: KVStore
    clock: ManualClock
    #: Runs of timers that produced something, as the pool reports them.
    timer_results: asyncio.Queue[EventResult]

    async def advance(self, seconds: float) -> None:
        """Move the clock, then wake the worker (with a stats request) so that it runs the timers due."""
        self.clock.now += seconds
        await self.pool.stats()

    async def timer_actions(self) -> list[dict[str, Any]]:
        """The actions of the next run of timers that produced something."""
        result = await asyncio.wait_for(self.timer_results.get(), 10)
        assert result.errors == [], result.errors
        return without_script(result.actions)

    async def run(self, event: str, **fields: Any) -> list[dict[str, Any]]:
        """Dispatch ``event`` (the sample payload with ``fields`` replaced); the actions asked for."""
        result = await self.pool.dispatch(GUILD_ID, event, sample_payload(event) | fields)
        assert result.errors == [], result.errors
        return without_script(result.actions)

    async def message(self, content: str, user_id: str = ALICE, **fields: Any) -> list[dict[str, Any]]:
        return await self.run("message", content=content, author=author(user_id), **fields)

    async def join(self, user_id: str, account_age_days: float = 400.0) -> list[dict[str, Any]]:
        member = author(user_id, account_age_days=account_age_days, roles=[])
        return await self.run("member_join", member=member)


@contextlib.asynccontextmanager
async def running(tmp_path: Path, name: str, source: str | None = None) -> AsyncIterator[ExampleGuild]:
    """``name``'s example (or ``source`` under that name) loaded in a one-worker pool."""
    database = tmp_path / "warden.db"
    with contextlib.closing(sqlite3.connect(database, isolation_level=None)) as conn:
        migrate(conn)
    clock = ManualClock()
    timer_results: asyncio.Queue[EventResult] = asyncio.Queue()
    with KVStore(database, LIMITS, clock=clock) as kv:
        script = ScriptSource(name, source if source is not None else example(name))
        scripts = InMemoryScripts({GUILD_ID: [script]}, kv_store=kv)
        async with VmPool(
            scripts,
            LIMITS,
            PoolConfig(strategy="threadpool", workers=1),
            on_timer_result=lambda guild_id, result: timer_results.put_nowait(result),
            clock=clock,
        ) as pool:
            report = await pool.reload(GUILD_ID)
            assert report.errors == (), report.errors
            yield ExampleGuild(pool, kv, clock, timer_results)


# --- every example ---------------------------------------------------------------------------------


def test_the_library_has_the_nine_examples() -> None:
    assert EXAMPLES == [
        "anti_spam",
        "banned_words",
        "link_filter",
        "mention_guard",
        "new_account_gate",
        "raid_detection",
        "reaction_roles",
        "slowmode_warning",
        "welcome",
    ]


@pytest.mark.parametrize("name", EXAMPLES)
def test_each_header_says_what_to_grant_and_where_the_settings_are(name: str) -> None:
    source = example(name)
    assert source.startswith(f"--[[\n{name}: ")
    header = source[: source.index("]]")]
    assert "Capabilities to grant:" in header and "Settings:" in header
    match = _UPLOAD_LINE.search(header)
    assert match is not None and match["file"] == f"{name}.luau"
    if match["grant"] is not None:
        parse_capabilities(match["grant"])  # raises on a capability that does not exist
    assert "-- Settings ---" in source


@pytest.mark.parametrize(
    ("name", "events"),
    [
        ("anti_spam", ["message"]),
        ("banned_words", ["message", "message_edit"]),
        ("link_filter", ["message", "message_edit"]),
        ("mention_guard", ["message"]),
        ("new_account_gate", ["member_join"]),
        ("raid_detection", ["member_join"]),
        ("slowmode_warning", ["message"]),
    ],
)
def test_examples_without_required_settings_load_as_they_are(name: str, events: list[str]) -> None:
    loaded = load_script(ScriptSource(name, example(name)), LIMITS)
    assert loaded.error is None and loaded.handled_events == events


@pytest.mark.parametrize(
    ("name", "line", "message"),
    [
        ("welcome", 27, "set WELCOME_CHANNEL_ID at the top of the script to the id of your welcome channel"),
        (
            "reaction_roles",
            31,
            "set ROLES_MESSAGE_ID and ROLE_FOR_EMOJI at the top of the script (see the comment there)",
        ),
    ],
)
def test_examples_with_required_settings_refuse_to_load_until_they_are_set(
    name: str, line: int, message: str
) -> None:
    loaded = load_script(ScriptSource(name, example(name)), LIMITS)
    assert loaded.error is not None
    assert (loaded.error.kind, loaded.error.line, loaded.error.message) == ("runtime", line, message)


# --- through the VM pool ---------------------------------------------------------------------------


def delete(message_id: str = MESSAGE_ID) -> dict[str, Any]:
    return {"type": "delete_message", "channel_id": CHANNEL, "message_id": message_id}


def send(content: str, channel_id: str = CHANNEL, **fields: Any) -> dict[str, Any]:
    return {"type": "send", "channel_id": channel_id, "content": content} | fields


def timeout(user_id: str, seconds: int, reason: str) -> dict[str, Any]:
    return {"type": "timeout", "user_id": user_id, "seconds": seconds, "reason": reason}


def log(content: str) -> dict[str, Any]:
    return {"type": "log", "content": content}


async def test_banned_words_escalate_from_warnings_to_a_timeout_to_a_kick(tmp_path: Path) -> None:
    async with running(tmp_path, "banned_words") as guild:
        assert await guild.message("a perfectly nice message") == []
        warned = [await guild.message("what a BadWord") for _ in range(2)]
        assert warned == [
            [
                delete(),
                send(f"<@{ALICE}>, that word is not allowed here (strike {n}; 3 strikes mean a timeout)."),
            ]
            for n in (1, 2)
        ]
        for strike in (3, 4):
            assert await guild.message("badword again") == [
                delete(),
                timeout(ALICE, 600, f"{strike} banned-word strikes"),
                send(f"<@{ALICE}> is timed out for 10 minutes (strike {strike})."),
            ]
        # An edit that slips a banned word in counts too.
        assert await guild.run("message_edit", content="scamlink.example/free", author=author()) == [
            delete(),
            {"type": "kick", "user_id": ALICE, "reason": "5 banned-word strikes"},
            log(f"Kicked <@{ALICE}> after 5 banned-word strikes."),
        ]
        # Strikes are per member.
        assert (await guild.message("badword", BOB))[1]["content"].endswith(
            "(strike 1; 3 strikes mean a timeout)."
        )


async def test_banned_word_strikes_are_forgotten_a_day_after_the_first(tmp_path: Path) -> None:
    async with running(tmp_path, "banned_words") as guild:
        await guild.message("badword")
        guild.clock.now += 23 * 3600
        assert "(strike 2;" in (await guild.message("badword"))[1]["content"]
        guild.clock.now += 3600  # 24 hours after the first strike: the window it opened is over
        assert "(strike 1;" in (await guild.message("badword"))[1]["content"]


async def test_anti_spam_times_out_the_sixth_message_in_five_seconds(tmp_path: Path) -> None:
    async with running(tmp_path, "anti_spam") as guild:
        for _ in range(5):
            assert await guild.message("hi") == []
        assert await guild.message("hi") == [
            delete(),
            timeout(ALICE, 300, "more than 5 messages in 5 seconds"),
            send(f"<@{ALICE}> is timed out for 5 minutes for spamming."),
        ]
        assert await guild.message("hi") == [delete()]  # deleted, but timed out only once
        assert await guild.message("hi", BOB) == []  # each member has their own count
        guild.clock.now += 5  # the window opened by Alice's first message is over
        assert await guild.message("hi") == []


async def test_anti_spam_counts_from_each_window_start(tmp_path: Path) -> None:
    async with running(tmp_path, "anti_spam") as guild:
        for _ in range(4):
            await guild.message("hi")
        guild.clock.now += 4.9
        assert await guild.message("hi") == []  # the fifth in the window
        guild.clock.now += 0.2
        for _ in range(5):
            assert await guild.message("hi") == []  # a new window


async def test_new_account_gate_kicks_young_accounts_and_logs_it(tmp_path: Path) -> None:
    async with running(tmp_path, "new_account_gate") as guild:
        assert await guild.join(ALICE, account_age_days=7.0) == []
        reason = "account is 2.5 days old (the minimum is 7)"
        assert await guild.join(BOB, account_age_days=2.5) == [
            {"type": "kick", "user_id": BOB, "reason": reason},
            log(f"Kicked <@{BOB}> (alice): {reason}."),
        ]


async def test_new_account_gate_can_quarantine_instead(tmp_path: Path) -> None:
    source = example("new_account_gate", QUARANTINE_ROLE_ID=f'"{ROLE}"', MIN_ACCOUNT_AGE_DAYS="30")
    async with running(tmp_path, "new_account_gate", source) as guild:
        reason = "account is 12.0 days old (the minimum is 30)"
        assert await guild.join(BOB, account_age_days=12) == [
            {"type": "add_role", "user_id": BOB, "role_id": ROLE, "reason": reason},
            log(f"Quarantined <@{BOB}> (alice): {reason}."),
        ]


def newcomer(n: int) -> str:
    return f"12000000000000000{n:02d}"


async def test_raid_detection_times_out_the_raiders_and_then_every_newcomer(tmp_path: Path) -> None:
    async with running(tmp_path, "raid_detection") as guild:
        for n in range(1, 10):
            assert await guild.join(newcomer(n)) == []
        raid = await guild.join(newcomer(10))
        assert raid[0] == log(
            "Raid detected: 10 members joined in the last 30 seconds. "
            "Timing out newcomers for 60 minutes; raid mode lasts 15 minutes."
        )
        assert raid[1:] == [timeout(newcomer(n), 3600, "joined during a raid") for n in range(1, 11)]
        assert await guild.join(newcomer(11)) == [timeout(newcomer(11), 3600, "joined during a raid")]
        guild.clock.now += 15 * 60  # raid mode is over; the joins list expired long ago
        assert await guild.join(newcomer(12)) == []


async def test_raid_detection_does_not_count_joins_older_than_the_window(tmp_path: Path) -> None:
    async with running(tmp_path, "raid_detection") as guild:
        # Eight members joined 31 seconds ago: outside the 30-second window.
        long_ago = int(time.time()) - 31
        joins = [{"id": newcomer(n), "at": long_ago} for n in range(1, 9)]
        guild.kv.set(GUILD_ID, "raid_detection:recent_joins", joins, 30)
        for n in range(9, 18):
            assert await guild.join(newcomer(n)) == []
        assert [join["id"] for join in guild.kv.get(GUILD_ID, "raid_detection:recent_joins")] == [
            newcomer(n) for n in range(9, 18)
        ]


async def test_link_filter_allows_listed_sites_and_their_subdomains(tmp_path: Path) -> None:
    async with running(tmp_path, "link_filter") as guild:
        for text in (
            "no links here, just discord.gg talk",
            "see https://en.wikipedia.org/wiki/Lua and HTTPS://GitHub.com/luau-lang",
            "<https://www.youtube.com/watch?v=1> and http://youtu.be:443/x",
        ):
            assert await guild.message(text) == [], text


async def test_link_filter_deletes_links_elsewhere_and_names_the_site(tmp_path: Path) -> None:
    async with running(tmp_path, "link_filter") as guild:
        for text, site in (
            ("free nitro https://discord-gift.example/claim", "discord-gift.example"),
            ("https://wikipedia.org.evil.example/x", "wikipedia.org.evil.example"),
            ("https://user@notwikipedia.org:8080/", "notwikipedia.org"),
        ):
            assert await guild.message(text) == [
                delete(),
                send(f"<@{ALICE}>, links to {site} are not allowed here."),
            ], text
        edited = await guild.run("message_edit", content="now https://evil.example", author=author())
        assert edited[0] == delete()


async def test_link_filter_exempts_the_listed_roles(tmp_path: Path) -> None:
    source = example("link_filter", EXEMPT_ROLE_IDS=f'{{ "{ROLE}" }}')
    async with running(tmp_path, "link_filter", source) as guild:
        moderator = author(BOB, roles=[OTHER_ROLE, ROLE])
        assert await guild.run("message", content="https://anything.example", author=moderator) == []
        assert len(await guild.message("https://anything.example")) == 2


async def test_welcome_greets_gives_the_starter_role_and_says_goodbye(tmp_path: Path) -> None:
    welcome = "1100000000000000031"
    source = example("welcome", WELCOME_CHANNEL_ID=f'"{welcome}"', STARTER_ROLE_ID=f'"{ROLE}"')
    async with running(tmp_path, "welcome", source) as guild:
        assert await guild.join(BOB) == [
            send(f"Welcome to the server, <@{BOB}>! Please read the rules before you post.", welcome),
            {"type": "add_role", "user_id": BOB, "role_id": ROLE, "reason": "starter role for new members"},
        ]
        left = await guild.run("member_leave", member=author(BOB, display_name="Bob"))
        assert left == [send("Bob has left the server.", welcome)]


async def test_welcome_without_a_starter_role_or_goodbyes(tmp_path: Path) -> None:
    welcome = "1100000000000000031"
    source = example("welcome", WELCOME_CHANNEL_ID=f'"{welcome}"', SAY_GOODBYE="false")
    async with running(tmp_path, "welcome", source) as guild:
        assert [action["type"] for action in await guild.join(BOB)] == ["send"]
        assert await guild.run("member_leave", member=author(BOB)) == []


def reaction(message_id: str, name: str, emoji_id: str | None = None) -> dict[str, Any]:
    return {
        "message_id": message_id,
        "user_id": BOB,
        "emoji": {"name": name, "id": emoji_id, "animated": False},
    }


async def test_reaction_roles_follow_the_reactions_on_the_roles_message(tmp_path: Path) -> None:
    roles_message = "1100000000000000041"
    custom_emoji = "1100000000000000051"
    source = example(
        "reaction_roles",
        ROLES_MESSAGE_ID=f'"{roles_message}"',
        ROLE_FOR_EMOJI=f'{{ ["🎮"] = "{ROLE}", ["{custom_emoji}"] = "{OTHER_ROLE}" }}',
    )
    async with running(tmp_path, "reaction_roles", source) as guild:
        assert await guild.run("reaction_add", **reaction(roles_message, "🎮")) == [
            {"type": "add_role", "user_id": BOB, "role_id": ROLE, "reason": "reaction role"}
        ]
        assert await guild.run("reaction_add", **reaction(roles_message, "warden", custom_emoji)) == [
            {"type": "add_role", "user_id": BOB, "role_id": OTHER_ROLE, "reason": "reaction role"}
        ]
        assert await guild.run("reaction_remove", **reaction(roles_message, "🎮")) == [
            {"type": "remove_role", "user_id": BOB, "role_id": ROLE, "reason": "reaction role removed"}
        ]
        assert await guild.run("reaction_add", **reaction(roles_message, "👍")) == []
        assert await guild.run("reaction_add", **reaction(MESSAGE_ID, "🎮")) == []


async def test_mention_guard_counts_users_roles_and_everyone(tmp_path: Path) -> None:
    async with running(tmp_path, "mention_guard") as guild:
        four = [ALICE, BOB, BOB, BOB]
        assert await guild.message("hey", mentions=four) == []
        assert await guild.message("hey", mentions=four, role_mentions=[ROLE]) == [
            delete(),
            timeout(ALICE, 600, "5 mentions in one message"),
            log(f"Timed out <@{ALICE}> for 5 mentions in <#{CHANNEL}>."),
        ]
        assert len(await guild.message("@everyone", mention_everyone=True)) == 3


async def test_mention_guard_exempts_the_listed_roles(tmp_path: Path) -> None:
    source = example("mention_guard", EXEMPT_ROLE_IDS=f'{{ "{ROLE}" }}')
    async with running(tmp_path, "mention_guard", source) as guild:
        staff = author(BOB, roles=[ROLE])
        assert await guild.run("message", content="all", author=staff, mention_everyone=True) == []


def member(n: int) -> str:
    return f"13000000000000000{n:02d}"


SLOW_DOWN = "you are sending messages very fast: please slow down."
COOL_DOWN = "This channel is very busy: please slow down for the next 60 seconds."
COOLED_DOWN = "The cool-down is over. Thanks for keeping the channel readable!"


async def test_slowmode_warning_warns_a_fast_member_once_per_window(tmp_path: Path) -> None:
    async with running(tmp_path, "slowmode_warning") as guild:
        for _ in range(5):
            assert await guild.message("hi") == []
        assert await guild.message("hi") == [
            {
                "type": "reply",
                "channel_id": CHANNEL,
                "message_id": MESSAGE_ID,
                "content": f"<@{ALICE}>, {SLOW_DOWN}",
                "delete_after": 10,
            }
        ]
        assert await guild.message("hi") == []  # one warning per window
        assert await guild.message("hi", BOB) == []  # each member has their own count
        await guild.advance(10)  # Alice's window is over
        for _ in range(5):
            assert await guild.message("hi") == []
        assert [action["type"] for action in await guild.message("hi")] == ["reply"]


async def test_slowmode_warning_cools_a_busy_channel_down_and_says_when_it_is_over(tmp_path: Path) -> None:
    async with running(tmp_path, "slowmode_warning") as guild:
        for n in range(20):  # twenty members, one message each: busy, but nobody is too fast
            assert await guild.message("hi", member(n)) == []
        assert await guild.message("hi", member(20)) == [send(COOL_DOWN, delete_after=60)]
        assert await guild.message("hi", member(21)) == []  # one notice per cool-down
        await guild.advance(60)
        assert await guild.timer_actions() == [send(COOLED_DOWN, delete_after=10)]
        # The cool-down and the channel's window have expired: the next burst is noticed as usual.
        for n in range(20):
            assert await guild.message("hi", member(n)) == []
        assert await guild.message("hi", member(20)) == [send(COOL_DOWN, delete_after=60)]


# --- through the local Discord stand-in ------------------------------------------------------------


async def upload(h: WardenHarness, name: str, source: str | None = None) -> None:
    """Upload the example as an admin would, granting what its header says."""
    await h.upload_script(name, source if source is not None else example(name), grant=header_grant(name))


@pytest.mark.slow
async def test_standin_banned_words_delete_warn_and_time_out(tmp_path: Path) -> None:
    async with open_harness(tmp_path) as h:
        await upload(h, "banned_words")
        for strike in (1, 2, 3):
            mark = h.fake.mark()
            message = await h.send_message(f"BADWORD number {strike}")
            await h.fake.wait_for_call("DELETE", MESSAGE, since=mark, message_id=message.id)
            warning = await h.fake.wait_for_call("POST", MESSAGES, since=mark, channel_id=h.general.id)
            assert f"(strike {strike}" in warning.payload["content"]
            assert warning.payload["allowed_mentions"]["parse"] == []
        muted = await h.fake.wait_for_call("PATCH", MEMBER, user_id=h.member.id)
        assert muted.reason == "Warden script banned_words: 3 banned-word strikes"
        assert muted.payload["communication_disabled_until"] is not None


@pytest.mark.slow
async def test_standin_anti_spam_times_out_a_flood(tmp_path: Path) -> None:
    async with open_harness(tmp_path) as h:
        await upload(h, "anti_spam")
        for n in range(6):
            last = await h.send_message(f"spam {n}")
        await h.fake.wait_for_call("DELETE", MESSAGE, message_id=last.id)
        muted = await h.fake.wait_for_call("PATCH", MEMBER, user_id=h.member.id)
        assert muted.reason == "Warden script anti_spam: more than 5 messages in 5 seconds"
        assert len(h.fake.calls("DELETE", MESSAGE)) == 1  # the first five stay


@pytest.mark.slow
async def test_standin_new_account_gate_kicks_a_fresh_account(tmp_path: Path) -> None:
    async with open_harness(tmp_path) as h:
        await h.run("config", options={"log_channel": h.log_channel})
        await upload(h, "new_account_gate")
        fresh = await h.fake.member_join(h.guild, "fresh", account_age_days=1)
        kicked = await h.fake.wait_for_call("DELETE", MEMBER, user_id=fresh.id)
        assert kicked.reason == "Warden script new_account_gate: account is 1.0 days old (the minimum is 7)"
        logged = await h.fake.wait_for_call("POST", MESSAGES, channel_id=h.log_channel.id)
        assert logged.payload["content"].startswith(f"[new_account_gate] Kicked <@{fresh.id}> (fresh)")
        assert fresh.id not in h.fake.state.guilds[h.guild_id].members


@pytest.mark.slow
async def test_standin_raid_detection_alerts_and_times_out_the_raiders(tmp_path: Path) -> None:
    async with open_harness(tmp_path) as h:
        await h.run("config", options={"log_channel": h.log_channel})
        await upload(h, "raid_detection")
        raiders = [await h.fake.member_join(h.guild, f"raider{n}", account_age_days=1) for n in range(10)]
        alert = await h.fake.wait_for_call("POST", MESSAGES, channel_id=h.log_channel.id)
        assert alert.payload["content"].startswith("[raid_detection] Raid detected: 10 members joined")
        await h.fake.wait_for_call("PATCH", MEMBER, count=10)
        muted = {int(call.path_params["user_id"]) for call in h.fake.calls("PATCH", MEMBER)}
        assert muted == {raider.id for raider in raiders}


@pytest.mark.slow
async def test_standin_link_filter_deletes_a_foreign_link(tmp_path: Path) -> None:
    async with open_harness(tmp_path) as h:
        await upload(h, "link_filter")
        message = await h.send_message("claim it at https://discord-gift.example/nitro")
        await h.fake.wait_for_call("DELETE", MESSAGE, message_id=message.id)
        notice = await h.fake.wait_for_call("POST", MESSAGES, channel_id=h.general.id)
        assert (
            notice.payload["content"]
            == f"<@{h.member.id}>, links to discord-gift.example are not allowed here."
        )


@pytest.mark.slow
async def test_standin_welcome_refuses_to_upload_until_its_channel_is_set(tmp_path: Path) -> None:
    async with open_harness(tmp_path) as h:
        answer = await h.run("upload", attachments=[h.attachment("welcome.luau", example("welcome"))])
        assert "**welcome** was not saved; nothing was saved." in answer.content
        assert "line 27: set WELCOME_CHANNEL_ID at the top of the script" in answer.content


@pytest.mark.slow
async def test_standin_welcome_greets_and_gives_the_starter_role(tmp_path: Path) -> None:
    async with open_harness(tmp_path, start=False) as h:
        starter = h.fake.add_role(h.guild, "Newcomer")
        await h.start_bot()
        await h.run("config", options={"mention_policy": "users"})
        source = example("welcome", WELCOME_CHANNEL_ID=f'"{h.general.id}"', STARTER_ROLE_ID=f'"{starter.id}"')
        await h.upload_script("welcome", source, grant="roles")
        newcomer = await h.fake.member_join(h.guild, "newcomer")
        greeting = await h.fake.wait_for_call("POST", MESSAGES, channel_id=h.general.id)
        assert greeting.payload["content"].startswith(f"Welcome to the server, <@{newcomer.id}>!")
        assert greeting.payload["allowed_mentions"]["parse"] == ["users"]  # the mention pings
        await h.fake.wait_for_call("PUT", MEMBER_ROLE, user_id=newcomer.id, role_id=starter.id)
        assert starter.id in newcomer.role_ids
        await h.fake.member_leave(newcomer)
        goodbye = await h.fake.wait_for_call("POST", MESSAGES, channel_id=h.general.id, count=2)
        assert goodbye.payload["content"] == "newcomer has left the server."


@pytest.mark.slow
async def test_standin_reaction_roles_add_and_remove_the_role(tmp_path: Path) -> None:
    async with open_harness(tmp_path, start=False) as h:
        gamer = h.fake.add_role(h.guild, "Gamer")
        await h.start_bot()
        roles_message = await h.send_message("React with 🎮 to get the Gamer role", author=h.admin)
        source = example(
            "reaction_roles",
            ROLES_MESSAGE_ID=f'"{roles_message.id}"',
            ROLE_FOR_EMOJI=f'{{ ["🎮"] = "{gamer.id}" }}',
        )
        await h.upload_script("reaction_roles", source, grant=header_grant("reaction_roles"))
        await h.fake.add_reaction(roles_message, h.member, "🎮")
        added = await h.fake.wait_for_call("PUT", MEMBER_ROLE, user_id=h.member.id, role_id=gamer.id)
        assert added.reason == "Warden script reaction_roles: reaction role"
        assert gamer.id in h.member.role_ids
        await h.fake.remove_reaction(roles_message, h.member, "🎮")
        await h.fake.wait_for_call("DELETE", MEMBER_ROLE, user_id=h.member.id, role_id=gamer.id)
        assert gamer.id not in h.member.role_ids


@pytest.mark.slow
async def test_standin_mention_guard_stops_a_mass_ping(tmp_path: Path) -> None:
    async with open_harness(tmp_path) as h:
        await h.run("config", options={"log_channel": h.log_channel})
        await upload(h, "mention_guard")
        pings = " ".join(f"<@{someone.id}>" for someone in (h.admin, h.owner, h.admin, h.owner, h.admin))
        message = await h.send_message(f"wake up {pings}")
        await h.fake.wait_for_call("DELETE", MESSAGE, message_id=message.id)
        muted = await h.fake.wait_for_call("PATCH", MEMBER, user_id=h.member.id)
        assert muted.reason == "Warden script mention_guard: 5 mentions in one message"
        logged = await h.fake.wait_for_call("POST", MESSAGES, channel_id=h.log_channel.id)
        assert logged.payload["content"] == (
            f"[mention_guard] Timed out <@{h.member.id}> for 5 mentions in <#{h.general.id}>."
        )


@pytest.mark.slow
async def test_standin_slowmode_warning_notices_delete_themselves(tmp_path: Path) -> None:
    async with open_harness(tmp_path) as h:
        # Short times, so that Warden's deletions and the follow-up come within a second or two.
        source = example(
            "slowmode_warning",
            MEMBER_MAX_MESSAGES="2",
            CHANNEL_MAX_MESSAGES="3",
            COOL_DOWN_SECONDS="1",
            WARNING_SECONDS="1",
        )
        await upload(h, "slowmode_warning", source)
        messages = [await h.send_message(f"hi {n}") for n in range(4)]
        posted = [
            await h.fake.wait_for_call("POST", MESSAGES, channel_id=h.general.id, count=n) for n in (1, 2)
        ]
        warning, notice = sorted(posted, key=lambda call: call.index)
        assert warning.payload["content"] == f"<@{h.member.id}>, {SLOW_DOWN}"
        assert int(warning.payload["message_reference"]["message_id"]) == messages[2].id
        assert (
            notice.payload["content"] == "This channel is very busy: please slow down for the next 1 seconds."
        )
        follow_up = await h.fake.wait_for_call("POST", MESSAGES, channel_id=h.general.id, count=3)
        assert follow_up.payload["content"] == COOLED_DOWN
        for call in (warning, notice, follow_up):
            message_id = call.response["id"]
            await h.fake.wait_for_call("DELETE", MESSAGE, message_id=message_id, timeout=15)
            assert h.fake.message(int(message_id)).deleted
        assert not any(message.deleted for message in messages)  # the members' messages stay
