"""The fake Discord works with the real discord.py client: handshake, events, REST, faults, interactions.

Every test runs a real ``commands.Bot`` against :class:`FakeDiscord` on 127.0.0.1 and checks both
sides: what discord.py saw (events, exceptions, its cache) and what the fake recorded.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import hashlib
import io
from collections.abc import Awaitable, Callable
from typing import Any

import aiohttp
import discord
import pytest
from discord import app_commands
from discord.ext import commands

from tests.fakediscord import (
    CallbackType,
    FakeDiscord,
    Intent,
    Permission,
    PermissionOverwrite,
    snowflake_time,
)
from tests.fakediscord.fixtures import GuildScene, bot_intents, fake_discord, fake_guild

# Fixtures are requested by parameter name; importing them here (and exporting them, so linters know
# the import is used) is how this module gets them without a conftest.
__all__ = ["fake_discord", "fake_guild"]

EVENT_TIMEOUT = 5.0


class EditModal(discord.ui.Modal, title="Edit script"):
    source = discord.ui.TextInput(
        label="Source", custom_id="source", style=discord.TextStyle.long, max_length=4000
    )

    async def on_submit(self, interaction: discord.Interaction) -> None:
        await interaction.response.send_message(f"saved {len(self.source.value)} characters", ephemeral=True)


class ConfirmView(discord.ui.View):
    @discord.ui.button(label="Delete", style=discord.ButtonStyle.danger, custom_id="confirm:delete")
    async def delete(self, interaction: discord.Interaction, button: discord.ui.Button) -> None:
        await interaction.response.edit_message(content="Deleted.", view=None)

    @discord.ui.button(label="Keep", style=discord.ButtonStyle.secondary, custom_id="confirm:keep")
    async def keep(self, interaction: discord.Interaction, button: discord.ui.Button) -> None:
        await interaction.response.defer()
        await interaction.edit_original_response(content="Kept.", view=None)


class ScriptGroup(app_commands.Group):
    """A slash command group shaped like Warden's ``/script``."""

    def __init__(self, bot: ScriptBot) -> None:
        super().__init__(name="script", description="Manage this server's scripts")
        self.bot = bot

    @app_commands.command(description="Upload a script file")
    async def upload(self, interaction: discord.Interaction, file: discord.Attachment, name: str) -> None:
        data = await file.read()
        digest = hashlib.sha256(data).hexdigest()[:12]
        await interaction.response.send_message(f"{name}: {len(data)} bytes, sha256 {digest}", ephemeral=True)

    @app_commands.command(description="Run a script")
    async def run(self, interaction: discord.Interaction, name: str) -> None:
        await interaction.response.defer(thinking=True)
        await self.bot.gate.wait()
        await interaction.followup.send(f"ran {name}")
        await interaction.followup.send(f"log of {name}")
        await interaction.edit_original_response(content=f"finished {name}")

    @run.autocomplete("name")
    async def run_names(
        self, interaction: discord.Interaction, current: str
    ) -> list[app_commands.Choice[str]]:
        names = ["welcome", "warn-words", "anti-raid"]
        return [app_commands.Choice(name=n, value=n) for n in names if n.startswith(current)]

    @app_commands.command(description="Answer when the test says so")
    async def late(self, interaction: discord.Interaction) -> None:
        await self.bot.gate.wait()
        await interaction.response.send_message("here I am")

    @app_commands.command(description="Edit a script in a form")
    async def edit(self, interaction: discord.Interaction) -> None:
        await interaction.response.send_modal(EditModal())

    @app_commands.command(description="Delete a script after confirmation")
    async def delete(self, interaction: discord.Interaction) -> None:
        await interaction.response.send_message("Delete the script?", view=ConfirmView())


class ScriptBot(commands.Bot):
    """A bot with Warden's intents and a ``/script`` group; errors of app commands go to a queue."""

    def __init__(self, intents: discord.Intents | None = None) -> None:
        super().__init__(
            command_prefix=commands.when_mentioned, intents=intents or bot_intents(), guild_ready_timeout=0.05
        )
        self.gate = asyncio.Event()
        self.app_errors: asyncio.Queue[app_commands.AppCommandError] = asyncio.Queue()

    async def setup_hook(self) -> None:
        self.tree.add_command(ScriptGroup(self))

        @self.tree.error
        async def record_error(interaction: discord.Interaction, error: app_commands.AppCommandError) -> None:
            await self.app_errors.put(error)


