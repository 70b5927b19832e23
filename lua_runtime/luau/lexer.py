"""Luau's tokens: what the type eraser and the syntax diagnostics read.

tree-sitter gives the tree; this gives the flat token stream, which is what two jobs need: erasing
type annotations (found by the keywords and punctuation around them, see ``erasure.py``) and
explaining a syntax error the way Luau does (matching ``function``/``end`` and brackets, see
``parser.py``). It also reports lexical errors (an unfinished string, a malformed number) with
Luau's messages, before tree-sitter would turn them into a vaguer error.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from lua_runtime.luau.errors import Positions

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


_SPACE = re.compile(r"[ \t\r\n\f\v]+")
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
# Like Luau's lexer: take everything number-like, then check it (so 0x1p4 and 1..2 are one bad token).
_NUMERAL = re.compile(r"(?:[0-9]|\.[0-9])[0-9._]*(?:[eE][+-]?)?[0-9A-Za-z_]*")
_VALID_NUMBER = re.compile(
    r"(?:[0-9][0-9_]*(?:\.[0-9_]*)?|\.[0-9][0-9_]*)(?:[eE][+-]?[0-9_]*[0-9][0-9_]*)?"
    r"|0[xX][0-9a-fA-F_]*[0-9a-fA-F][0-9a-fA-F_]*|0[bB][01_]*[01][01_]*"
)
_QUOTED = {
    '"': re.compile(r'"(?:[^"\\\n]|\\z\s*|\\\r\n|\\[\s\S])*"'),
    "'": re.compile(r"'(?:[^'\\\n]|\\z\s*|\\\r\n|\\[\s\S])*'"),
}
_LONG_OPEN = re.compile(r"\[(=*)\[")
# The literal text of an interpolated string up to its next brace or closing backtick.
_INTERP_TEXT = re.compile(r"(?:[^`{\\\n]|\\\r\n|\\[\s\S])*")
_OPERATORS = (
    "...", "..=", "//=",
    "..", "::", "->", "==", "~=", "<=", ">=", "+=", "-=", "*=", "/=", "%=", "^=", "//",
    "+", "-", "*", "/", "%", "^", "#", "&", "|", "<", ">", "=", "(", ")", "{", "}", "[", "]",
    ";", ":", ",", ".", "?", "@", "~",
)  # fmt: skip
_OPERATOR = re.compile("|".join(re.escape(op) for op in _OPERATORS))


def tokenize(source: str) -> list[Token]:
    """The tokens of ``source``, comments and spaces left out, ending with one EOF token.

    Raises ``LuauSyntaxError`` for text that is not a Luau token.
    """
    tokens: list[Token] = []
    append = tokens.append
    positions: Positions | None = None

    def fail(offset: int, message: str) -> Exception:
        nonlocal positions
        positions = positions or Positions(source)
        return positions.error(offset, message)

    # One entry per interpolation being read: the depth of `{` braces opened inside it.
    interpolations: list[int] = []
    interpolation_starts: list[int] = []
    pos, size = 0, len(source)

    def interpolated_text(start: int) -> tuple[str, int]:
        """Reads literal text from ``start`` to the next brace or backtick; returns (kind, end)."""
        match = _INTERP_TEXT.match(source, start)
        end = match.end()
        if end >= size or source[end] == "\n":
            raise fail(start, "Malformed interpolated string; did you forget to add a '`'?")
        if source[end] == "`":
            return "end", end + 1
        if source.startswith("{{", end):
            message = "Double braces are not permitted within interpolated strings; did you mean '\\{'?"
            raise fail(end, message)
        return "brace", end + 1

    while True:
        match = _SPACE.match(source, pos)
        if match:
            pos = match.end()
        if pos >= size:
            break
        char = source[pos]
        if char == "-" and source.startswith("--", pos):
            long = _LONG_OPEN.match(source, pos + 2)
            if long:
                close = source.find(f"]{long.group(1)}]", long.end())
                if close == -1:
                    raise fail(pos, "Malformed comment; did you forget to close it?")
                pos = close + len(long.group(1)) + 2
            else:
                newline = source.find("\n", pos)
                pos = size if newline == -1 else newline
            continue
        if (char.isalpha() and char.isascii()) or char == "_":
            match = _NAME.match(source, pos)
            append(Token(NAME, match.group(), pos, match.end()))
            pos = match.end()
            continue
        match = _NUMERAL.match(source, pos)
        if match:
            text = match.group()
            if not _VALID_NUMBER.fullmatch(text):
                raise fail(pos, "Malformed number")
            append(Token(NUMBER, text, pos, match.end()))
            pos = match.end()
            continue
        if char in _QUOTED:
            match = _QUOTED[char].match(source, pos)
            if not match:
                raise fail(pos, "Malformed string; did you forget to finish it?")
            append(Token(STRING, match.group(), pos, match.end()))
            pos = match.end()
            continue
        if char == "[":
            long = _LONG_OPEN.match(source, pos)
            if long:
                close = source.find(f"]{long.group(1)}]", long.end())
                if close == -1:
                    raise fail(pos, "Malformed string; did you forget to finish it?")
                end = close + len(long.group(1)) + 2
                append(Token(STRING, source[pos:end], pos, end))
                pos = end
                continue
        if char == "`":
            kind, end = interpolated_text(pos + 1)
            if kind == "end":
                append(Token(STRING, source[pos:end], pos, end))
            else:
                append(Token(INTERP_BEGIN, source[pos:end], pos, end))
                interpolations.append(0)
                interpolation_starts.append(pos)
            pos = end
            continue
        if char == "}" and interpolations and interpolations[-1] == 0:
            kind, end = interpolated_text(pos + 1)
            if kind == "end":
                append(Token(INTERP_END, source[pos:end], pos, end))
                interpolations.pop()
                interpolation_starts.pop()
            else:
                append(Token(INTERP_MID, source[pos:end], pos, end))
            pos = end
            continue
        match = _OPERATOR.match(source, pos)
        if not match:
            raise fail(pos, f"Unexpected character {char!r}")
        text = match.group()
        if interpolations and text in "{}":
            interpolations[-1] += 1 if text == "{" else -1
        append(Token(OP, text, pos, match.end()))
        pos = match.end()
    if interpolations:
        raise fail(interpolation_starts[-1], "Malformed interpolated string; did you forget to add a '}'?")
    append(Token(EOF, "", size, size))
    return tokens
