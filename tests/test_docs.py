"""The documentation says what the code does: every checkable statement in ``docs/`` is checked here.

- Every ```` ```lua ````/```` ```luau ```` block is a whole script that loads (``load_script``) and returns
  handlers, or is marked ``<!-- fragment -->`` just before its fence and compiles (``check_script``).
- Every ``python -m bot ...`` command line (in the docs and the project README) parses with the real
  CLI parser, and the tutorial's run (``<!-- run: FILE -->``) prints what the guide shows.
- The field tables (``<!-- fields: NAME -->``) list exactly the fields ``cogs/events.py`` puts in real
  payloads built from discord.py objects, with the types those fields take.
- The guide has a section for every event and every ``@warden/*`` function, a capability table equal
  to the executor's, and every ``/script`` command with its options; the operator's guide lists every
  setting, and its backup snippet backs up a live WAL database.
"""

from __future__ import annotations

import contextlib
import io
import re
import runpy
import shlex
import sqlite3
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import discord
import pytest

from bot.actions import CAPABILITY_FOR_ACTION, GRANTABLE_CAPABILITIES
from bot.cli import build_parser, main
from bot.settings import setting_names
from bot.storage import migrate
from cogs.events import GatewayEvents
from cogs.scripts import ScriptCommands
from lua_runtime.dry_run import check_script, load_script
from lua_runtime.events import EVENT_NAMES
from lua_runtime.guild_vm import GuildVM, ScriptSource
from lua_runtime.kv_store import DryRunKV, KVStore
from lua_runtime.limits import SandboxLimits

ROOT = Path(__file__).resolve().parent.parent
DOCS = sorted((ROOT / "docs").glob("*.md"))
SCRIPTING = ROOT / "docs" / "scripting.md"
OPERATING = ROOT / "docs" / "operating.md"
LIMITS = SandboxLimits()

_FENCE = re.compile(r"^(?P<indent> *)(?P<fence>`{3,}|~{3,})(?P<info>[^`]*)$")
_MARKER = re.compile(r"^\s*<!--\s*(?P<text>.*?)\s*-->\s*$")
_CODE_SPAN = re.compile(r"`([^`]+)`")


@dataclass(frozen=True)
class Block:
    """One fenced code block of a Markdown file."""

    path: Path
    line: int  # of the opening fence, 1-based
    info: str
    text: str
    #: The HTML comment on the nearest non-blank line before the fence, if there is one.
    marker: str | None

    def __str__(self) -> str:
        return f"{self.path.name}:{self.line}"


def blocks(path: Path) -> list[Block]:
    """The fenced blocks of ``path``, outermost only (a ``~~~`` block may hold ```` ``` ```` lines)."""
    lines = path.read_text(encoding="utf-8").splitlines()
    found = []
    i = 0
    while i < len(lines):
        opening = _FENCE.match(lines[i])
        if opening is None:
            i += 1
            continue
        fence, indent = opening["fence"], len(opening["indent"])
        previous = next((line for line in reversed(lines[:i]) if line.strip()), "")
        marker = _MARKER.match(previous)
        end = i + 1
        while end < len(lines) and not re.fullmatch(rf" *{fence[0]}{{{len(fence)},}} *", lines[end]):
            end += 1
        text = "\n".join(line[indent:] if line[:indent].isspace() else line for line in lines[i + 1 : end])
        found.append(Block(path, i + 1, opening["info"].strip(), text + "\n", marker and marker["text"]))
        i = end + 1
    return found


def prose(path: Path) -> str:
    """``path`` without its fenced blocks: the text where inline code spans live."""
    lines = path.read_text(encoding="utf-8").splitlines()
    inside = set()
    for block in blocks(path):
        inside.update(range(block.line - 1, block.line + block.text.count("\n") + 1))
    return "\n".join(line for number, line in enumerate(lines) if number not in inside)


def table_after(path: Path, marker: str) -> list[list[str]]:
    """The rows (cells, stripped) of the Markdown table that follows ``<!-- marker -->``."""
    lines = path.read_text(encoding="utf-8").splitlines()
    start = lines.index(f"<!-- {marker} -->") + 1
    rows = []
    for line in lines[start:]:
        if not line.startswith("|"):
            break
        rows.append([cell.strip() for cell in line.strip().strip("|").split("|")])
    assert len(rows) > 2, f"no table after <!-- {marker} --> in {path.name}"
    return rows[2:]  # past the header and its --- line


