"""Luau's tokens: what the type eraser, the syntax check and the syntax diagnostics read.

tree-sitter gives the tree; this gives the flat token stream, which is what three jobs need: erasing
type annotations (found by the keywords and punctuation around them, see ``erasure.py``), checking
the syntax before tree-sitter sees the text (``syntax.py``) and explaining a syntax error the way
Luau does (matching ``function``/``end`` and brackets, see ``parser.py``). It also reports lexical
errors (an unfinished string, a malformed number) with Luau's messages, before tree-sitter would
turn them into a vaguer error.

The scanner only moves forward, and its time is linear in the source, whatever the source: it reads
with ``str.find`` of one character and with regular expressions that each match a run of one
character class, possessively (``[...]*+``), which cannot backtrack. A regex with alternatives that
can match the same text in several ways (``(?:\\z\\s*|\\[\\s\\S])*``) takes exponential time to fail
on an unfinished string; there is none here, and none may be added. :attr:`Lexer.steps` counts the
characters the scanner examined, so that a test can hold it to a linear bound.
"""

from __future__ import annotations

import re
import string
from dataclasses import dataclass

from lua_runtime.luau.errors import LuauSyntaxError, Positions

KEYWORDS = frozenset(
    {
        "and", "break", "do", "else", "elseif", "end", "false", "for", "function", "if", "in", "local",
        "nil", "not", "or", "repeat", "return", "then", "true", "until", "while",
    }
)  # fmt: skip

#: Token kinds. An interpolated string `a{x}b{y}c` is interp_begin "`a{", the tokens of x,
#: interp_mid "}b{", the tokens of y, interp_end "}c`"; one without braces is a plain "string".
NAME, NUMBER, STRING, OP, EOF = "name", "number", "string", "op", "eof"
INTERP_BEGIN, INTERP_MID, INTERP_END = "interp_begin", "interp_mid", "interp_end"


@dataclass(frozen=True, slots=True)
class Token:
    """One token: its kind, its text and its character range in the source."""

    kind: str
    text: str
    start: int
    end: int

    def is_op(self, *texts: str) -> bool:
        return self.kind == OP and self.text in texts

    def is_keyword(self, *words: str) -> bool:
        return self.kind == NAME and self.text in words

    def describe(self) -> str:
        """The token as an error message names it: 'end', "text", <eof>."""
        if self.kind == EOF:
            return "<eof>"
        if self.kind in (STRING, INTERP_BEGIN, INTERP_MID, INTERP_END):
            text = self.text if len(self.text) <= 24 else self.text[:21] + "..."
            return text.replace("\n", "\\n")
        return f"'{self.text}'"


# Runs of one character class (possessive: linear by construction).
_SPACES = re.compile(r"[ \t\r\n\f\v]*+")
_NAME_REST = re.compile(r"[A-Za-z0-9_]*+")
_EQUALS = re.compile(r"=*+")
# Like Luau's lexer, a numeral is taken whole, then checked: digits, dots and underscores, an
# optional exponent mark and sign, then any letters and digits (so 0x1p4 and 1..2 are one bad token).
_NUMERAL_BODY = re.compile(r"[0-9._]*+")
_NUMERAL_TAIL = re.compile(r"[0-9A-Za-z_]*+")
# Text of a string up to the next character that needs a decision (its end, an escape, a line end).
_QUOTED_TEXT = {'"': re.compile(r'[^"\\\r\n]*+'), "'": re.compile(r"[^'\\\r\n]*+")}
_INTERPOLATED_TEXT = re.compile(r"[^`{\\\r\n]*+")

_NAME_START = frozenset(string.ascii_letters + "_")
_DIGITS = frozenset(string.digits)
# Operators by length, longest first: the longest one that matches is the token.
_OPERATORS = (
    (3, frozenset({"...", "..=", "//="})),
    (2, frozenset({"..", "::", "->", "==", "~=", "<=", ">=", "+=", "-=", "*=", "/=", "%=", "^=", "//"})),
    (1, frozenset("+-*/%^#&|<>=(){}[];:,.?@~")),
)
# Operators that begin no longer one.
_SINGLE_OPERATORS = frozenset("#&|(){}[];,?@")

# str.translate tables that delete the characters a numeral part may hold: what is left is bad.
_DECIMAL = str.maketrans("", "", string.digits + "_")
_HEX = str.maketrans("", "", string.hexdigits + "_")
_BINARY = str.maketrans("", "", "01_")


def tokenize(source: str) -> list[Token]:
    """The tokens of ``source``, comments and spaces left out, ending with one EOF token.

    Raises ``LuauSyntaxError`` for text that is not a Luau token.
    """
    return Lexer(source).tokenize()