async def sync_commands(bot: ScriptBot, scene: GuildScene) -> None:
    bot.tree.copy_global_to(guild=discord.Object(id=scene.guild.id))
    await bot.tree.sync(guild=discord.Object(id=scene.guild.id))


# Login, gateway, cache ------------------------------------------------------------------------------


async def test_login_and_guild_create_fill_the_client_cache(
    fake_discord: FakeDiscord, fake_guild: GuildScene
) -> None:
    fake, scene = fake_discord, fake_guild
    thread = fake.add_thread(scene.general, "appeals", owner=scene.alice)
    bot = ScriptBot()
    async with fake.connected(bot):
        guild = bot.get_guild(scene.guild.id)
        assert guild is not None
        assert bot.user is not None and bot.user.id == fake.bot_user.id and bot.user.bot
        assert bot.application_id == fake.application_id
        # The client heartbeats right after HELLO; a finite latency means the ACK came back.
        assert bot.latency < float("inf")
        assert guild.member_count == len(guild.members) == 5 and guild.chunked
        assert [c.name for c in guild.text_channels] == ["general"]
        cached_thread = guild.get_thread(thread.id)
        assert cached_thread is not None and cached_thread.parent_id == scene.general.id
        assert [r.name for r in guild.roles] == ["@everyone", "Moderator", "Warden"]
        assert guild.me.top_role.name == "Warden" and guild.me.guild_permissions.kick_members
        assert guild.owner_id == scene.guild.owner_id
        moderator = guild.get_member(scene.moderator.id)
        assert moderator is not None and moderator.top_role.id == scene.mod_role.id
        bob = guild.get_member(scene.bob.id)
        assert bob is not None and bob.joined_at == scene.bob.joined_at
        assert dt.timedelta(hours=23) < discord.utils.utcnow() - bob.created_at < dt.timedelta(hours=25)
        in_thread = await cached_thread.send("thread reply")

    [identify] = fake.identifies
    assert identify.token == fake.token
    assert identify.intents == bot_intents().value
    login = fake.calls("GET", "/users/@me")[0]
    assert login.headers["Authorization"] == f"Bot {fake.token}"
    assert [c.route for c in fake.calls()][:2] == ["/users/@me", "/oauth2/applications/@me"]
    assert fake.message(in_thread.id).channel_id == thread.id


async def test_ids_are_snowflakes_dated_by_the_clock(fake_discord: FakeDiscord) -> None:
    fake = fake_discord
    guild = fake.add_guild()
    old = fake.add_member(guild, "veteran", account_age_days=3000)
    new = fake.add_member(guild, "fresh", account_age_days=0.5)
    age = fake.clock.now() - snowflake_time(old.id)
    assert dt.timedelta(days=2999) < age < dt.timedelta(days=3001)
    assert fake.clock.now() - snowflake_time(new.id) < dt.timedelta(days=1)
    assert new.id != old.id and isinstance(guild.id, int)


async def test_bot_without_message_content_intent_gets_empty_content(
    fake_discord: FakeDiscord, fake_guild: GuildScene
) -> None:
    fake, scene = fake_discord, fake_guild
    intents = bot_intents()
    intents.message_content = False
    bot = ScriptBot(intents=intents)
    async with fake.connected(bot):
        plain = bot.wait_for("message", timeout=EVENT_TIMEOUT)
        await fake.send_message(scene.general, scene.alice, "secret words")
        assert (await plain).content == ""
        mention = bot.wait_for("message", timeout=EVENT_TIMEOUT)
        await fake.send_message(scene.general, scene.alice, f"{fake.bot_user.mention} help")
        assert (await mention).content.endswith("help")


async def test_disallowed_privileged_intent_stops_the_client() -> None:
    fake = FakeDiscord(privileged_intents=Intent.GUILD_MEMBERS)
    fake.add_guild()
    await fake.start()
    try:
        with pytest.raises(discord.PrivilegedIntentsRequired):
            async with fake.connected(ScriptBot()):
                pass
    finally:
        await fake.stop()
    fake.assert_no_violations()


