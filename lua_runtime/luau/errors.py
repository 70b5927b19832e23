"""The one error the Luau layer raises: a syntax error at the author's line and column."""

from __future__ import annotations

from bisect import bisect_right


class LuauSyntaxError(Exception):
    """A script that is not valid Luau (or uses Luau the Lua 5.4 runtime cannot run).

    ``line`` and ``column`` are 1-based and point into the author's source; ``message`` reads like
    Luau's own (``expected 'end' (to close 'function' at line 3), got 'else'``).
    """

    def __init__(self, line: int, column: int, message: str) -> None:
        super().__init__(f"line {line}: {message}")
        self.line = line
        self.column = column
        self.message = message


class Positions:
    """Turns character offsets of one source text into 1-based (line, column) pairs."""

    __slots__ = ("_line_starts",)

    def __init__(self, text: str) -> None:
        starts = [0]
        index = text.find("\n")
        while index != -1:
            starts.append(index + 1)
            index = text.find("\n", index + 1)
        self._line_starts = starts

    def line_col(self, offset: int) -> tuple[int, int]:
        line = bisect_right(self._line_starts, offset)
        return line, offset - self._line_starts[line - 1] + 1

    def error(self, offset: int, message: str) -> LuauSyntaxError:
        """A syntax error at character ``offset``."""
        line, column = self.line_col(offset)
        return LuauSyntaxError(line, column, message)
