"""What running guest code produces: structured errors, actions, print output.

These are plain, picklable records: they cross from worker threads (and worker processes) back to the
bot, and the offline CLI prints them as JSON.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Literal

ErrorKind = Literal["syntax", "runtime", "time_limit", "memory_limit", "limit"]

#: Longest error message kept, in characters; the rest is cut with an ellipsis.
MAX_ERROR_CHARS = 500


@dataclass(frozen=True, slots=True)
class ScriptError:
    """An error in one script, located in the author's own source.

    ``kind`` is one of ``syntax``, ``runtime``, ``time_limit``, ``memory_limit`` or ``limit`` (any
    other quota). ``line`` is the 1-based line in the script as its author wrote it (after Luau
    translation lines do not move), or ``None`` when no line applies (a quota hit between statements).
    """

    script: str
    kind: ErrorKind
    message: str
    line: int | None = None

    def __str__(self) -> str:
        where = f"{self.script}:{self.line}" if self.line is not None else self.script
        return f"{where}: {self.message}"

    def to_json(self) -> dict[str, Any]:
        return {"kind": self.kind, "message": self.message, "line": self.line}


@dataclass(frozen=True, slots=True)
class OutputLine:
    """One ``print`` call of one script."""

    script: str
    text: str


@dataclass(slots=True)
class EventResult:
    """Everything one event produced across a guild's scripts, in the order the scripts ran.

    Each action is a plain dict such as ``{"type": "reply", "channel_id": "...", "message_id": "...",
    "content": "...", "script": "banned_words"}``; ``script`` names the script that asked for it, so
    the executor can check that script's capabilities.
    """

    event: str
    actions: list[dict[str, Any]] = field(default_factory=list)
    output: list[OutputLine] = field(default_factory=list)
    errors: list[ScriptError] = field(default_factory=list)
    #: Names of the scripts whose handler ran (or was due to run) for this event.
    scripts: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.errors

    def to_json(self) -> dict[str, Any]:
        return {
            "event": self.event,
            "actions": self.actions,
            "output": [asdict(line) for line in self.output],
            "errors": [asdict(error) for error in self.errors],
        }