async def test_gateway_protocol_over_a_raw_websocket(
    fake_discord: FakeDiscord, fake_guild: GuildScene
) -> None:
    fake, scene = fake_discord, fake_guild
    url = fake.gateway_url + "?v=10&encoding=json"
    async with aiohttp.ClientSession() as session:
        async with session.ws_connect(url) as ws:
            hello = await ws.receive_json()
            assert hello["op"] == 10 and hello["d"]["heartbeat_interval"] > 0
            await ws.send_json({"op": 1, "d": None})
            assert (await ws.receive_json())["op"] == 11
            await ws.send_json(
                {"op": 2, "d": {"token": fake.token, "intents": int(Intent.GUILDS), "properties": {}}}
            )
            ready = await ws.receive_json()
            assert (ready["t"], ready["s"], ready["d"]["guilds"]) == (
                "READY",
                1,
                [{"id": str(scene.guild.id), "unavailable": True}],
            )
            created = await ws.receive_json()
            # Without the members intent only the bot's own member comes, but the true member count.
            assert created["t"] == "GUILD_CREATE" and created["s"] == 2
            assert [m["user"]["id"] for m in created["d"]["members"]] == [str(fake.bot_user.id)]
            assert created["d"]["member_count"] == 5
            member_event = {"guild_id": str(scene.guild.id), "user": {"id": "1"}}
            assert await fake.dispatch("GUILD_MEMBER_REMOVE", member_event, guild_id=scene.guild.id) == 0
            assert (
                await fake.dispatch(
                    "GUILD_ROLE_CREATE", {"guild_id": str(scene.guild.id)}, guild_id=scene.guild.id
                )
                == 1
            )
            assert (await ws.receive_json())["s"] == 3
            session_id = ready["d"]["session_id"]

        async with session.ws_connect(url) as ws:
            await ws.receive_json()
            await ws.send_json({"op": 6, "d": {"token": fake.token, "session_id": session_id, "seq": 3}})
            resumed = await ws.receive_json()
            assert (resumed["t"], resumed["s"]) == ("RESUMED", 4)

        for first_frame, close_code in [
            ({"op": 8, "d": {"guild_id": str(scene.guild.id)}}, 4003),
            ({"op": 2, "d": {"token": "not-the-token", "intents": 1, "properties": {}}}, 4004),
        ]:
            async with session.ws_connect(url) as ws:
                await ws.receive_json()
                await ws.send_json(first_frame)
                closing = await ws.receive()
                assert closing.type == aiohttp.WSMsgType.CLOSE and closing.data == close_code


# Dispatches reach discord.py's events -------------------------------------------------------------


async def test_each_dispatch_reaches_its_discord_py_event(
    fake_discord: FakeDiscord, fake_guild: GuildScene
) -> None:
    fake, scene = fake_discord, fake_guild
    bot = ScriptBot()
    async with fake.connected(bot):
        waiter = bot.wait_for("message", timeout=EVENT_TIMEOUT)
        record = await fake.send_message(scene.general, scene.alice, f"hi {scene.bob.mention}")
        message = await waiter
        assert message.id == record.id and message.content.startswith("hi")
        assert isinstance(message.author, discord.Member) and message.author.id == scene.alice.id
        assert [m.id for m in message.mentions] == [scene.bob.id]

        waiter = bot.wait_for("raw_message_edit", timeout=EVENT_TIMEOUT)
        await fake.edit_message(record, content="hello, edited")
        edit: discord.RawMessageUpdateEvent = await waiter
        assert edit.message_id == record.id and edit.message.content == "hello, edited"

        waiter = bot.wait_for("raw_message_delete", timeout=EVENT_TIMEOUT)
        await fake.delete_message(record)
        deletion: discord.RawMessageDeleteEvent = await waiter
        assert (deletion.message_id, deletion.channel_id, deletion.guild_id) == (
            record.id,
            scene.general.id,
            scene.guild.id,
        )

        waiter = bot.wait_for("member_join", timeout=EVENT_TIMEOUT)
        newcomer = await fake.member_join(scene.guild, "newcomer", account_age_days=2)
        joined: discord.Member = await waiter
        assert joined.id == newcomer.id and joined.guild.member_count == 6
        assert dt.timedelta(days=1) < discord.utils.utcnow() - joined.created_at < dt.timedelta(days=3)

        waiter = bot.wait_for("member_remove", timeout=EVENT_TIMEOUT)
        await fake.member_leave(newcomer)
        assert (await waiter).id == newcomer.id

        target = await fake.send_message(scene.general, scene.bob, "react to me")
        waiter = bot.wait_for("raw_reaction_add", timeout=EVENT_TIMEOUT)
        await fake.add_reaction(target, scene.alice, "👍")
        added: discord.RawReactionActionEvent = await waiter
        assert (added.message_id, added.user_id, str(added.emoji)) == (target.id, scene.alice.id, "👍")
        assert added.member is not None and added.member.name == "alice"

        waiter = bot.wait_for("raw_reaction_remove", timeout=EVENT_TIMEOUT)
        await fake.remove_reaction(target, scene.alice, "👍")
        removed: discord.RawReactionActionEvent = await waiter
        assert (removed.message_id, removed.user_id, str(removed.emoji)) == (target.id, scene.alice.id, "👍")