# --- Luau blocks -----------------------------------------------------------------------------------

LUAU_BLOCKS = [block for path in DOCS for block in blocks(path) if block.info in ("lua", "luau")]


def test_the_docs_have_luau_blocks_of_both_kinds() -> None:
    markers = {block.marker for block in LUAU_BLOCKS}
    assert "fragment" in markers and None in markers


@pytest.mark.parametrize("block", LUAU_BLOCKS, ids=str)
def test_each_luau_block_loads_as_a_script_or_compiles_as_a_marked_fragment(block: Block) -> None:
    source = ScriptSource("doc", block.text)
    if block.marker == "fragment":
        error = check_script(source, LIMITS)
        if error is not None and error.kind == "syntax":
            # Statements that only make sense in a function body (a vararg, say).
            wrapped = ScriptSource("doc", f"local function fragment(...)\n{block.text}end\n")
            if check_script(wrapped, LIMITS) is None:
                error = None
        assert error is None, f"{block}: {error}"
    else:
        assert block.marker is None, f"{block}: unknown marker {block.marker!r}"
        loaded = load_script(source, LIMITS)
        assert loaded.error is None, f"{block} (a whole script; mark fragments): {loaded.error}"
        assert loaded.handled_events, f"{block} returns no handlers; mark it <!-- fragment -->"


# --- command lines ---------------------------------------------------------------------------------

_SHELLS = ("sh", "bash", "shell", "console")


def command_lines() -> Iterator[tuple[str, str]]:
    """(where, command) for every ``python -m bot ...`` in shell blocks and inline code."""
    for path in [*DOCS, ROOT / "README.md"]:
        for block in blocks(path):
            if block.info in _SHELLS:
                for line in block.text.splitlines():
                    for command in line.removeprefix("$ ").split("&&"):
                        if command.strip().startswith("python -m bot"):
                            yield f"{block}", command.strip()
        for span in _CODE_SPAN.findall(prose(path)):
            command = " ".join(span.split())  # a span may run over two lines of the source
            if command.startswith("python -m bot"):
                yield path.name, command


COMMAND_LINES = sorted(set(command_lines()))


def test_the_docs_show_every_cli_command() -> None:
    shown = {tuple(shlex.split(command)[3:5]) for _, command in COMMAND_LINES}
    for expected in [("run",), ("sync",), ("script", "run"), ("script", "check")]:
        assert any(words[: len(expected)] == expected for words in shown), expected


@pytest.mark.parametrize(("where", "command"), COMMAND_LINES, ids=[c for _, c in COMMAND_LINES])
def test_each_cli_command_line_parses(where: str, command: str) -> None:
    argv = shlex.split(command)[3:]
    try:
        with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()) as err:
            build_parser().parse_args(argv)
    except SystemExit as exc:  # --help exits 0; a parse error exits 2
        assert exc.code == 0, f"{where}: {command!r} does not parse: {err.getvalue()}"


def _normalized(output: str) -> str:
    # CPU time and memory differ from run to run.
    return re.sub(r"\(\d+\.\d+ ms CPU, \d+ KiB\)", "(… ms CPU, … KiB)", output).strip()


