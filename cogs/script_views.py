"""What ``/script`` shows and asks: reply helpers, text formatting, the delete confirmation, the edit modal.

Everything here is presentation. :mod:`cogs.scripts` decides what happens; this module turns records
into the text an admin reads, sends it within Discord's limits (a long answer becomes a file rather
than an error), and turns failures into ephemeral answers instead of "The application did not respond".
"""

from __future__ import annotations

import datetime
import io
import json
import logging
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from typing import Any

import discord
from discord import app_commands

from bot.actions import CAPABILITY_FOR_ACTION, GRANTABLE_CAPABILITIES
from bot.storage import GuildSettings, RunLogEntry, ScriptRecord, ScriptVersion, StorageError
from lua_runtime.dry_run import DryRun
from lua_runtime.kv_store import KVError
from lua_runtime.pool import GuildStats, PoolError
from lua_runtime.results import ScriptError

log = logging.getLogger(__name__)

#: Discord's limit on a message's content, in characters.
MESSAGE_LIMIT = 2000
#: Discord's limit on a text input's value: the longest script the edit modal can hold.
MODAL_TEXT_LIMIT = 4000
#: How long a delete confirmation waits for a click, in seconds.
CONFIRM_TIMEOUT_SECONDS = 60.0
#: How long an edit modal waits for its submission (Discord forgets the interaction after 15 minutes).
MODAL_TIMEOUT_SECONDS = 15 * 60.0

_ERROR_TITLES = {
    "syntax": "Syntax error",
    "runtime": "Runtime error",
    "time_limit": "Time limit reached",
    "memory_limit": "Memory limit reached",
    "limit": "Limit reached",
}


class CommandRefused(Exception):
    """A request the admin has to change (a bad file, an unknown capability...). ``str()`` is the answer."""


#: Failures whose message is written for the admin and is shown as it is.
ADMIN_FACING_ERRORS = (CommandRefused, StorageError, KVError, PoolError)


# --- answering ------------------------------------------------------------------------------------


async def respond(
    interaction: discord.Interaction,
    text: str,
    *,
    filename: str = "warden.txt",
    view: discord.ui.View | None = None,
) -> None:
    """Answer ephemerally, whether or not the interaction was deferred.

    Text past Discord's 2000 characters goes out as a file named ``filename``, with its first line
    (the heading) as the message, so a long list or log never fails to send.
    """
    file: discord.File | None = None
    if len(text) > MESSAGE_LIMIT:
        heading = text.split("\n", 1)[0][: MESSAGE_LIMIT - 100]
        file = text_file(text, filename)
        text = f"{heading}\n(The full answer is attached as `{filename}`.)"
    kwargs: dict[str, Any] = {"ephemeral": True}
    if file is not None:
        kwargs["file"] = file
    if view is not None:
        kwargs["view"] = view
    if interaction.response.is_done():
        await interaction.followup.send(text, **kwargs)
    else:
        await interaction.response.send_message(text, **kwargs)


def text_file(text: str, filename: str) -> discord.File:
    return discord.File(io.BytesIO(text.encode("utf-8")), filename=filename)


async def defer(interaction: discord.Interaction) -> None:
    """Acknowledge now (Discord allows 3 s) and answer later: for downloads, loads and writes."""
    if not interaction.response.is_done():
        await interaction.response.defer(ephemeral=True, thinking=True)


def describe_failure(error: BaseException) -> str:
    """The answer for a command that failed; unexpected errors are logged with their traceback."""
    if isinstance(error, app_commands.CommandInvokeError):
        error = error.original
    if isinstance(error, ADMIN_FACING_ERRORS):
        return str(error)
    if isinstance(error, app_commands.MissingPermissions):
        return "You need the **Manage Server** permission to manage Warden scripts."
    if isinstance(error, app_commands.NoPrivateMessage):
        return "Warden scripts belong to a server: use this command in one."
    if isinstance(error, app_commands.CheckFailure):
        return "You cannot use this command here."
    log.error("a /script command failed unexpectedly", exc_info=error)
    return "Something went wrong inside Warden. The error was logged for the bot's operator."