# The bot's REST calls are recorded and change the fake's state -----------------------------------


async def test_messages_and_reactions_by_the_bot_are_recorded(
    fake_discord: FakeDiscord, fake_guild: GuildScene
) -> None:
    fake, scene = fake_discord, fake_guild
    bot = ScriptBot()
    async with fake.connected(bot):
        channel = bot.get_channel(scene.general.id)
        assert isinstance(channel, discord.TextChannel)
        own = bot.wait_for("message", check=lambda m: m.author == bot.user, timeout=EVENT_TIMEOUT)
        quiet = await channel.send(
            f"{scene.alice.mention} read the rules", allowed_mentions=discord.AllowedMentions.none()
        )
        assert (await own).id == quiet.id
        loud = await channel.send(
            f"{scene.alice.mention} {scene.bob.mention}",
            allowed_mentions=discord.AllowedMentions(users=[discord.Object(scene.alice.id)]),
        )
        with_file = await channel.send(
            "log attached", file=discord.File(io.BytesIO(b"line 1\n"), filename="run.log")
        )

        theirs = await fake.send_message(scene.general, scene.alice, "spam spam")
        message = await channel.fetch_message(theirs.id)
        await message.add_reaction("⚠️")
        await message.delete()
        downloaded = await with_file.attachments[0].read()

    sends = fake.calls("POST", "/channels/{channel_id}/messages", channel_id=scene.general.id)
    assert [c.status for c in sends] == [200, 200, 200]
    assert sends[0].payload["allowed_mentions"] == {"parse": []}
    assert fake.message(quiet.id).mention_user_ids == []
    assert fake.message(loud.id).mention_user_ids == [scene.alice.id]
    assert sends[2].json is None and sends[2].payload["content"] == "log attached"
    assert [(f.filename, f.data) for f in sends[2].files] == [("run.log", b"line 1\n")]
    assert downloaded == b"line 1\n"
    [reaction] = fake.calls("PUT", "/channels/{channel_id}/messages/{message_id}/reactions/{emoji}/@me")
    assert reaction.path_params["emoji"] == "⚠️" and reaction.status == 204
    assert fake.message(theirs.id).deleted and fake.message(theirs.id).reactions == {"⚠️": [fake.bot_user.id]}
    assert [m.id for m in fake.messages_in(scene.general)] == [quiet.id, loud.id, with_file.id]


async def test_wait_for_call_awaits_calls_the_bot_makes_on_its_own(
    fake_discord: FakeDiscord, fake_guild: GuildScene
) -> None:
    fake, scene = fake_discord, fake_guild
    bot = ScriptBot()

    async def echo(message: discord.Message) -> None:
        if message.author != bot.user:
            await message.channel.send(f"echo: {message.content}")

    bot.add_listener(echo, "on_message")
    route = "/channels/{channel_id}/messages"
    async with fake.connected(bot):
        mark = fake.mark()
        await fake.send_message(scene.general, scene.alice, "one")
        await fake.send_message(scene.general, scene.alice, "two")
        second = await fake.wait_for_call("POST", route, since=mark, count=2, channel_id=scene.general.id)
        with pytest.raises(TimeoutError, match="call #1 to DELETE"):
            await fake.wait_for_call("DELETE", route + "/{message_id}", since=mark, timeout=0.05)
    echoes = fake.calls("POST", route, channel_id=scene.general.id)
    assert second in echoes and {c.payload["content"] for c in echoes} == {"echo: one", "echo: two"}


