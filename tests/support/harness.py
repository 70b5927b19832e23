"""The real Warden bot against the local Discord stand-in, for end-to-end tests.

:func:`open_harness` builds a :class:`~tests.fakediscord.FakeDiscord` with one realistic guild, then
runs the real :class:`~bot.bot.WardenBot` on it with real storage (a SQLite file under the test's
``tmp_path``) and the real VM pool, and hands back a :class:`WardenHarness`::

    async with open_harness(tmp_path) as h:
        await h.upload_script("anti-spam", SOURCE, grant="delete")
        bad = await h.send_message("badword")                 # the regular member posts
        await h.fake.wait_for_call("DELETE", "/channels/{channel_id}/messages/{message_id}")
        answer = await h.run("list")                           # /script list, as the admin
        assert answer.ephemeral and "anti-spam" in answer.content

or, in a test module, the ready-made fixture::

    from tests.support.harness import WardenHarness, warden

    __all__ = ["warden"]  # the fixture, used by name below

    async def test_something(warden: WardenHarness) -> None: ...

More guild state (roles, channels with overwrites, members) must exist before the bot connects:
``open_harness(tmp_path, start=False)``, add it through ``h.fake``, then ``await h.start_bot()``.
The bot can be stopped and started again on the same database (:meth:`WardenHarness.restart`; change
``h.settings`` in between to restart with other limits). At exit the bot, its pool, its database and
the fake are closed, and the test fails if the bot broke one of Discord's rules (a late interaction
answer, an invalid body...) that it did not claim with ``h.fake.expect_violations()``.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from bot.bot import WardenBot
from bot.settings import Settings
from bot.storage import RunLogEntry, Storage, StoredScripts
from lua_runtime.limits import SandboxLimits
from lua_runtime.pool import PoolConfig, VmPool
from tests.fakediscord import (
    CallbackType,
    ChannelRecord,
    FakeDiscord,
    GuildRecord,
    InteractionRecord,
    MemberRecord,
    MessageRecord,
    Permission,
    RoleRecord,
)
from tests.fakediscord.gateway import HEARTBEAT_INTERVAL_MS

#: discord.py waits this long after the last GUILD_CREATE before it is ready (its default is 2 s).
GUILD_READY_TIMEOUT = 0.05
#: How long a helper waits for the bot to answer before failing the test. Generous: the machine is
#: shared, and nothing here is a timing assertion.
ANSWER_TIMEOUT = 15.0
#: Between two reads of the run log while waiting for it to fill.
RUN_LOG_POLL_SECONDS = 0.02


@dataclass
class Answer:
    """The bot's answer to an interaction, whichever way it was sent (direct, deferred, modal)."""

    interaction: InteractionRecord
    #: The first response's type: a message (4), "thinking" then a followup (5), a modal (9)...
    callback_type: CallbackType
    #: The message that carries the answer (None for a modal or an autocomplete).
    message: MessageRecord | None

    @property
    def content(self) -> str:
        return self.message.content if self.message is not None else ""

    @property
    def ephemeral(self) -> bool:
        """Flag 64 on the message the admin sees."""
        return self.message is not None and self.message.ephemeral

    @property
    def files(self) -> dict[str, bytes]:
        """Attached files by name."""
        if self.message is None:
            return {}
        return {attachment.filename: attachment.data for attachment in self.message.attachments}

    @property
    def text(self) -> str:
        """The content followed by every attached text file: what the admin can read in full."""
        parts = [self.content, *(data.decode("utf-8", "replace") for data in self.files.values())]
        return "\n".join(parts)

    def button(self, label: str) -> dict[str, Any]:
        """The button labelled ``label`` on the answer's message."""
        for row in self.message.components if self.message is not None else []:
            for component in row.get("components", []):
                if component.get("type") == 2 and component.get("label") == label:
                    return component
        raise AssertionError(f"no button {label!r} on the answer: {self.content!r}")