class Lexer:
    """Reads the tokens of one source. ``steps`` counts the characters examined: every character
    is looked at a bounded number of times, which the tests check on hostile sources."""

    def __init__(self, source: str) -> None:
        self.source = source
        self.size = len(source)
        self.steps = 0
        self._positions: Positions | None = None

    def fail(self, offset: int, message: str) -> LuauSyntaxError:
        self._positions = self._positions or Positions(self.source)
        return self._positions.error(offset, message)

    def run(self, pattern: re.Pattern[str], pos: int) -> int:
        """The end of the run that ``pattern`` (one character class) matches from ``pos``."""
        end = pattern.match(self.source, pos).end()
        self.steps += end - pos + 1
        return end

    def tokenize(self) -> list[Token]:
        source, size = self.source, self.size
        if not source.isascii():
            self.check_encodable()
        tokens: list[Token] = []
        append = tokens.append
        # The common tokens are read inline, with their steps counted here (the hot loop).
        spaces, name_rest = _SPACES.match, _NAME_REST.match
        steps = 0
        # One entry per interpolated string being read: the `{` braces open inside its expression.
        interpolations: list[int] = []
        interpolation_starts: list[int] = []
        pos = 0
        while True:
            start = pos
            pos = spaces(source, pos).end()
            steps += pos - start + 1
            if pos >= size:
                break
            char = source[pos]
            if char in _NAME_START:
                end = name_rest(source, pos + 1).end()
                steps += end - pos
                append(Token(NAME, source[pos:end], pos, end))
            elif char in _DIGITS or (char == "." and source[pos + 1 : pos + 2] in _DIGITS):
                end = self.number(pos)
                append(Token(NUMBER, source[pos:end], pos, end))
            elif char == "-" and source.startswith("--", pos):
                pos = self.comment(pos)
                continue
            elif char == '"' or char == "'":
                end = self.quoted_string(pos)
                append(Token(STRING, source[pos:end], pos, end))
            elif char == "[" and (level := self.long_bracket_level(pos)) >= 0:
                end = self.long_bracket_end(pos, level)
                if end < 0:
                    raise self.fail(pos, "Malformed string; did you forget to finish it?")
                append(Token(STRING, source[pos:end], pos, end))
            elif char == "`" or (char == "}" and interpolations and interpolations[-1] == 0):
                finished, end = self.interpolated_text(pos + 1)
                if char == "`":
                    kind = STRING if finished else INTERP_BEGIN
                    if not finished:
                        interpolations.append(0)
                        interpolation_starts.append(pos)
                else:
                    kind = INTERP_END if finished else INTERP_MID
                    if finished:
                        interpolations.pop()
                        interpolation_starts.pop()
                append(Token(kind, source[pos:end], pos, end))
            else:
                text = self.operator(pos)
                if interpolations and (text == "{" or text == "}"):
                    interpolations[-1] += 1 if text == "{" else -1
                end = pos + len(text)
                append(Token(OP, text, pos, end))
            pos = end
        self.steps += steps
        if interpolations:
            message = "Malformed interpolated string; did you forget to add a '}'?"
            raise self.fail(interpolation_starts[-1], message)
        append(Token(EOF, "", size, size))
        return tokens

    def check_encodable(self) -> None:
        """A str may hold what no UTF-8 text can (a lone surrogate, from a lenient decoder):
        refused here, rather than failing later where the parser encodes the text."""
        try:
            self.source.encode()
        except UnicodeEncodeError as error:
            raise self.fail(error.start, "Invalid character: the script is not Unicode text") from None

    def operator(self, pos: int) -> str:
        """The longest operator at ``pos``."""
        source = self.source
        char = source[pos]
        if char in _SINGLE_OPERATORS:
            self.steps += 1
            return char
        for length, operators in _OPERATORS:
            text = source[pos : pos + length]
            if text in operators:
                self.steps += length
                return text
        raise self.fail(pos, f"Unexpected character {self.source[pos]!r}")

    def comment(self, start: int) -> int:
        """The end of the comment at ``start`` (``--``): a long bracket, or the rest of the line."""
        level = self.long_bracket_level(start + 2)
        if level >= 0:
            end = self.long_bracket_end(start + 2, level)
            if end < 0:
                raise self.fail(start, "Malformed comment; did you forget to close it?")
            return end
        newline = self.source.find("\n", start)
        end = self.size if newline == -1 else newline
        self.steps += end - start + 1
        return end

    def long_bracket_level(self, pos: int) -> int:
        """The level of the long bracket opening at ``pos`` (``[==[`` is 2), or -1 if none opens."""
        if not self.source.startswith("[", pos):
            return -1
        equals_end = self.run(_EQUALS, pos + 1)
        return equals_end - pos - 1 if self.source.startswith("[", equals_end) else -1

    def long_bracket_end(self, start: int, level: int) -> int:
        """The end of the long bracket opened at ``start`` with ``level``, or -1 if it never closes.

        Each `]` found is followed by its run of `=`; the next search starts after that run, so
        every character is examined once or twice, whatever the text.
        """
        source = self.source
        pos = start + level + 2
        while True:
            close = source.find("]", pos)
            if close == -1:
                self.steps += self.size - pos + 1
                return -1
            self.steps += close - pos + 1
            equals_end = self.run(_EQUALS, close + 1)
            if equals_end - close - 1 == level and source.startswith("]", equals_end):
                return equals_end + 1
            pos = equals_end

    def escape(self, pos: int) -> int:
        """The end of the escape sequence whose backslash ends just before ``pos``.

        Only the extent matters here (Lua checks the escape itself when it loads the translation):
        ``\\z`` skips the spaces and line breaks after it, ``\\`` before a line break continues the
        string on the next line (``\\r\\n`` is one break), anything else is one character.
        """
        source = self.source
        self.steps += 1
        if source.startswith("z", pos):
            return self.run(_SPACES, pos + 1)
        if source.startswith("\r\n", pos):
            return pos + 2
        return min(pos + 1, self.size)

    def quoted_string(self, start: int) -> int:
        """The end of the '...' or "..." string at ``start``."""
        source, text = self.source, _QUOTED_TEXT[self.source[start]]
        pos = start + 1
        while True:
            pos = self.run(text, pos)
            if pos >= self.size or source[pos] in "\r\n":
                raise self.fail(start, "Malformed string; did you forget to finish it?")
            if source[pos] != "\\":  # the closing quote
                return pos + 1
            pos = self.escape(pos + 1)

    def interpolated_text(self, start: int) -> tuple[bool, int]:
        """Reads the literal text of an interpolated string from ``start`` to its closing backtick
        or its next ``{``: returns (whether the string ended, the end)."""
        source = self.source
        pos = start
        while True:
            pos = self.run(_INTERPOLATED_TEXT, pos)
            if pos >= self.size or source[pos] in "\r\n":
                raise self.fail(start, "Malformed interpolated string; did you forget to add a '`'?")
            char = source[pos]
            if char == "\\":
                pos = self.escape(pos + 1)
            elif char == "`":
                return True, pos + 1
            elif source.startswith("{{", pos):
                message = "Double braces are not permitted within interpolated strings; did you mean '\\{'?"
                raise self.fail(pos, message)
            else:
                return False, pos + 1

    def number(self, start: int) -> int:
        """The end of the numeral at ``start``, which must be a valid Luau number."""
        source = self.source
        pos = self.run(_NUMERAL_BODY, start + 1)
        if source.startswith(("e", "E"), pos):
            pos += 2 if source.startswith(("+", "-"), pos + 1) else 1
        pos = self.run(_NUMERAL_TAIL, pos)
        self.steps += pos - start
        if not is_valid_number(source[start:pos]):
            raise self.fail(start, "Malformed number")
        return pos