async def test_moderation_calls_carry_bodies_and_audit_reasons(
    fake_discord: FakeDiscord, fake_guild: GuildScene
) -> None:
    fake, scene = fake_discord, fake_guild
    helper = fake.add_role(scene.guild, "Helper")
    bot = ScriptBot()
    async with fake.connected(bot):
        guild = bot.get_guild(scene.guild.id)
        assert guild is not None
        alice, bob, moderator = (guild.get_member(m.id) for m in (scene.alice, scene.bob, scene.moderator))
        assert alice is not None and bob is not None and moderator is not None

        updated = bot.wait_for("member_update", timeout=EVENT_TIMEOUT)
        until = discord.utils.utcnow() + dt.timedelta(minutes=10)
        await alice.timeout(until, reason="3 avertissements : spam / liens")
        await updated
        assert alice.is_timed_out()

        updated = bot.wait_for("member_update", timeout=EVENT_TIMEOUT)
        await moderator.add_roles(helper, reason="trusted")
        await updated
        assert helper.id in [r.id for r in moderator.roles]

        removed = bot.wait_for("member_remove", timeout=EVENT_TIMEOUT)
        await bob.kick(reason="account too new")
        await removed
        assert guild.get_member(scene.bob.id) is None
        await guild.ban(discord.Object(scene.alice.id), reason="raid", delete_message_seconds=3600)

    [timeout] = fake.calls("PATCH", "/guilds/{guild_id}/members/{user_id}", user_id=scene.alice.id)
    assert timeout.reason == "3 avertissements : spam / liens"
    assert timeout.headers["X-Audit-Log-Reason"] != timeout.reason  # sent URL-encoded
    assert dt.datetime.fromisoformat(timeout.json["communication_disabled_until"]) == until
    assert scene.alice.communication_disabled_until == until
    [role] = fake.calls("PUT", "/guilds/{guild_id}/members/{user_id}/roles/{role_id}")
    assert (role.path_params["user_id"], role.path_params["role_id"], role.reason) == (
        str(scene.moderator.id),
        str(helper.id),
        "trusted",
    )
    [kick] = fake.calls("DELETE", "/guilds/{guild_id}/members/{user_id}")
    assert kick.reason == "account too new" and scene.bob.id not in scene.guild.members
    [ban] = fake.calls("PUT", "/guilds/{guild_id}/bans/{user_id}")
    assert ban.query["delete_message_seconds"] == "3600" and ban.reason == "raid"
    assert scene.guild.bans == {scene.alice.id: "raid"} and scene.alice.id not in scene.guild.members


# Discord's permission checks and unknown ids --------------------------------------------------------


async def test_role_hierarchy_and_missing_permissions_answer_403(
    fake_discord: FakeDiscord, fake_guild: GuildScene
) -> None:
    fake, scene = fake_discord, fake_guild
    boss_role = fake.add_role(scene.guild, "Boss", position=scene.guild.bot_role.position + 1)
    boss = fake.add_member(scene.guild, "boss", roles=[boss_role])
    admin = fake.add_member(
        scene.guild,
        "admin",
        roles=[fake.add_role(scene.guild, "Admin", permissions=Permission.ADMINISTRATOR)],
    )
    locked = fake.add_channel(
        scene.guild,
        "announcements",
        overwrites=[PermissionOverwrite(id=scene.guild.id, type=0, deny=Permission.SEND_MESSAGES)],
    )
    weak = fake.add_guild(
        "Weak bot",
        bot_permissions=Permission.VIEW_CHANNEL | Permission.SEND_MESSAGES,
        everyone_permissions=Permission.VIEW_CHANNEL | Permission.READ_MESSAGE_HISTORY,
    )
    weak_general = fake.add_channel(weak, "general")
    victim = fake.add_member(weak, "victim")
    bot = ScriptBot()
    async with fake.connected(bot):
        guild = bot.get_guild(scene.guild.id)
        weak_guild = bot.get_guild(weak.id)
        assert guild is not None and weak_guild is not None
        theirs = await fake.send_message(weak_general, victim, "hi")
        message = await bot.get_channel(weak_general.id).fetch_message(theirs.id)
        refusals = [
            lambda: guild.get_member(scene.guild.owner_id).kick(),
            lambda: guild.get_member(boss.id).ban(),
            lambda: guild.get_member(admin.id).timeout(dt.timedelta(minutes=1)),
            lambda: guild.get_member(scene.alice.id).add_roles(boss_role),
            lambda: bot.get_channel(locked.id).send("hello"),
            lambda: weak_guild.get_member(victim.id).kick(),
            lambda: weak_guild.get_member(victim.id).timeout(dt.timedelta(minutes=1)),
            lambda: message.add_reaction("👍"),
            lambda: message.delete(),
        ]
        for refusal in refusals:
            with pytest.raises(discord.Forbidden) as raised:
                await refusal()
            assert (raised.value.status, raised.value.code, raised.value.text) == (
                403,
                50013,
                "Missing Permissions",
            )
    assert boss.id in scene.guild.members and not fake.message(theirs.id).deleted
    assert fake.message(theirs.id).reactions == {}


