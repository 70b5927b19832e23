"""The ``/script`` command group: server admins manage their guild's scripts from Discord.

One guild-only group, shown by default to members with Manage Server only. Server settings can
override that default, so :meth:`ScriptCommands.interaction_check` checks the permission on every
use too. Answers are ephemeral. Whatever may take longer than Discord's 3-second window (a
download, a script load or dry run in the sandbox, a storage write followed by a VM swap) is deferred
first. Failures become ephemeral sentences (:func:`cogs.script_views.answer_failure`), never a
traceback or "The application did not respond".

Saving goes through one path (:meth:`ScriptCommands._check_and_save`) for uploads, modal edits and
rollbacks: the name rules, the size quota, a load of the script in a fresh sandbox (Luau syntax and
top-level errors, with the line), then the write, then :meth:`WardenBot.scripts_changed`. A script
that fails a check is not saved, so the version already running keeps running.
"""

from __future__ import annotations

import datetime
import logging
import re
from pathlib import PurePath
from typing import TYPE_CHECKING, Any, Literal

import discord
from discord import app_commands
from discord.ext import commands

from bot.actions import GRANTABLE_CAPABILITIES
from bot.storage import ScriptNotFound, ScriptRecord, StorageError
from cogs.events import user_table
from cogs.script_views import (
    MODAL_TEXT_LIMIT,
    CommandRefused,
    ConfirmDelete,
    EditSource,
    answer_failure,
    code_block,
    defer,
    describe_capabilities,
    describe_config,
    describe_dry_run,
    describe_error,
    describe_events,
    describe_history,
    describe_kv_keys,
    describe_kv_value,
    describe_run_log,
    describe_script_list,
    describe_stats,
    respond,
    text_file,
)
from lua_runtime.dry_run import DryRun
from lua_runtime.events import EVENT_NAMES, sample_payload
from lua_runtime.guild_vm import ScriptSource
from lua_runtime.pool import WorkerCrashed

if TYPE_CHECKING:
    from bot.bot import WardenBot

log = logging.getLogger(__name__)

#: File name endings an upload may have.
SCRIPT_SUFFIXES = (".lua", ".luau")
#: A script this short (in characters) is shown in a code block; longer ones come as a file.
INLINE_SOURCE_LIMIT = 1800
#: Run-log entries ``/script logs`` shows.
LOG_LINES = 20
#: Keys ``/script kv list`` shows.
KV_LIST_LIMIT = 50
#: Autocomplete offers at most this many choices (Discord's limit).
AUTOCOMPLETE_LIMIT = 25
_CAPABILITY_SEPARATORS = re.compile(r"[\s,]+")
_EVENTS_WITH_CONTENT = frozenset({"message", "message_edit", "message_delete"})


def parse_capabilities(text: str) -> frozenset[str]:
    """``"delete, timeout"`` as a set of capability names; unknown names are refused with the list."""
    names = frozenset(name.lower() for name in _CAPABILITY_SEPARATORS.split(text.strip()) if name)
    unknown = sorted(names - GRANTABLE_CAPABILITIES.keys())
    if unknown or not names:
        known = ", ".join(f"`{name}` ({what})" for name, what in GRANTABLE_CAPABILITIES.items())
        given = f"Unknown capability {', '.join(f'`{n}`' for n in unknown)}. " if unknown else ""
        raise CommandRefused(f"{given}Capabilities are: {known}. Separate several with commas.")
    return names


def _took_worker_down(exc: WorkerCrashed, name: str, source: str, outcome: str) -> Exception:
    """What to tell the admin when checking or testing ``source`` cost its worker: the supervisor
    killed it past its deadline (a source that stalls the compiler, a call stuck in C), or it died
    (out of memory). A worker another server took down is not this script's fault: ``exc`` as is."""
    if not exc.caused_here:
        return exc
    size = len(source.encode("utf-8", "surrogatepass"))
    what = "took too long to compile" if exc.overran else "made its worker fail"
    return CommandRefused(f"**{name}** {outcome}: this script {what} ({size} bytes). Simplify or split it.")