async def answer_failure(interaction: discord.Interaction, error: BaseException) -> None:
    """Tell the admin why their command failed, ephemerally; never raises."""
    text = describe_failure(error)
    try:
        await respond(interaction, text)
    except discord.HTTPException:
        log.exception("could not tell the admin that a command failed: %s", text)


# --- formatting -----------------------------------------------------------------------------------


def fence_safe(text: str) -> str:
    """``text`` that cannot close a Markdown code block early."""
    return text.replace("```", "`\u200b``")


def code_block(text: str, language: str = "") -> str:
    return f"```{language}\n{fence_safe(text)}\n```"


def source_excerpt(source: str, line: int | None, context: int = 1) -> str:
    """The numbered lines around ``line`` (1-based), the offending one marked; empty when out of range."""
    lines = source.splitlines()
    if line is None or not 1 <= line <= len(lines):
        return ""
    first, last = max(1, line - context), min(len(lines), line + context)
    width = len(str(last))
    numbered = [
        f"{'>' if number == line else ' '} {number:>{width}} | {lines[number - 1][:150]}"
        for number in range(first, last + 1)
    ]
    return code_block("\n".join(numbered), "lua")


def describe_error(error: ScriptError, source: str) -> str:
    """An error as the author needs it: what, on which line, and that line of their source."""
    title = _ERROR_TITLES.get(error.kind, "Error")
    where = f" on line {error.line}" if error.line is not None else ""
    excerpt = source_excerpt(source, error.line)
    return f"**{title}**{where}: {error.message}" + (f"\n{excerpt}" if excerpt else "")


def describe_capabilities(capabilities: Iterable[str]) -> str:
    granted = sorted(capabilities)
    if not granted:
        return "none (it may reply, send, react and log)"
    return ", ".join(f"`{name}` ({GRANTABLE_CAPABILITIES.get(name, '?')})" for name in granted)


def describe_events(events: Sequence[str]) -> str:
    return ", ".join(f"`{event}`" for event in events) if events else "no events"


def describe_action(action: Mapping[str, Any], granted: frozenset[str]) -> str:
    """One requested action on one line, noting a capability the script has not been granted."""
    kind = str(action.get("type", "?"))
    fields = ", ".join(
        f"{key}={json.dumps(value, ensure_ascii=False)}"
        for key, value in action.items()
        if key not in ("type", "script")
    )
    needed = CAPABILITY_FOR_ACTION.get(kind)
    refusal = f"  (refused: needs the `{needed}` grant)" if needed and needed not in granted else ""
    return f"`{kind}` {fence_safe(fields)}{refusal}"


def describe_dry_run(run: DryRun, source: str, granted: frozenset[str]) -> str:
    """A ``/script test`` answer: actions, output, error, and what the run cost."""
    parts = [f"Test of **{run.script}** on `{run.event}` (nothing was executed)"]
    if run.actions:
        parts.append(f"Actions it would request ({len(run.actions)}):")
        parts.extend(f"{n}. {describe_action(a, granted)}" for n, a in enumerate(run.actions, 1))
    else:
        parts.append("Actions it would request: none.")
    if run.output:
        parts.append("Printed:\n" + code_block("\n".join(run.output)))
    if run.error is not None:
        parts.append(describe_error(run.error, source))
    parts.append(f"Used {run.cpu_ms:.1f} ms of CPU and {run.memory_bytes / 1024:.0f} KiB of memory.")
    return "\n".join(parts)


def discord_time(moment: float, style: str = "f") -> str:
    """A timestamp that Discord shows in each reader's own time zone."""
    return f"<t:{int(moment)}:{style}>"