@dataclass
class WardenHarness:
    """A guild in the stand-in, the people in it, and the running Warden bot.

    People: ``owner`` (the guild's owner), ``admin`` (Manage Server through the Admin role),
    ``member`` (no special permission). Channels: ``general`` (where commands are used by default),
    ``error_channel`` and ``log_channel`` (not configured: tests set them with ``/script config``).
    The bot's own role sits above every other role, so it may moderate all but the owner.
    """

    fake: FakeDiscord
    tmp_path: Path
    guild: GuildRecord
    owner: MemberRecord
    admin: MemberRecord
    member: MemberRecord
    admin_role: RoleRecord
    general: ChannelRecord
    error_channel: ChannelRecord
    log_channel: ChannelRecord
    settings: Settings
    pool_config: PoolConfig
    _bot: WardenBot | None = None
    _running: contextlib.AsyncExitStack | None = None
    _extra_options: dict[str, Any] = field(default_factory=dict)

    # --- the bot's life ------------------------------------------------------------------------

    @property
    def bot(self) -> WardenBot:
        if self._bot is None:
            raise RuntimeError("the bot is not running: call start_bot() first")
        return self._bot

    @property
    def storage(self) -> Storage:
        return self.bot.storage

    @property
    def guild_id(self) -> int:
        return self.guild.id

    @property
    def database_path(self) -> Path:
        return self.settings.database_path

    async def start_bot(self) -> WardenBot:
        """Open the database, start a pool and a bot on it, and wait until the bot is ready.

        The bot syncs its commands to the test guild (``DEV_GUILD_ID``), as in development.
        """
        if self._running is not None:
            raise RuntimeError("the bot is already running")
        stack = contextlib.AsyncExitStack()
        try:
            limits = self.settings.limits
            # Closed last: the bot's close() closes the pool and storage but not the workers' source.
            scripts = StoredScripts(self.database_path, limits)
            stack.callback(scripts.close)
            pool = VmPool(scripts, limits, self.pool_config)
            storage = await Storage.open(self.database_path, limits)
            bot = WardenBot(
                self.settings, storage, pool, guild_ready_timeout=GUILD_READY_TIMEOUT, **self._extra_options
            )
            # From here on the bot owns the storage and the pool: leaving connected() closes all three.
            await stack.enter_async_context(self.fake.connected(bot))
        except BaseException:
            await stack.aclose()
            raise
        self._bot, self._running = bot, stack
        return bot

    async def stop_bot(self) -> None:
        """Close the bot as SIGTERM would: gateway, then the VM workers, then the database."""
        stack, self._running, self._bot = self._running, None, None
        if stack is not None:
            await stack.aclose()

    async def restart(self) -> WardenBot:
        """Stop the bot and start a new one on the same database."""
        await self.stop_bot()
        return await self.start_bot()

    # --- what members do -----------------------------------------------------------------------

    async def slash(
        self,
        subcommand: str,
        *,
        member: MemberRecord | None = None,
        options: Mapping[str, Any] | None = None,
        attachments: Sequence[Mapping[str, Any]] = (),
        channel: ChannelRecord | None = None,
        command: str = "script",
    ) -> InteractionRecord:
        """``member`` (default: the admin) runs ``/script <subcommand>``; ``"kv get"`` names a subgroup."""
        return await self.fake.invoke_slash(
            self.guild,
            member or self.admin,
            command,
            subcommand=subcommand,
            options=options or {},
            attachments=attachments,
            channel=channel or self.general,
        )

    async def run(
        self,
        subcommand: str,
        *,
        member: MemberRecord | None = None,
        options: Mapping[str, Any] | None = None,
        attachments: Sequence[Mapping[str, Any]] = (),
        channel: ChannelRecord | None = None,
    ) -> Answer:
        """:meth:`slash`, then the bot's answer to it."""
        interaction = await self.slash(
            subcommand, member=member, options=options, attachments=attachments, channel=channel
        )
        return await self.answer(interaction)

    async def answer(self, interaction: InteractionRecord, timeout: float = ANSWER_TIMEOUT) -> Answer:  # noqa: ASYNC109
        """The bot's answer: the response message, or after a deferral its first followup or edit."""
        callback = await interaction.wait_response(timeout)
        message: MessageRecord | None = None
        if callback.type in (CallbackType.CHANNEL_MESSAGE, CallbackType.UPDATE_MESSAGE):
            message = interaction.original
        elif callback.type in (CallbackType.DEFERRED_CHANNEL_MESSAGE, CallbackType.DEFERRED_UPDATE_MESSAGE):

            def filled(record: InteractionRecord) -> MessageRecord | None:
                if record.followups:
                    return record.followups[0]
                return record.original if record.original_edits else None

            message = await interaction.wait_until(filled, timeout=timeout, what="the answer after deferring")
        return Answer(interaction, callback.type, message)

    async def autocomplete(
        self,
        subcommand: str,
        focused: str,
        *,
        options: Mapping[str, Any] | None = None,
        member: MemberRecord | None = None,
    ) -> list[dict[str, Any]]:
        """The choices the bot offers while ``member`` (default: the admin) types option ``focused``."""
        interaction = await self.fake.autocomplete(
            self.guild,
            member or self.admin,
            "script",
            focused=focused,
            subcommand=subcommand,
            options=options or {},
            channel=self.general,
        )
        callback = await interaction.wait_response(ANSWER_TIMEOUT)
        return callback.choices

    async def wait_for_run_log(
        self,
        count: int = 1,
        *,
        script: str | None = None,
        timeout: float = ANSWER_TIMEOUT,  # noqa: ASYNC109
    ) -> list[RunLogEntry]:
        """The guild's run log (newest first) once it holds at least ``count`` entries (of ``script``).

        The bot writes the run log after an event's actions, with no Discord call to wait on, so this
        polls the database until the entries are there.
        """
        try:
            async with asyncio.timeout(timeout):
                while True:
                    entries = await self.storage.recent_run_log(self.guild_id, script, limit=max(count, 50))
                    if len(entries) >= count:
                        return entries
                    await asyncio.sleep(RUN_LOG_POLL_SECONDS)
        except TimeoutError:
            raise TimeoutError(
                f"after {timeout} s the run log still has fewer than {count} entries"
            ) from None

    def attachment(self, filename: str, source: str | bytes) -> dict[str, Any]:
        """A file hosted by the stand-in, to pass as a slash command's attachment."""
        data = source.encode("utf-8") if isinstance(source, str) else source
        return self.fake.add_attachment(filename, data)

    async def upload_script(
        self,
        name: str,
        source: str,
        *,
        grant: str | None = None,
        member: MemberRecord | None = None,
        filename: str | None = None,
    ) -> Answer:
        """Upload ``source`` as script ``name`` through ``/script upload``; fails the test if not saved."""
        options: dict[str, Any] = {"name": name}
        if grant is not None:
            options["grant"] = grant
        file = self.attachment(filename or f"{name}.luau", source)
        answer = await self.run("upload", member=member, options=options, attachments=[file])
        record = await self.storage.get_script(self.guild_id, name)
        if record is None or record.source != source:
            raise AssertionError(f"script {name!r} was not saved; the bot answered: {answer.content!r}")
        return answer

    async def click(self, answer: Answer, label: str, *, member: MemberRecord | None = None) -> Answer:
        """``member`` (default: whoever asked) clicks the button ``label`` under ``answer``."""
        assert answer.message is not None, "the answer has no message to click on"
        button = answer.button(label)
        interaction = await self.fake.click_button(
            answer.message, member or answer.interaction.member, button["custom_id"]
        )
        return await self.answer(interaction)

    async def submit_modal(self, opened: Answer, values: Mapping[str, str]) -> Answer:
        """Submit the modal the bot opened with ``opened``, with the given text input values."""
        interaction = await self.fake.submit_modal(opened.interaction, values)
        return await self.answer(interaction)

    async def send_message(
        self, content: str, *, author: MemberRecord | None = None, channel: ChannelRecord | None = None
    ) -> MessageRecord:
        """``author`` (default: the regular member) posts ``content`` in ``channel`` (default: general)."""
        return await self.fake.send_message(
            channel or self.general, author=author or self.member, content=content
        )