def dry_run_payload(
    event: str, guild_id: int, channel_id: int | None, content: str | None, author: discord.Member | None
) -> dict[str, Any]:
    """The sample payload of ``event``, in this guild and channel, with the admin's content and author."""
    payload = sample_payload(event)
    if "guild_id" in payload:
        payload["guild_id"] = str(guild_id)
    if "channel_id" in payload and channel_id is not None:
        payload["channel_id"] = str(channel_id)
    if content is not None:
        if event not in _EVENTS_WITH_CONTENT:
            raise CommandRefused(f"`content` applies to message events only, not `{event}`.")
        payload["content"] = content
    if author is not None:
        table = user_table(author, datetime.datetime.now(datetime.UTC))
        for key in ("author", "member"):
            if key in payload:
                payload[key] = table
        if "user_id" in payload:
            payload["user_id"] = table["id"]
    return payload


def server_of(interaction: discord.Interaction) -> int:
    """The id of the server the command was used in (the interaction check refuses any other use)."""
    if interaction.guild_id is None:
        raise app_commands.NoPrivateMessage()
    return interaction.guild_id


class ScriptCommands(commands.Cog):
    """``/script ...``: upload, edit, inspect, test and configure a guild's scripts.

    Construction does no I/O (``python -m bot sync`` builds this cog on a bare ``commands.Bot`` only
    to publish the command shapes); the commands themselves need a :class:`WardenBot`.
    """

    script = app_commands.Group(
        name="script",
        description="Manage this server's Warden scripts",
        guild_only=True,
        # ``guild_only`` sets the deprecated dm_permission; contexts is what Discord reads now.
        allowed_contexts=app_commands.AppCommandContext(guild=True, dm_channel=False, private_channel=False),
        default_permissions=discord.Permissions(manage_guild=True),
    )
    kv = app_commands.Group(
        name="kv", description="Look at and clean this server's script data", parent=script
    )

    def __init__(self, bot: WardenBot) -> None:
        self.bot = bot

    # --- checks and errors ----------------------------------------------------------------------

    async def interaction_check(self, interaction: discord.Interaction) -> bool:
        """Manage Server, whatever the server's command permission settings say."""
        if interaction.guild_id is None:
            raise app_commands.NoPrivateMessage()
        if not interaction.permissions.manage_guild:
            raise app_commands.MissingPermissions(["manage_guild"])
        return True

    async def cog_app_command_error(
        self, interaction: discord.Interaction, error: app_commands.AppCommandError
    ) -> None:
        await answer_failure(interaction, error)

    # --- autocomplete ---------------------------------------------------------------------------

    async def script_names(
        self, interaction: discord.Interaction, current: str
    ) -> list[app_commands.Choice[str]]:
        """The guild's script names that contain what the admin typed."""
        if interaction.guild_id is None or not interaction.permissions.manage_guild:
            return []
        typed = current.lower()
        records = await self.bot.storage.list_scripts(interaction.guild_id)
        names = [record.name for record in records if typed in record.name]
        return [app_commands.Choice(name=name, value=name) for name in names[:AUTOCOMPLETE_LIMIT]]

    async def capability_names(
        self, interaction: discord.Interaction, current: str
    ) -> list[app_commands.Choice[str]]:
        """Completes the last name of a comma-separated list of capabilities."""
        done, _, last = current.rpartition(",")
        chosen = [name.strip().lower() for name in done.split(",") if name.strip()]
        prefix = "".join(f"{name}, " for name in chosen)
        choices = []
        for name, what in GRANTABLE_CAPABILITIES.items():
            if name.startswith(last.strip().lower()) and name not in chosen:
                value = prefix + name
                choices.append(app_commands.Choice(name=f"{value} ({what})"[:100], value=value))
        return choices

    # --- helpers --------------------------------------------------------------------------------

    async def _require_script(self, guild_id: int, name: str) -> ScriptRecord:
        record = await self.bot.storage.get_script(guild_id, name)
        if record is None:
            raise ScriptNotFound(name)
        return record

    async def _load(self, guild_id: int, name: str, source: str) -> DryRun:
        """Check ``source`` as an upload: translated, compiled and its top level run in a fresh
        sandbox, on the guild's VM worker (an upload is guest-controlled work: it never runs in
        the bot's process). Raises :class:`CommandRefused` when checking it took a worker down."""
        try:
            return await self.bot.pool.load_script(guild_id, ScriptSource(name, source))
        except WorkerCrashed as exc:
            raise _took_worker_down(exc, name, source, "was not saved") from None
        except ValueError as exc:  # the check refused the request itself (it ran out of memory)
            raise CommandRefused(f"**{name}** was not saved: {exc}.") from None

    async def _check_and_save(
        self,
        interaction: discord.Interaction,
        name: str,
        source: str,
        capabilities: frozenset[str] | None,
        replacing: bool,
    ) -> tuple[ScriptRecord, list[str]]:
        """Validate ``source`` in a fresh sandbox, save it as ``name``'s next version, swap the VM.

        Returns the saved record and the script's top-level print output. Raises
        :class:`CommandRefused` (with the line of the error and that line of source) when the script
        does not load; nothing is saved then. ``capabilities`` None keeps the script's grants;
        ``replacing`` says whether a version of the script is already running (for the refusal).
        """
        guild_id = server_of(interaction)
        limits = self.bot.settings.limits
        size = len(source.encode("utf-8"))
        if size > limits.max_script_bytes:
            raise CommandRefused(
                f"**{name}** is {size} bytes; the limit is {limits.max_script_bytes} bytes. Trim or split it."
            )
        loaded = await self._load(guild_id, name, source)
        if loaded.error is not None:
            kept = "the version already running keeps running" if replacing else "nothing was saved"
            raise CommandRefused(
                f"**{name}** was not saved; {kept}.\n" + describe_error(loaded.error, source)
            )
        record = await self.bot.storage.save_script(
            guild_id, name, source, interaction.user.id, loaded.handled_events, capabilities
        )
        await self.bot.scripts_changed(guild_id)
        return record, loaded.output

    def _saved_text(self, record: ScriptRecord, output: list[str], created: bool) -> str:
        lines = [
            f"{'Created' if created else 'Saved'} **{record.name}** version {record.version}; "
            f"it handles {describe_events(record.events)}.",
            f"Granted: {describe_capabilities(record.capabilities)}.",
        ]
        if not record.events:
            lines.append(
                "It returns no handlers, so it will never run: return a table such as `{ message = ... }`."
            )
        if not record.enabled:
            lines.append(f"It is disabled: `/script enable {record.name}` runs it.")
        if output:
            lines.append("Its top level printed:\n" + code_block("\n".join(output)))
        return "\n".join(lines)

    # --- saving scripts -------------------------------------------------------------------------

    @script.command(name="upload", description="Add or replace a script from a .lua or .luau file")
    @app_commands.describe(
        file="The script, a .lua or .luau file in UTF-8",
        name="The script's name (default: the file's name): a-z, 0-9, _ and -",
        grant="Capabilities to grant, comma-separated: delete, timeout, kick, ban, roles",
    )
    @app_commands.autocomplete(name=script_names, grant=capability_names)
    async def upload(
        self,
        interaction: discord.Interaction,
        file: discord.Attachment,
        name: str | None = None,
        grant: str | None = None,
    ) -> None:
        guild_id = server_of(interaction)
        limits = self.bot.settings.limits
        suffix = PurePath(file.filename).suffix.lower()
        if suffix not in SCRIPT_SUFFIXES:
            raise CommandRefused(f"`{file.filename}` is not a script: upload a `.lua` or `.luau` file.")
        if file.size > limits.max_script_bytes:
            raise CommandRefused(
                f"`{file.filename}` is {file.size} bytes; the limit is {limits.max_script_bytes} bytes."
            )
        granted = parse_capabilities(grant) if grant else frozenset()
        script_name = (name or PurePath(file.filename).stem).strip().lower()
        await defer(interaction)
        try:
            existing = await self.bot.storage.get_script(guild_id, script_name)
        except StorageError as exc:
            hint = "" if name else " Pick one with the `name` option."
            raise CommandRefused(f"{exc}.{hint}") from None
        try:
            data = await file.read()
        except discord.HTTPException as exc:
            log.warning("guild %s: downloading %s failed: %s", guild_id, file.filename, exc)
            raise CommandRefused(f"Discord did not hand over `{file.filename}`; upload it again.") from None
        try:
            source = data.decode("utf-8-sig")
        except UnicodeDecodeError as exc:
            line = data[: exc.start].count(b"\n") + 1
            raise CommandRefused(
                f"`{file.filename}` is not UTF-8 text (a byte on line {line} is invalid): "
                "save it as UTF-8 and upload it again."
            ) from None
        capabilities = None
        if granted:
            capabilities = granted | frozenset(existing.capabilities if existing else ())
        record, output = await self._check_and_save(
            interaction, script_name, source, capabilities, replacing=existing is not None
        )
        await respond(interaction, self._saved_text(record, output, created=existing is None))

    @script.command(name="edit", description="Edit a script in a text box (scripts up to 4000 characters)")
    @app_commands.describe(name="The script to edit")
    @app_commands.autocomplete(name=script_names)
    async def edit(self, interaction: discord.Interaction, name: str) -> None:
        guild_id = server_of(interaction)
        # A modal must be the first answer, so this read cannot be deferred; it is one indexed row.
        record = await self._require_script(guild_id, name)
        if len(record.source) > MODAL_TEXT_LIMIT:
            raise CommandRefused(
                f"**{name}** is {len(record.source)} characters; Discord's text box holds "
                f"{MODAL_TEXT_LIMIT}. Edit the file and use `/script upload` instead."
            )

        async def save(submitted: discord.Interaction, source: str) -> None:
            await defer(submitted)
            await self._require_script(guild_id, name)
            saved, output = await self._check_and_save(submitted, name, source, None, replacing=True)
            await respond(submitted, self._saved_text(saved, output, created=False))

        await interaction.response.send_modal(EditSource(name, record.source, save))

    @script.command(name="rollback", description="Make an earlier version of a script current again")
    @app_commands.describe(name="The script", version="The version to restore (see /script history)")
    @app_commands.autocomplete(name=script_names)
    async def rollback(
        self, interaction: discord.Interaction, name: str, version: app_commands.Range[int, 1]
    ) -> None:
        guild_id = server_of(interaction)
        await defer(interaction)
        history = await self.bot.storage.script_history(guild_id, name)
        old = next((v for v in history if v.version == version), None)
        if old is None:
            raise CommandRefused(
                f"**{name}** has versions {', '.join(str(v.version) for v in reversed(history))}; "
                f"there is no version {version}."
            )
        # Limits may have been lowered since that version was saved: check it like an upload.
        loaded = await self._load(guild_id, name, old.source)
        if loaded.error is not None:
            raise CommandRefused(
                f"Version {version} of **{name}** no longer loads, so it was not restored.\n"
                + describe_error(loaded.error, old.source)
            )
        record = await self.bot.storage.rollback(guild_id, name, version)
        await self.bot.scripts_changed(guild_id)
        await respond(
            interaction,
            f"Restored version {version} of **{name}** as version {record.version}; "
            f"it handles {describe_events(record.events)}.",
        )

    # --- looking at scripts ---------------------------------------------------------------------

    @script.command(name="list", description="This server's scripts: state, events, version, last error")
    async def list_scripts(self, interaction: discord.Interaction) -> None:
        guild_id = server_of(interaction)
        records = await self.bot.storage.list_scripts(guild_id)
        entries = await self.bot.storage.recent_run_log(guild_id, limit=200)
        last_errors = {}
        for entry in entries:  # newest first: keep the first error seen for each script
            if entry.kind == "error":
                last_errors.setdefault(entry.script_name, entry)
        limit = self.bot.settings.limits.max_scripts_per_guild
        await respond(interaction, describe_script_list(records, last_errors, limit), filename="scripts.txt")

    @script.command(name="show", description="Show a script's source")
    @app_commands.describe(name="The script", version="An earlier version (default: the current one)")
    @app_commands.autocomplete(name=script_names)
    async def show(
        self, interaction: discord.Interaction, name: str, version: app_commands.Range[int, 1] | None = None
    ) -> None:
        guild_id = server_of(interaction)
        record = await self._require_script(guild_id, name)
        source, shown = record.source, record.version
        if version is not None and version != record.version:
            history = await self.bot.storage.script_history(guild_id, name)
            old = next((v for v in history if v.version == version), None)
            if old is None:
                raise CommandRefused(
                    f"**{name}** has no version {version}; it is at version {record.version}."
                )
            source, shown = old.source, version
        state = "enabled" if record.enabled else "disabled"
        heading = f"**{name}** version {shown} ({state}, current version {record.version})"
        if len(source) <= INLINE_SOURCE_LIMIT:
            await respond(interaction, f"{heading}\n{code_block(source, 'lua')}")
        else:
            await interaction.response.send_message(
                heading, file=text_file(source, f"{name}.luau"), ephemeral=True
            )

    @script.command(name="history", description="A script's versions, newest first")
    @app_commands.describe(name="The script")
    @app_commands.autocomplete(name=script_names)
    async def history(self, interaction: discord.Interaction, name: str) -> None:
        guild_id = server_of(interaction)
        record = await self._require_script(guild_id, name)
        versions = await self.bot.storage.script_history(guild_id, name)
        await respond(interaction, describe_history(versions, record.version), filename=f"{name}-history.txt")

    @script.command(name="logs", description="Recent errors and print output of the scripts")
    @app_commands.describe(name="Only this script (default: all)")
    @app_commands.autocomplete(name=script_names)
    async def logs(self, interaction: discord.Interaction, name: str | None = None) -> None:
        guild_id = server_of(interaction)
        if name is not None:
            await self._require_script(guild_id, name)
        entries = await self.bot.storage.recent_run_log(guild_id, name, limit=LOG_LINES)
        await respond(interaction, describe_run_log(entries, name), filename="logs.txt")

    @script.command(name="test", description="Dry-run a script on a sample event; nothing is executed")
    @app_commands.describe(
        name="The script",
        event="The event to feed it (default: message)",
        content="The message text (message events)",
        author="Who the event comes from (default: a sample member)",
    )
    @app_commands.choices(event=[app_commands.Choice(name=event, value=event) for event in EVENT_NAMES])
    @app_commands.autocomplete(name=script_names)
    async def test(
        self,
        interaction: discord.Interaction,
        name: str,
        event: str = "message",
        content: str | None = None,
        author: discord.Member | None = None,
    ) -> None:
        guild_id = server_of(interaction)
        payload = dry_run_payload(event, guild_id, interaction.channel_id, content, author)
        await defer(interaction)
        record = await self._require_script(guild_id, name)
        try:
            run = await self.bot.pool.dry_run(guild_id, ScriptSource(name, record.source), event, payload)
        except WorkerCrashed as exc:
            raise _took_worker_down(exc, name, record.source, "could not be tested") from None
        await respond(
            interaction,
            describe_dry_run(run, record.source, frozenset(record.capabilities)),
            filename="test.txt",
        )

    @script.command(name="stats", description="Events, errors, time-limit hits and CPU per script")
    async def stats(self, interaction: discord.Interaction) -> None:
        guild_id = server_of(interaction)
        await defer(interaction)
        pool_stats = await self.bot.pool.stats(guild_id)
        await respond(interaction, describe_stats(pool_stats.guilds[0]), filename="stats.txt")

    # --- changing scripts -----------------------------------------------------------------------

    async def _set_enabled(self, interaction: discord.Interaction, name: str, enabled: bool) -> None:
        guild_id = server_of(interaction)
        await defer(interaction)
        before = await self._require_script(guild_id, name)
        record = await self.bot.storage.set_enabled(guild_id, name, enabled)
        await self.bot.scripts_changed(guild_id)
        state = "enabled" if enabled else "disabled"
        already = " (it already was)" if before.enabled == enabled else ""
        detail = f" It handles {describe_events(record.events)}." if enabled else " It no longer runs."
        await respond(interaction, f"**{name}** is {state}{already}.{detail}")

    @script.command(name="enable", description="Run a script again")
    @app_commands.describe(name="The script")
    @app_commands.autocomplete(name=script_names)
    async def enable(self, interaction: discord.Interaction, name: str) -> None:
        await self._set_enabled(interaction, name, True)

    @script.command(name="disable", description="Stop running a script (it is kept)")
    @app_commands.describe(name="The script")
    @app_commands.autocomplete(name=script_names)
    async def disable(self, interaction: discord.Interaction, name: str) -> None:
        await self._set_enabled(interaction, name, False)

    @script.command(name="delete", description="Delete a script and its history (asks first)")
    @app_commands.describe(name="The script")
    @app_commands.autocomplete(name=script_names)
    async def delete(self, interaction: discord.Interaction, name: str) -> None:
        guild_id = server_of(interaction)
        record = await self._require_script(guild_id, name)

        async def delete_script() -> str:
            if not await self.bot.storage.delete_script(guild_id, name):
                return f"**{name}** was already gone."
            await self.bot.scripts_changed(guild_id)
            return f"Deleted **{name}** and its {record.version} version(s)."

        view = ConfirmDelete(interaction.user.id, name, delete_script)
        view.question = interaction
        await respond(
            interaction,
            f"Delete **{name}** and all {record.version} of its versions? This cannot be undone.",
            view=view,
        )

    async def _change_grants(
        self, interaction: discord.Interaction, name: str, capabilities: str, grant: bool
    ) -> None:
        guild_id = server_of(interaction)
        names = parse_capabilities(capabilities)
        await defer(interaction)
        record = await self._require_script(guild_id, name)
        current = frozenset(record.capabilities)
        wanted = current | names if grant else current - names
        record = await self.bot.storage.set_capabilities(guild_id, name, wanted)
        await self.bot.scripts_changed(guild_id)
        await respond(interaction, f"**{name}** is granted: {describe_capabilities(record.capabilities)}.")

    @script.command(name="grant", description="Let a script delete, time out, kick, ban or change roles")
    @app_commands.describe(
        name="The script", capabilities="Comma-separated: delete, timeout, kick, ban, roles"
    )
    @app_commands.autocomplete(name=script_names, capabilities=capability_names)
    async def grant(self, interaction: discord.Interaction, name: str, capabilities: str) -> None:
        await self._change_grants(interaction, name, capabilities, grant=True)

    @script.command(name="revoke", description="Take capabilities back from a script")
    @app_commands.describe(
        name="The script", capabilities="Comma-separated: delete, timeout, kick, ban, roles"
    )
    @app_commands.autocomplete(name=script_names, capabilities=capability_names)
    async def revoke(self, interaction: discord.Interaction, name: str, capabilities: str) -> None:
        await self._change_grants(interaction, name, capabilities, grant=False)

    # --- server settings ------------------------------------------------------------------------

    @script.command(name="config", description="Error and log channels, mentions, bots; no options: show")
    @app_commands.describe(
        error_channel="Where script errors are posted",
        log_channel="Where scripts' log actions are posted",
        mention_policy="Whom scripts' messages may ping",
        allow_bot_authors="Whether messages from bots reach scripts",
        clear="Unset a channel",
    )
    async def config(
        self,
        interaction: discord.Interaction,
        error_channel: discord.TextChannel | None = None,
        log_channel: discord.TextChannel | None = None,
        mention_policy: Literal["none", "users"] | None = None,
        allow_bot_authors: bool | None = None,
        clear: Literal["error_channel", "log_channel"] | None = None,
    ) -> None:
        guild_id = server_of(interaction)
        changes: dict[str, Any] = {}
        if error_channel is not None:
            changes["error_channel_id"] = error_channel.id
        if log_channel is not None:
            changes["log_channel_id"] = log_channel.id
        if clear is not None:
            if f"{clear}_id" in changes:
                raise CommandRefused(f"Set `{clear}` or clear it, not both.")
            changes[f"{clear}_id"] = None
        if mention_policy is not None:
            changes["mention_policy"] = mention_policy
        if allow_bot_authors is not None:
            changes["allow_bot_authors"] = allow_bot_authors
        if not changes:
            await respond(interaction, describe_config(await self.bot.guild_settings(guild_id)))
            return
        await defer(interaction)
        settings = await self.bot.storage.update_guild_settings(guild_id, **changes)
        self.bot.settings_changed(settings)
        text = describe_config(settings)
        for channel in (error_channel, log_channel):
            if channel is not None and not channel.permissions_for(channel.guild.me).send_messages:
                text += f"\nWarden cannot send messages in {channel.mention}: give it Send Messages there."
        await respond(interaction, text)

    # --- script data (KV) -----------------------------------------------------------------------

    @kv.command(name="list", description="Keys in this server's script data")
    @app_commands.describe(prefix="Only keys that start with this")
    async def kv_list(self, interaction: discord.Interaction, prefix: str = "") -> None:
        guild_id = server_of(interaction)
        await defer(interaction)
        keys = await self.bot.storage.kv_list(guild_id, prefix, KV_LIST_LIMIT)
        await respond(interaction, describe_kv_keys(keys, prefix, KV_LIST_LIMIT), filename="keys.txt")

    @kv.command(name="get", description="The value stored at a key")
    @app_commands.describe(key="The key")
    async def kv_get(self, interaction: discord.Interaction, key: str) -> None:
        guild_id = server_of(interaction)
        await defer(interaction)
        value = await self.bot.storage.kv_get(guild_id, key)
        await respond(interaction, describe_kv_value(key, value), filename="value.txt")

    @kv.command(name="delete", description="Delete a key")
    @app_commands.describe(key="The key")
    async def kv_delete(self, interaction: discord.Interaction, key: str) -> None:
        guild_id = server_of(interaction)
        await defer(interaction)
        deleted = await self.bot.storage.kv_delete(guild_id, key)
        await respond(interaction, f"Deleted `{key}`." if deleted else f"There is no key `{key}`.")


async def setup(bot: WardenBot) -> None:
    await bot.add_cog(ScriptCommands(bot))
