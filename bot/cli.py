"""``python -m bot``: run the bot, or test scripts offline.

``script run`` and ``script check`` are the same code path the bot uses (``lua_runtime.dry_run``),
so a script that passes here behaves the same in a server. Exit status: 0 when all is well, 1 when
the script failed, 2 for a usage or configuration error.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from lua_runtime.dry_run import DryRun, check_script, dry_run
from lua_runtime.events import EVENT_NAMES, sample_payload
from lua_runtime.guild_vm import ScriptSource
from lua_runtime.limits import SandboxLimits

EXIT_OK, EXIT_SCRIPT_FAILED, EXIT_USAGE = 0, 1, 2


class UsageError(Exception):
    """Bad command-line input: reported in one line, exit status 2."""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m bot",
        description="Warden: a Discord bot that runs server admins' Luau moderation scripts.",
    )
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    run = commands.add_parser("run", help="start the bot (settings from the environment and .env)")
    run.add_argument("--env-file", default=".env", help="settings file to read (default: .env)")

    sync = commands.add_parser("sync", help="publish the slash commands to Discord (global, once per update)")
    sync.add_argument("--env-file", default=".env", help="settings file to read (default: .env)")

    script = commands.add_parser("script", help="run or check a script offline, executing nothing")
    script_commands = script.add_subparsers(dest="script_command", metavar="SUBCOMMAND", required=True)

    script_run = script_commands.add_parser(
        "run",
        help="feed one event to a script in a fresh sandbox and print the actions it asks for",
        description="Feed one event to a script in a fresh sandbox with the default limits and print the "
        "actions it asks for. Nothing is executed.",
    )
    script_run.add_argument("file", type=Path, help="the script (.luau or .lua)")
    script_run.add_argument(
        "--event", default="message", choices=EVENT_NAMES, help="event to feed (default: message)"
    )
    script_run.add_argument(
        "--payload",
        metavar="JSON|@FILE",
        help="event fields as a JSON object, merged over a realistic sample payload for the event",
    )
    script_run.add_argument("--json", action="store_true", help="print one JSON object")

    script_check = script_commands.add_parser("check", help="compile a script without running it")
    script_check.add_argument("file", type=Path, help="the script (.luau or .lua)")
    script_check.add_argument("--json", action="store_true", help="print one JSON object")
    return parser


def _read_script(path: Path) -> ScriptSource:
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise UsageError(f"cannot read {path}: {exc.strerror}") from None
    try:
        source = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise UsageError(f"{path} is not UTF-8 text (byte {exc.start} is invalid)") from None
    return ScriptSource(path.stem, source)


def _merge(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = _merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def _read_payload(event: str, raw: str | None) -> dict[str, Any]:
    payload = sample_payload(event)
    if raw is None:
        return payload
    if raw.startswith("@"):
        try:
            raw = Path(raw[1:]).read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise UsageError(f"cannot read payload file {raw[1:]}: {exc}") from None
    try:
        given = json.loads(raw)
    except json.JSONDecodeError as exc:
        where = f"line {exc.lineno} column {exc.colno}"
        raise UsageError(f"--payload is not valid JSON: {exc.msg} at {where}") from None
    if not isinstance(given, dict):
        raise UsageError('--payload must be a JSON object, like {"content": "hello"}')
    return _merge(payload, given)


def _describe_action(action: dict[str, Any]) -> str:
    fields = " ".join(
        f"{key}={json.dumps(value, ensure_ascii=False)}"
        for key, value in action.items()
        if key not in ("type", "script")
    )
    return f"{action['type']} {fields}".rstrip()


def _print_run(run: DryRun, path: Path) -> None:
    if run.error is None:
        handled = "handled" if run.event in run.handled_events else "has no handler for"
        print(f"{path}: {handled} {run.event} ({run.cpu_ms:.2f} ms CPU, {run.memory_bytes / 1024:.0f} KiB)")
    else:
        where = f" at line {run.error.line}" if run.error.line is not None else ""
        print(f"{path}: {run.error.kind} error{where}: {run.error.message}")
    if run.actions:
        print(f"actions ({len(run.actions)}, none executed):")
        for action in run.actions:
            print(f"  {_describe_action(action)}")
    if run.output:
        print("output:")
        for line in run.output:
            print(f"  {line}")


def _script_run(args: argparse.Namespace) -> int:
    script = _read_script(args.file)
    payload = _read_payload(args.event, args.payload)
    run = dry_run(script, args.event, payload, SandboxLimits())
    if args.json:
        print(json.dumps(run.to_json(), ensure_ascii=False))
    else:
        _print_run(run, args.file)
    return EXIT_OK if run.ok else EXIT_SCRIPT_FAILED


def _script_check(args: argparse.Namespace) -> int:
    error = check_script(_read_script(args.file), SandboxLimits())
    if args.json:
        print(json.dumps({"ok": error is None, "error": None if error is None else error.to_json()}))
    elif error is None:
        print(f"{args.file}: ok")
    else:
        where = f":{error.line}" if error.line is not None else ""
        print(f"{args.file}{where}: {error.kind} error: {error.message}")
    return EXIT_OK if error is None else EXIT_SCRIPT_FAILED


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        if args.command == "script":
            return _script_run(args) if args.script_command == "run" else _script_check(args)
        from bot.app import run_bot, sync_commands  # imports discord.py: only for the bot commands

        return run_bot(args.env_file) if args.command == "run" else sync_commands(args.env_file)
    except UsageError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USAGE