def build_guild(fake: FakeDiscord) -> dict[str, Any]:
    """The test guild: an owner, an admin with Manage Server, a member, and three text channels."""
    guild = fake.add_guild(name="Warden Test Server")
    admin_role = fake.add_role(guild, "Admin", permissions=Permission.MANAGE_GUILD, hoist=True)
    return {
        "guild": guild,
        "owner": guild.members[guild.owner_id],
        "admin_role": admin_role,
        "admin": fake.add_member(guild, "admin", roles=[admin_role], account_age_days=900),
        "member": fake.add_member(guild, "member", account_age_days=365),
        "general": fake.add_channel(guild, "general"),
        "error_channel": fake.add_channel(guild, "warden-errors"),
        "log_channel": fake.add_channel(guild, "warden-log"),
    }


@contextlib.asynccontextmanager
async def open_harness(
    tmp_path: Path,
    *,
    limits: SandboxLimits | None = None,
    pool_config: PoolConfig | None = None,
    start: bool = True,
    heartbeat_interval_ms: int = HEARTBEAT_INTERVAL_MS,
    **bot_options: Any,
) -> AsyncIterator[WardenHarness]:
    """A running stand-in with the test guild and (unless ``start`` is False) a ready Warden bot.

    ``limits`` and ``pool_config`` replace the defaults (one worker thread keeps tests light);
    ``heartbeat_interval_ms`` is the gateway's (HELLO); ``bot_options`` go to :class:`WardenBot`
    (for example ``intents=``).
    """
    fake = FakeDiscord(heartbeat_interval_ms=heartbeat_interval_ms)
    scene = build_guild(fake)
    settings = Settings(
        database_path=tmp_path / "warden.db",
        dev_guild_id=scene["guild"].id,
        vm_workers=1,
        limits=limits or SandboxLimits(),
    )
    harness = WardenHarness(
        fake=fake,
        tmp_path=tmp_path,
        settings=settings,
        pool_config=pool_config or PoolConfig(strategy="threadpool", workers=1),
        _extra_options=dict(bot_options),
        **scene,
    )
    await fake.start()
    try:
        if start:
            await harness.start_bot()
        yield harness
    finally:
        try:
            await harness.stop_bot()
        finally:
            await fake.stop()
    fake.assert_no_violations()


@pytest.fixture
async def warden(tmp_path: Path) -> AsyncIterator[WardenHarness]:
    """A :class:`WardenHarness` with the bot running, for one test."""
    async with open_harness(tmp_path) as harness:
        yield harness


__all__ = ["Answer", "WardenHarness", "build_guild", "open_harness", "warden"]