async def test_unknown_ids_answer_404_with_discords_codes(
    fake_discord: FakeDiscord, fake_guild: GuildScene
) -> None:
    fake, scene = fake_discord, fake_guild
    bot = ScriptBot()
    async with fake.connected(bot):
        guild = bot.get_guild(scene.guild.id)
        channel = bot.get_channel(scene.general.id)
        missing = 1_000_000_000_000_000_000
        lookups = [
            (lambda: bot.fetch_channel(missing), 10003),
            (lambda: channel.fetch_message(missing), 10008),
            (lambda: guild.fetch_member(missing), 10007),
            (lambda: bot.fetch_guild(missing), 10004),
            (lambda: guild.get_member(scene.alice.id).add_roles(discord.Object(missing)), 10011),
        ]
        for lookup, code in lookups:
            with pytest.raises(discord.NotFound) as raised:
                await lookup()
            assert raised.value.code == code


# Fault injection --------------------------------------------------------------------------------


async def test_injected_faults_surface_as_discord_py_exceptions(
    fake_discord: FakeDiscord, fake_guild: GuildScene
) -> None:
    fake, scene = fake_discord, fake_guild
    send = "/channels/{channel_id}/messages"
    bot = ScriptBot()
    async with fake.connected(bot):
        channel = bot.get_channel(scene.general.id)
        member = bot.get_guild(scene.guild.id).get_member(scene.alice.id)

        fake.fail_next("DELETE", "/guilds/{guild_id}/members/{user_id}", status=403)
        with pytest.raises(discord.Forbidden) as forbidden:
            await member.kick()
        assert forbidden.value.code == 50013

        sent = await channel.send("to delete")
        fake.fail_next("DELETE", "/channels/{channel_id}/messages/{message_id}", status=404)
        with pytest.raises(discord.NotFound) as not_found:
            await sent.delete()
        assert not_found.value.code == 10008

        fake.fail_next("POST", send, status=503)
        with pytest.raises(discord.DiscordServerError):
            await channel.send("never")

        before = fake.mark()
        # One send meets all three; discord.py sleeps 1 s after a 500 on its first try (longer later).
        fake.fail_next("POST", send, status=500)
        fake.fail_next("POST", send, status=429, retry_after=0.05)
        fake.fail_next("POST", send, status=429, retry_after=0.05, is_global=True)
        await channel.send("after retries")

    assert scene.alice.id in scene.guild.members
    retried = fake.calls("POST", send)[-4:]
    assert [c.index >= before for c in retried] == [True] * 4
    assert [c.status for c in retried] == [500, 429, 429, 200]
    assert retried[1].response == {
        "message": "You are being rate limited.",
        "retry_after": 0.05,
        "global": False,
        "code": 0,
    }
    assert retried[2].response["global"] is True


# Validation violations ------------------------------------------------------------------------------


async def test_malformed_calls_answer_400_and_are_violations(
    fake_discord: FakeDiscord, fake_guild: GuildScene
) -> None:
    fake, scene = fake_discord, fake_guild
    bot = ScriptBot()
    async with fake.connected(bot):
        # A Route reads Route.BASE when it is built, so build it once connected() has pointed it at the fake.
        route = discord.http.Route("POST", "/channels/{channel_id}/messages", channel_id=scene.general.id)
        channel = bot.get_channel(scene.general.id)
        mentions_both = {"parse": ["users"], "users": [str(scene.alice.id)]}
        malformed: list[tuple[Callable[[], Awaitable[Any]], int, str]] = [
            (lambda: channel.send("x" * 2001), 50035, "content: Must be 2000 or fewer in length."),
            (
                lambda: channel.send(embed=discord.Embed(description="y" * 4097)),
                50035,
                "embeds.0.description",
            ),
            (lambda: bot.http.request(route, json={"content": ""}), 50006, "Cannot send an empty message"),
            (
                lambda: bot.http.request(route, json={"content": "hi", "allowed_mentions": mentions_both}),
                50035,
                "mutually exclusive",
            ),
            (
                lambda: bot.http.request(
                    route, json={"content": "hi", "allowed_mentions": {"parse": ["members"]}}
                ),
                50035,
                "one of",
            ),
        ]
        for call, code, text in malformed:
            with fake.expect_violations(code) as caught, pytest.raises(discord.HTTPException) as raised:
                await call()
            assert raised.value.status == 400 and raised.value.code == code
            assert len(caught) == 1 and text in str(caught[0])
    assert fake.messages_in(scene.general) == []