def describe_script_list(
    records: Sequence[ScriptRecord], last_errors: Mapping[str, RunLogEntry], max_scripts: int
) -> str:
    if not records:
        return "This server has no scripts yet. Add one with `/script upload`."
    lines = [f"**Scripts** ({len(records)} of {max_scripts})"]
    for record in records:
        state = "enabled" if record.enabled else "disabled"
        lines.append(
            f"**{record.name}**: {state}, v{record.version}, handles {describe_events(record.events)}"
        )
        error = last_errors.get(record.name)
        if error is not None:
            message = error.message.splitlines()[0] if error.message else ""
            lines.append(f"  last error {discord_time(error.created_at, 'R')}: {fence_safe(message[:200])}")
    return "\n".join(lines)


def describe_history(versions: Sequence[ScriptVersion], current: int) -> str:
    name = versions[0].name if versions else "?"
    lines = [f"**History of {name}** (newest first)"]
    for version in versions:
        mark = " (current)" if version.version == current else ""
        lines.append(
            f"v{version.version}{mark}: {discord_time(version.created_at)} by <@{version.author_id}>, "
            f"handles {describe_events(version.events)}"
        )
    lines.append("Restore one with `/script rollback`.")
    return "\n".join(lines)


def describe_run_log(entries: Sequence[RunLogEntry], script: str | None) -> str:
    """Entries in reading order (oldest first), UTC times, inside one code block."""
    subject = f"**{script}**" if script else "this server's scripts"
    if not entries:
        return f"No errors or output from {subject} yet."
    rows = []
    for entry in reversed(entries):
        when = datetime.datetime.fromtimestamp(entry.created_at, datetime.UTC).strftime("%Y-%m-%d %H:%M:%S")
        rows.append(f"[{when}] {entry.script_name} {entry.kind}: {entry.message}")
    return f"Recent errors and output of {subject} (UTC, newest last):\n" + code_block("\n".join(rows))


def describe_config(settings: GuildSettings) -> str:
    error_channel = (
        f"<#{settings.error_channel_id}>"
        if settings.error_channel_id
        else "not set (errors are kept in `/script logs`)"
    )
    unset = "not set (`log` actions fail, reported)"
    log_channel = f"<#{settings.log_channel_id}>" if settings.log_channel_id else unset
    mentions = {
        "none": "`none`: scripts' messages ping nobody",
        "users": "`users`: scripts' messages may ping the users they name (never roles or everyone)",
    }[settings.mention_policy]
    bots = "reach scripts" if settings.allow_bot_authors else "are ignored"
    return "\n".join(
        [
            "**Warden configuration**",
            f"Error channel: {error_channel}",
            f"Log channel: {log_channel}",
            f"Mentions: {mentions}",
            f"Messages from bots: {bots}",
        ]
    )


def describe_stats(stats: GuildStats) -> str:
    """``/script stats``: the guild's counters since the bot started, then one row per script."""
    memory = f"{stats.memory_bytes / 1024:.0f} KiB" if stats.memory_bytes is not None else "not loaded"
    lines = [
        "**Script activity since the bot started**",
        f"Events run: {stats.events} (timer runs: {stats.timer_runs}); errors: {stats.errors}; "
        f"time-limit hits: {stats.time_limit_hits}; "
        f"CPU: {stats.cpu_seconds * 1000:.1f} ms; VM memory: {memory}.",
    ]
    dropped = stats.dropped_queue_full + stats.dropped_cpu_budget
    if dropped:
        lines.append(
            f"Skipped events: {stats.dropped_queue_full} (too many waiting), "
            f"{stats.dropped_cpu_budget} (CPU budget spent)."
        )
    if stats.scripts:
        width = max(len("script"), *(len(script.script) for script in stats.scripts))
        rows = [f"{'script':<{width}}  events  errors  time-limit  CPU ms"]
        for script in stats.scripts:
            counts = f"{script.events:>6}  {script.errors:>6}  {script.time_limit_hits:>10}"
            rows.append(f"{script.script:<{width}}  {counts}  {script.cpu_seconds * 1000:>6.1f}")
        lines.append(code_block("\n".join(rows)))
        lines.append("Each event's CPU time is split evenly among the scripts that ran for it.")
    else:
        lines.append("No script has run yet.")
    return "\n".join(lines)