def test_the_tutorial_run_prints_what_the_guide_shows(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    found = blocks(SCRIPTING)
    [run] = [i for i, block in enumerate(found) if block.marker and block.marker.startswith("run: ")]
    filename = found[run].marker.removeprefix("run: ")
    script = next(block for block in reversed(found[:run]) if block.info in ("lua", "luau"))
    shown = found[run + 1]
    assert shown.info == "text"
    (tmp_path / filename).write_text(script.text, encoding="utf-8")
    monkeypatch.chdir(tmp_path)
    printed = []
    for command in found[run].text.splitlines():
        assert main(shlex.split(command)[3:]) == 0
        printed.append(capsys.readouterr().out)
    assert _normalized("".join(printed)) == _normalized(shown.text)


# --- event payloads --------------------------------------------------------------------------------

GUILD_ID, CHANNEL_ID, THREAD_ID, ROLE_ID, USER_ID = (
    1100000000000000001,
    1100000000000000002,
    1100000000000000008,
    1100000000000000005,
    1100000000000000004,
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
    "name": "Docs",
    "owner_id": "1100000000000000009",
    "roles": [
        {"id": str(GUILD_ID), "name": "@everyone", "permissions": "1024", "position": 0},
        {"id": str(ROLE_ID), "name": "Member", "permissions": "0", "position": 1},
    ],
    "channels": [{"id": str(CHANNEL_ID), "name": "general", "type": 0, "position": 0}],
    "threads": [
        {
            "id": str(THREAD_ID),
            "guild_id": str(GUILD_ID),
            "parent_id": str(CHANNEL_ID),
            "owner_id": str(USER_ID),
            "name": "a thread",
            "type": 11,
            "message_count": 1,
            "member_count": 1,
            "thread_metadata": {
                "archived": False,
                "auto_archive_duration": 1440,
                "archive_timestamp": "2026-11-24T09:00:00+00:00",
            },
        }
    ],
    "members": [{**MEMBER, "user": USER}],
    "member_count": 1,
}


def message_data(channel_id: int, **fields: Any) -> dict[str, Any]:
    return {
        "id": "1100000000000000003",
        "channel_id": str(channel_id),
        "guild_id": str(GUILD_ID),
        "author": USER,
        "member": MEMBER,
        "content": "hello <@1100000000000000004> <@&1100000000000000005>",
        "timestamp": "2026-11-24T10:00:00+00:00",
        "edited_timestamp": None,
        "tts": False,
        "mention_everyone": False,
        "mentions": [USER],
        "mention_roles": [str(ROLE_ID)],
        "attachments": [],
        "embeds": [],
        "pinned": False,
        "type": 0,
    } | fields


class RecordingBot:
    """What ``GatewayEvents`` needs of the bot: it records the payloads instead of running them."""

    user = None

    def __init__(self, guild: discord.Guild) -> None:
        self.guild = guild
        self.payloads: dict[str, list[dict[str, Any]]] = defaultdict(list)

    def get_channel(self, channel_id: int) -> Any:
        return self.guild.get_channel_or_thread(channel_id)

    async def run_event(
        self, guild_id: int, event: str, payload: dict[str, Any], author_is_bot: bool
    ) -> None:
        self.payloads[event].append(payload)


async def real_payloads() -> dict[str, list[dict[str, Any]]]:
    """Payloads from the real listeners of ``cogs/events.py``, fed real discord.py objects, in every
    variant the guide distinguishes (thread or not, cached or not, member or user, emoji kinds)."""
    client = discord.Client(intents=discord.Intents.all())
    state = client._connection
    guild = discord.Guild(data=GUILD, state=state)
    state._add_guild(guild)
    bot = RecordingBot(guild)
    cog = GatewayEvents(bot)  # type: ignore[arg-type]
    channel, thread = guild.get_channel(CHANNEL_ID), guild.get_thread(THREAD_ID)
    attachment = {
        "id": "1100000000000000006",
        "filename": "cat.png",
        "size": 48213,
        "url": "https://cdn.example/cat.png",
        "proxy_url": "https://media.example/cat.png",
    }
    plain = discord.Message(state=state, channel=channel, data=message_data(CHANNEL_ID))
    rich = discord.Message(
        state=state,
        channel=thread,
        data=message_data(
            THREAD_ID,
            attachments=[attachment, attachment | {"content_type": "image/png"}],
            message_reference={"message_id": "1100000000000000010", "channel_id": str(THREAD_ID)},
            edited_timestamp="2026-11-24T10:01:00+00:00",
        ),
    )
    webhook = discord.Message(
        state=state, channel=channel, data=message_data(CHANNEL_ID, webhook_id="1100000000000000011")
    )
    for message in (plain, rich, webhook):
        await cog.on_message(message)
        edit = discord.RawMessageUpdateEvent({}, message)  # type: ignore[arg-type]
        await cog.on_raw_message_edit(edit)
        edit.cached_message = plain if message is not plain else rich
        await cog.on_raw_message_edit(edit)
        delete = discord.RawMessageDeleteEvent(
            {"id": str(message.id), "channel_id": str(message.channel.id), "guild_id": str(GUILD_ID)}
        )
        await cog.on_raw_message_delete(delete)
        delete.cached_message = message
        await cog.on_raw_message_delete(delete)
    member = guild.get_member(USER_ID)
    user = discord.User(state=state, data=USER)
    await cog.on_member_join(member)
    for leaving in (member, user):
        await cog.on_raw_member_remove(discord.RawMemberRemoveEvent({"guild_id": str(GUILD_ID)}, leaving))
    reaction = {
        "user_id": str(USER_ID),
        "channel_id": str(CHANNEL_ID),
        "message_id": "1100000000000000003",
        "guild_id": str(GUILD_ID),
        "type": 0,
    }
    for emoji in (
        discord.PartialEmoji(name="👍"),
        discord.PartialEmoji(name="warden", id=1100000000000000007, animated=True),
        discord.PartialEmoji(name=None, id=1100000000000000007),
    ):
        added = discord.RawReactionActionEvent(reaction, emoji, "REACTION_ADD")
        added.member = member
        await cog.on_raw_reaction_add(added)
        await cog.on_raw_reaction_remove(discord.RawReactionActionEvent(reaction, emoji, "REACTION_REMOVE"))
    return bot.payloads


def _lua_kind(value: Any) -> str:
    if value is None:
        return "nil"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int | float):
        return "number"
    if isinstance(value, str):
        return "string"
    return "list" if isinstance(value, list) else "table"