async def test_violations_fail_unless_expected() -> None:
    fake = FakeDiscord()
    await fake.start()
    try:
        with pytest.raises(AssertionError, match="broke none"), fake.expect_violations():
            pass
        async with aiohttp.ClientSession() as session:
            async with session.get(f"{fake.api_base}/users/@me") as unauthenticated:
                assert unauthenticated.status == 401
            async with session.get(f"{fake.api_base}/no/such/route") as unknown:
                assert unknown.status == 404
        with pytest.raises(AssertionError, match="2 time") as raised:
            fake.assert_no_violations()
        assert "401: Unauthorized" in str(raised.value) and "/no/such/route" in str(raised.value)
        with pytest.raises(ValueError, match="not a route the fake serves"):
            fake.calls("POST", "/channels/{channel}/messages")
    finally:
        await fake.stop()


# Interactions -----------------------------------------------------------------------------------------


async def test_slash_command_sync_then_invocation_with_an_attachment(
    fake_discord: FakeDiscord, fake_guild: GuildScene
) -> None:
    fake, scene = fake_discord, fake_guild
    bot = ScriptBot()
    async with fake.connected(bot):
        await bot.tree.sync()
        await sync_commands(bot, scene)
        [global_sync] = fake.calls("PUT", "/applications/{application_id}/commands")
        [guild_sync] = fake.calls("PUT", "/applications/{application_id}/guilds/{guild_id}/commands")
        assert [c["name"] for c in global_sync.json] == ["script"] and global_sync.response[0]["id"].isdigit()
        assert guild_sync.response[0]["guild_id"] == str(scene.guild.id)
        subcommands = {o["name"] for o in fake.commands(scene.guild)[0]["options"]}
        assert subcommands == {"upload", "run", "late", "edit", "delete"}

        source = b"return { message = function(msg) print(msg.content) end }\n"
        upload = fake.add_attachment("greet.luau", source)
        interaction = await fake.invoke_slash(
            scene.guild,
            scene.moderator,
            "script",
            subcommand="upload",
            options={"name": "greet"},
            attachments=[upload],
        )
        response = await interaction.wait_response()
    assert response.type == CallbackType.CHANNEL_MESSAGE and response.ephemeral
    assert response.content == f"greet: {len(source)} bytes, sha256 {hashlib.sha256(source).hexdigest()[:12]}"
    assert interaction.payload["data"]["guild_id"] == str(scene.guild.id)
    assert interaction.original is not None and interaction.original.ephemeral
    assert fake.calls("GET", "/attachments/{attachment_id}/{filename}")[0].status == 200
    with pytest.raises(LookupError, match="not registered"):
        await fake.invoke_slash(scene.guild, scene.alice, "nosuchcommand")


async def test_deferred_response_then_followup_and_edit(
    fake_discord: FakeDiscord, fake_guild: GuildScene
) -> None:
    fake, scene = fake_discord, fake_guild
    bot = ScriptBot()
    async with fake.connected(bot):
        await sync_commands(bot, scene)
        interaction = await fake.invoke_slash(
            scene.guild, scene.alice, "script", subcommand="run", options={"name": "welcome"}
        )
        deferred = await interaction.wait_response()
        assert deferred.type == CallbackType.DEFERRED_CHANNEL_MESSAGE and deferred.deferred
        assert interaction.original is not None and interaction.original.loading
        log_posted = bot.wait_for(
            "message", check=lambda m: m.content == "log of welcome", timeout=EVENT_TIMEOUT
        )
        bot.gate.set()
        first = await interaction.wait_followup(0)
        second = await interaction.wait_followup(1)
        edited = await interaction.wait_original_edit()
        assert (await log_posted).id == second.id
    # The first followup after a deferral fills in the "thinking" message; later ones are new messages.
    assert first is edited is interaction.original and first.webhook_id == fake.application_id
    assert edited.content == "finished welcome" and not edited.loading and not edited.ephemeral
    assert second.id != first.id and second.content == "log of welcome"
    assert fake.calls("POST", "/webhooks/{webhook_id}/{webhook_token}")[0].query["wait"] == "1"


async def test_autocomplete_answers_choices(fake_discord: FakeDiscord, fake_guild: GuildScene) -> None:
    fake, scene = fake_discord, fake_guild
    bot = ScriptBot()
    async with fake.connected(bot):
        await sync_commands(bot, scene)
        interaction = await fake.autocomplete(
            scene.guild, scene.alice, "script", subcommand="run", focused="name", options={"name": "w"}
        )
        response = await interaction.wait_response()
    assert response.type == CallbackType.AUTOCOMPLETE_RESULT
    assert [c["value"] for c in response.choices] == ["welcome", "warn-words"]