def is_valid_number(text: str) -> bool:
    """Is the numeral ``text`` a Luau number: ``1_000``, ``.5``, ``1e-3``, ``0xFF``, ``0b1010``?"""
    prefix = text[:2]
    if prefix in ("0x", "0X"):
        return _digits(text[2:], _HEX)
    if prefix in ("0b", "0B"):
        return _digits(text[2:], _BINARY)
    exponent_at = min((index for index in (text.find("e"), text.find("E")) if index >= 0), default=-1)
    mantissa = text if exponent_at < 0 else text[:exponent_at]
    if exponent_at >= 0:
        exponent = text[exponent_at + 1 :]
        if not _digits(exponent[1:] if exponent.startswith(("+", "-")) else exponent, _DECIMAL):
            return False
    whole, dot, fraction = mantissa.partition(".")
    if whole:
        return whole[0] in _DIGITS and not whole.translate(_DECIMAL) and not fraction.translate(_DECIMAL)
    return bool(dot) and fraction[:1] in _DIGITS and not fraction.translate(_DECIMAL)


def _digits(text: str, allowed: dict[int, None]) -> bool:
    """Does ``text`` hold only the digits ``allowed`` deletes and underscores, with one digit at least?"""
    return bool(text.strip("_")) and not text.translate(allowed)