async def observed_tables() -> dict[str, list[dict[str, Any]]]:
    """Every table the guide describes, by the name of its fields marker."""
    tables = dict(await real_payloads())
    tables["member"] = [
        table
        for event in ("message", "member_join", "member_leave", "reaction_add")
        for payload in tables[event]
        for table in (payload.get("author"), payload.get("member"))
        if table is not None
    ]
    tables["attachment"] = [a for payload in tables["message"] for a in payload["attachments"]]
    tables["emoji"] = [payload["emoji"] for payload in tables["reaction_add"]]
    return tables


def documented_fields(marker: str) -> dict[str, str]:
    """Field name -> type cell, from the table after ``<!-- fields: marker -->`` (type may be "")."""
    fields = {}
    for row in table_after(SCRIPTING, f"fields: {marker}"):
        for name in _CODE_SPAN.findall(row[0]):
            fields[name] = row[1]
    return fields


FIELD_TABLES = [*EVENT_NAMES, "member", "attachment", "emoji"]


@pytest.mark.parametrize("marker", FIELD_TABLES)
async def test_each_field_table_lists_the_real_fields_with_their_types(marker: str) -> None:
    observed = (await observed_tables())[marker]
    assert observed, f"no real {marker} table was built"
    documented = documented_fields(marker)
    assert sorted(documented) == sorted({key for table in observed for key in table})
    for name, type_text in documented.items():
        if not type_text:
            continue  # a row that refers to another table ("as in message")
        kinds = {_lua_kind(table[name]) for table in observed}
        missing = [kind for kind in kinds if kind not in type_text]
        assert not missing, f"{marker}.{name} is documented as {type_text!r} but can be {missing}"


def test_each_event_has_its_section_in_the_events_table() -> None:
    text = SCRIPTING.read_text(encoding="utf-8")
    headings = re.findall(r"^### `(\w+)`$", text, re.MULTILINE)
    assert headings == list(EVENT_NAMES)
    summary = re.findall(r"^\| `(\w+)` \| ", text[text.index("## Events") :], re.MULTILINE)
    assert summary[: len(EVENT_NAMES)] == list(EVENT_NAMES)


# --- modules, capabilities, commands, settings -----------------------------------------------------


def _module_functions(module: str) -> set[str]:
    """The functions ``require("@warden/<module>")`` hands a script, as a script sees them."""
    lister = f'for name in pairs(require("@warden/{module}")) do print(name) end\nreturn {{}}'
    vm = GuildVM(1, [ScriptSource("lister", lister)], SandboxLimits(), DryRunKV(SandboxLimits()))
    assert not vm.load_errors
    return {line.text for line in vm.load_output}


@pytest.mark.parametrize("module", ["discord", "kv"])
def test_every_module_function_has_its_section(module: str) -> None:
    functions = _module_functions(module)
    assert functions, "the module lists no function"
    headings = re.findall(r"^### .*$", SCRIPTING.read_text(encoding="utf-8"), re.MULTILINE)
    documented = {name for heading in headings for name in re.findall(rf"`{module}\.(\w+)\(", heading)}
    assert documented == functions