def describe_kv_value(key: str, value: Any) -> str:
    if value is None:
        return f"There is no key `{fence_safe(key)}`."
    text = json.dumps(value, ensure_ascii=False, indent=2)
    return f"Value of `{fence_safe(key)}`:\n" + code_block(text, "json")


def describe_kv_keys(keys: Sequence[str], prefix: str, limit: int) -> str:
    subject = f"starting with `{fence_safe(prefix)}`" if prefix else "in this server's store"
    if not keys:
        return f"No keys {subject}."
    more = f" (the first {limit})" if len(keys) >= limit else ""
    return f"**Keys {subject}**{more}:\n" + code_block("\n".join(keys))


# --- interactive pieces ---------------------------------------------------------------------------


class ConfirmDelete(discord.ui.View):
    """Delete and Cancel buttons under a question; only the admin who asked may answer it.

    ``delete`` does the deletion and returns the sentence that replaces the question.
    """

    def __init__(self, admin_id: int, script: str, delete: Callable[[], Awaitable[str]]) -> None:
        super().__init__(timeout=CONFIRM_TIMEOUT_SECONDS)
        self.admin_id = admin_id
        self.script = script
        self._delete = delete
        #: The interaction whose answer carries these buttons, to edit it when they time out.
        self.question: discord.Interaction | None = None

    async def interaction_check(self, interaction: discord.Interaction) -> bool:
        if interaction.user.id != self.admin_id:
            await interaction.response.send_message(
                "Only the admin who asked can answer this.", ephemeral=True
            )
            return False
        return True

    @discord.ui.button(label="Delete", style=discord.ButtonStyle.danger, custom_id="warden:script-delete:yes")
    async def confirm(
        self, interaction: discord.Interaction, button: discord.ui.Button[ConfirmDelete]
    ) -> None:
        self.stop()
        # Deleting and swapping the guild's VM may take longer than Discord's 3 seconds.
        await interaction.response.defer()
        text = await self._delete()
        await interaction.edit_original_response(content=text, view=None)

    @discord.ui.button(
        label="Cancel", style=discord.ButtonStyle.secondary, custom_id="warden:script-delete:no"
    )
    async def cancel(
        self, interaction: discord.Interaction, button: discord.ui.Button[ConfirmDelete]
    ) -> None:
        self.stop()
        await interaction.response.edit_message(content=f"Kept **{self.script}**.", view=None)

    async def on_timeout(self) -> None:
        if self.question is None:
            return
        try:
            await self.question.edit_original_response(
                content=f"No answer: kept **{self.script}**.", view=None
            )
        except discord.HTTPException:
            log.debug("the delete question for %s could not be closed", self.script, exc_info=True)

    async def on_error(
        self, interaction: discord.Interaction, error: Exception, item: discord.ui.Item[Any]
    ) -> None:
        await answer_failure(interaction, error)


class EditSource(discord.ui.Modal):
    """A paragraph input pre-filled with a script's source; ``save`` gets the submitted text."""

    def __init__(
        self, script: str, source: str, save: Callable[[discord.Interaction, str], Awaitable[None]]
    ) -> None:
        super().__init__(
            title=f"Edit {script}", custom_id=f"warden:script-edit:{script}", timeout=MODAL_TIMEOUT_SECONDS
        )
        self._save = save
        self.source = discord.ui.TextInput(
            custom_id="source",
            style=discord.TextStyle.paragraph,
            default=source,
            min_length=1,
            max_length=MODAL_TEXT_LIMIT,
        )
        self.add_item(
            discord.ui.Label(
                text="Source",
                description="Saved as a new version after the same checks as an upload.",
                component=self.source,
            )
        )

    async def on_submit(self, interaction: discord.Interaction) -> None:
        await self._save(interaction, self.source.value)

    async def on_error(self, interaction: discord.Interaction, error: Exception) -> None:
        await answer_failure(interaction, error)