async def test_modal_round_trip(fake_discord: FakeDiscord, fake_guild: GuildScene) -> None:
    fake, scene = fake_discord, fake_guild
    bot = ScriptBot()
    async with fake.connected(bot):
        await sync_commands(bot, scene)
        opened = await fake.invoke_slash(scene.guild, scene.moderator, "script", subcommand="edit")
        modal = await opened.wait_response()
        assert (
            modal.type == CallbackType.MODAL
            and modal.modal is not None
            and modal.modal["title"] == "Edit script"
        )
        with pytest.raises(ValueError, match="required"):
            await fake.submit_modal(opened, {})
        submitted = await fake.submit_modal(opened, {"source": "print('hi')"})
        answer = await submitted.wait_response()
    assert answer.content == "saved 11 characters" and answer.ephemeral


async def test_button_clicks_update_the_message(fake_discord: FakeDiscord, fake_guild: GuildScene) -> None:
    fake, scene = fake_discord, fake_guild
    bot = ScriptBot()
    async with fake.connected(bot):
        await sync_commands(bot, scene)
        prompts = []
        for _ in range(2):
            shown = bot.wait_for("message", check=lambda m: m.author == bot.user, timeout=EVENT_TIMEOUT)
            asked = await fake.invoke_slash(scene.guild, scene.moderator, "script", subcommand="delete")
            await asked.wait_response()
            await shown
            assert asked.original is not None and asked.original.content == "Delete the script?"
            prompts.append(asked.original)

        edited = bot.wait_for("raw_message_edit", timeout=EVENT_TIMEOUT)
        deleted = await fake.click_button(prompts[0], scene.moderator, "confirm:delete")
        update = await deleted.wait_response()
        assert (await edited).message.content == "Deleted."

        kept = await fake.click_button(prompts[1], scene.moderator, "confirm:keep")
        deferral = await kept.wait_response()
        await kept.wait_original_edit()
        with pytest.raises(ValueError, match="no component"):
            await fake.click_button(prompts[0], scene.moderator, "confirm:delete")
    assert update.type == CallbackType.UPDATE_MESSAGE
    assert deferral.type == CallbackType.DEFERRED_UPDATE_MESSAGE
    assert [(fake.message(p.id).content, fake.message(p.id).components) for p in prompts] == [
        ("Deleted.", []),
        ("Kept.", []),
    ]


async def test_interaction_response_window(fake_discord: FakeDiscord, fake_guild: GuildScene) -> None:
    fake, scene = fake_discord, fake_guild
    bot = ScriptBot()
    async with fake.connected(bot):
        await sync_commands(bot, scene)

        # A first response after 3 s: 404 Unknown interaction.
        late = await fake.invoke_slash(scene.guild, scene.alice, "script", subcommand="late")
        fake.clock.advance(3.5)
        with fake.expect_violations(10062):
            bot.gate.set()
            error = await asyncio.wait_for(bot.app_errors.get(), EVENT_TIMEOUT)
        assert isinstance(error, app_commands.CommandInvokeError)
        assert isinstance(error.original, discord.NotFound) and error.original.code == 10062
        assert late.callback is None

        # A second response: 400 already acknowledged.
        answered = await fake.invoke_slash(scene.guild, scene.alice, "script", subcommand="late")
        await answered.wait_response()
        url = f"{fake.api_base}/interactions/{answered.id}/{answered.token}/callback"
        async with aiohttp.ClientSession() as session:
            with fake.expect_violations(40060):
                async with session.post(url, json={"type": 4, "data": {"content": "again"}}) as again:
                    assert again.status == 400
                    assert (await again.json())["code"] == 40060

        # A followup after the token's 15 minutes: 401 Invalid Webhook Token.
        bot.gate.clear()
        slow = await fake.invoke_slash(
            scene.guild, scene.alice, "script", subcommand="run", options={"name": "x"}
        )
        await slow.wait_response()
        fake.clock.advance(15 * 60 + 1)
        with fake.expect_violations(50027):
            bot.gate.set()
            expired = await asyncio.wait_for(bot.app_errors.get(), EVENT_TIMEOUT)
        assert isinstance(expired.original, discord.HTTPException) and expired.original.status == 401
        assert slow.followups == []