def test_the_capability_table_is_the_executors() -> None:
    rows = table_after(SCRIPTING, "capabilities")
    assert [_CODE_SPAN.findall(row[0])[0] for row in rows] == list(GRANTABLE_CAPABILITIES)
    for row in rows:
        capability = _CODE_SPAN.findall(row[0])[0]
        needing = {
            f"discord.{action}" for action, needed in CAPABILITY_FOR_ACTION.items() if needed == capability
        }
        assert set(_CODE_SPAN.findall(row[2])) == needing
        assert row[1] == GRANTABLE_CAPABILITIES[capability]


def test_every_script_command_is_documented_with_its_options() -> None:
    documented: dict[str, list[str]] = {}
    for row in table_after(SCRIPTING, "commands"):
        for span in _CODE_SPAN.findall(row[0]):
            words = span.removeprefix("/script ").split()
            name_length = 2 if words[0] == "kv" else 1
            documented[" ".join(words[:name_length])] = words[name_length:]
    commands = [
        c for c in ScriptCommands.script.walk_commands() if isinstance(c, discord.app_commands.Command)
    ]
    assert sorted(documented) == sorted(c.qualified_name.removeprefix("script ") for c in commands)
    for command in commands:
        options = [p.name if p.required else f"[{p.name}]" for p in command.parameters]
        assert documented[command.qualified_name.removeprefix("script ")] == options, command.qualified_name


def test_the_config_options_are_documented() -> None:
    [config] = [c for c in ScriptCommands.script.walk_commands() if c.name == "config"]
    documented = [_CODE_SPAN.findall(row[0])[0] for row in table_after(SCRIPTING, "config-options")]
    assert documented == [p.name for p in config.parameters]


def test_the_operators_guide_lists_every_setting() -> None:
    documented = [_CODE_SPAN.findall(row[0])[0] for row in table_after(OPERATING, "settings")]
    assert sorted(documented) == sorted(setting_names())


def test_the_backup_snippet_backs_up_a_live_wal_database(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    [snippet] = [block for block in blocks(OPERATING) if block.info == "python"]
    database = tmp_path / "data" / "warden.db"
    database.parent.mkdir()
    with contextlib.closing(sqlite3.connect(database, isolation_level=None)) as conn:
        migrate(conn)
    # The bot's KV connection stays open with a write still in the WAL file, as in a running bot.
    with KVStore(database, LIMITS) as live:
        live.set(GUILD_ID, "strikes", 3)
        assert Path(f"{database}-wal").stat().st_size > 0
        monkeypatch.chdir(tmp_path)
        script = tmp_path / "backup_snippet.py"
        script.write_text(snippet.text, encoding="utf-8")
        runpy.run_path(str(script))
    with KVStore(tmp_path / "backup.db", LIMITS) as restored:
        assert restored.get(GUILD_ID, "strikes") == 3


def test_the_guide_quotes_the_messages_of_the_default_limits() -> None:
    text = SCRIPTING.read_text(encoding="utf-8")
    assert f"time limit exceeded ({LIMITS.cpu_ms_per_event} ms of CPU per event)" in text
    assert f"memory limit exceeded ({LIMITS.max_memory // 2**20} MiB per server)" in text
    assert f"too many actions in one event (the limit is {LIMITS.max_actions_per_event})" in text
    assert f"(print output cut: {LIMITS.max_output_per_event} bytes per event)" in text


# --- links -----------------------------------------------------------------------------------------


def anchor(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped, spaces to hyphens."""
    return re.sub(r"[^\w\- ]", "", heading.replace("`", "").lower()).replace(" ", "-")


def anchors(path: Path) -> set[str]:
    return {anchor(h) for h in re.findall(r"^#{1,6} (.+)$", prose(path), re.MULTILINE)}


LINKS = [
    (path, target)
    for path in DOCS
    for target in re.findall(r"\]\(([^)\s]+)\)", prose(path))
    if not target.startswith(("http://", "https://"))
]


@pytest.mark.parametrize(("path", "target"), LINKS, ids=[f"{p.name}->{t}" for p, t in LINKS])
def test_each_relative_link_leads_somewhere(path: Path, target: str) -> None:
    file, _, fragment = target.partition("#")
    linked = (path.parent / file).resolve() if file else path
    assert linked.exists(), f"{path.name} links to {target}, which does not exist"
    if fragment:
        assert fragment in anchors(linked), f"{path.name} links to {target}: no such heading"
