"""Type erasure: Luau source in, the same source with every type annotation blanked out.

Types never change what a Luau program does, so the translation drops them. It does so before
tree-sitter parses, on the token stream, because tree-sitter-luau 1.2.0 rejects several forms of
valid Luau types (a leading ``|`` in a multi-line union, ``typeof(x)`` inside an annotation,
generic function types ``<T>(T) -> T``, type packs ``T...``, generic defaults, ``read``/``write``
properties, attributes such as ``@native``, typed numeric ``for``). Each annotation is parsed here
by Luau's type grammar, so a malformed one is still a syntax error with the author's line.

Blanking replaces every character but a newline with a space: lines and columns never move. A type
alias becomes ``;`` plus spaces, and so does a cast followed by ``(``, so that the next line's
``(`` still starts a new statement in Lua, as it does in Luau.

One more rewrite keeps tree-sitter able to parse: it refuses a numeric literal with an underscore
right after ``0x`` or ``0b`` (``0x_FF``), which Luau accepts; that underscore becomes a ``0``.

Where annotations are:
- after a name in ``local`` and ``for`` name lists (``local x: number``);
- in a function's generic list, parameter list and return type (``function f<T>(x: T): T``);
- after ``::`` (a cast);
- a whole ``type``/``export type`` statement;
- an attribute (``@native``, ``@checked``, ``@deprecated``) before a function.
"""

from __future__ import annotations

from lua_runtime.luau.errors import LuauSyntaxError, Positions
from lua_runtime.luau.lexer import EOF, INTERP_END, NAME, NUMBER, OP, STRING, Token
from lua_runtime.luau.limits import MAX_TYPE_NESTING

# After one of these tokens (or a name, number or string), a name starts a new statement: they end
# an expression or a statement.
_CLOSERS = frozenset({")", "]", "}", "...", ";"})
_PAIRS = {"(": ")", "{": "}", "[": "]", "<": ">"}
# The tokens after which annotations may follow, or which begin one (as a name or an operator).
_WHERE_TYPES_BEGIN = frozenset({"local", "for", "function", "::", "@", "type", "export"})
# Luau's own words (its limit is higher: see limits.py).
_TOO_DEEP = "Exceeded allowed recursion depth; simplify your type to make it compile"


def erase_types(source: str, tokens: list[Token]) -> tuple[str, list[Token]]:
    """``source`` with its type annotations blanked out (same length, same lines), and its tokens
    without those of the annotations (with a ``;`` token where a ``;`` replaced a blank)."""
    eraser = _Eraser(source, tokens)
    try:
        eraser.run()
    except RecursionError:
        # The type parser recurses at most three frames per level of MAX_TYPE_NESTING, far inside
        # Python's limit; this is only for a caller that was already deep in its stack.
        raise eraser.error(eraser.tok, _TOO_DEEP) from None
    return eraser.result(), eraser.erased_tokens()


class _Eraser:
    def __init__(self, source: str, tokens: list[Token]) -> None:
        self.source = source
        self.tokens = tokens
        self.i = 0
        # Character ranges to blank, and the offsets where a ';' replaces the first blank.
        self.blanks: list[tuple[int, int]] = []
        self.semicolons: list[int] = []
        # Offsets of the `_` in literals like 0x_FF, which become `0`.
        self.zeros: list[int] = []
        # The token index just past the last type parsed: a name there starts a new statement.
        self.type_end = -1
        self.depth = 0
        self._positions: Positions | None = None

    # The token stream ---------------------------------------------------------------------------

    @property
    def tok(self) -> Token:
        return self.tokens[self.i]

    def peek(self, ahead: int = 1) -> Token:
        return self.tokens[min(self.i + ahead, len(self.tokens) - 1)]

    def advance(self) -> Token:
        token = self.tokens[self.i]
        if token.kind != EOF:
            self.i += 1
        return token

    def error(self, token: Token, message: str) -> LuauSyntaxError:
        self._positions = self._positions or Positions(self.source)
        return self._positions.error(token.start, message)

    def expect_op(self, text: str, opener: Token | None = None) -> Token:
        if not self.tok.is_op(text):
            if opener is not None:
                line, _ = (self._positions or Positions(self.source)).line_col(opener.start)
                got = self.tok.describe()
                message = f"Expected '{text}' (to close '{opener.text}' at line {line}), got {got}"
                raise self.error(self.tok, message)
            raise self.error(self.tok, f"Expected '{text}', got {self.tok.describe()}")
        return self.advance()

    # Walking the program --------------------------------------------------------------------------

    def run(self) -> None:
        tokens = self.tokens
        while True:
            token = tokens[self.i]
            if token.text not in _WHERE_TYPES_BEGIN:  # most tokens: stepped over here, quickly
                if token.kind == EOF:
                    return
                if token.kind == NUMBER and token.text[2:3] == "_" and token.text[1:2] in "xXbB":
                    self.zeros.append(token.start + 2)
                self.i += 1
            elif token.is_keyword("local"):
                self.advance()
                if not self.tok.is_keyword("function"):
                    self.binding_list()
            elif token.is_keyword("for"):
                self.advance()
                self.binding_list()
            elif token.is_keyword("function"):
                self.advance()
                self.function_header()
            elif token.is_op("::"):
                self.cast()
            elif token.is_op("@") and self.peek().kind == NAME:
                self.advance()
                self.advance()
                self.blank_from(token)
            elif token.kind == NAME and self.starts_type_alias():
                self.type_alias()
            else:
                self.advance()

    def binding_list(self) -> None:
        """`a: T, b: U` in `local` and `for`: blank each `: T`."""
        while self.tok.kind == NAME:
            self.advance()
            if self.tok.is_op(":"):
                colon = self.advance()
                self.type_()
                self.blank_from(colon)
            if not self.tok.is_op(","):
                return
            self.advance()

    def function_header(self) -> None:
        """After `function`: the name, generics, typed parameters and the return type."""
        if self.tok.kind == NAME:
            self.advance()
            while self.tok.is_op(".", ":") and self.peek().kind == NAME:
                self.advance()
                self.advance()
        if self.tok.is_op("<"):
            start = self.tok
            self.skip_group()
            self.blank_from(start)
        if not self.tok.is_op("("):
            return  # not a function header tree-sitter will accept; it reports the error
        self.advance()
        while self.tok.kind == NAME or self.tok.is_op("..."):
            self.advance()
            if self.tok.is_op(":"):
                colon = self.advance()
                self.type_()
                self.blank_from(colon)
            if not self.tok.is_op(","):
                break
            self.advance()
        if self.tok.is_op(")"):
            self.advance()
            if self.tok.is_op(":"):
                colon = self.advance()
                self.type_()
                self.blank_from(colon)

    def cast(self) -> None:
        previous = self.tokens[self.i - 1] if self.i else None
        if previous is None or not (
            previous.kind in (NUMBER, STRING, INTERP_END)
            or previous.is_op(")", "]", "}", "...")
            or (previous.kind == NAME and previous.text not in _KEYWORDS_BEFORE_EXPRESSION)
        ):
            raise self.error(self.tok, "Unexpected '::' (Luau has no goto labels)")
        start = self.advance()
        self.type_()
        self.blank_from(start, semicolon=self.tok.is_op("("))

    def starts_type_alias(self) -> bool:
        """Is the current name `type` (or `export type`) beginning a type alias statement?"""
        token = self.tok
        if token.text == "export":
            if not (self.peek().is_keyword("type") and self.peek(2).kind == NAME):
                return False
        elif token.text != "type" or self.peek().kind != NAME or self.peek().text in ("and", "or"):
            return False
        if self.i == 0 or self.i == self.type_end:
            return True
        previous = self.tokens[self.i - 1]
        if previous.kind == NAME:
            return previous.text not in _KEYWORDS_BEFORE_EXPRESSION
        return previous.kind in (NUMBER, STRING, INTERP_END) or previous.is_op(*_CLOSERS)

    def type_alias(self) -> None:
        start = self.advance()
        if start.text == "export":
            self.advance()
        if self.tok.is_keyword("function"):
            raise self.error(self.tok, "Type functions are not supported by Warden's Luau")
        self.advance()  # the alias name
        if self.tok.is_op("<"):
            self.skip_group()
        self.expect_op("=")
        self.type_()
        self.blank_from(start, semicolon=True)

    # Types ----------------------------------------------------------------------------------------

    def type_(self) -> None:
        """Type ::= ['|' | '&'] SimpleType {'?'} {('|' | '&') SimpleType {'?'}}"""
        if self.tok.is_op("|", "&"):
            self.advance()
        while True:
            self.simple_type()
            while self.tok.is_op("?"):
                self.advance()
            if not self.tok.is_op("|", "&"):
                self.type_end = self.i
                return
            self.advance()

    def simple_type(self) -> None:
        # Every recursion of the type parser passes here (a type inside a table, a function type,
        # a type argument, a pack `...T`), so this bounds the Python stack the eraser uses.
        self.depth += 1
        if self.depth > MAX_TYPE_NESTING:
            raise self.error(self.tok, _TOO_DEEP)
        try:
            self.simple_type_at_depth()
        finally:
            self.depth -= 1

    def simple_type_at_depth(self) -> None:
        token = self.tok
        if token.kind == NAME and token.text not in _KEYWORDS_BEFORE_EXPRESSION:
            self.advance()
            if token.text == "typeof" and self.tok.is_op("("):
                self.skip_group()
                return
            while self.tok.is_op(".") and self.peek().kind == NAME:
                self.advance()
                self.advance()
            if self.tok.is_op("<"):
                self.type_arguments()
            if self.tok.is_op("..."):  # a generic pack, T...
                self.advance()
        elif token.kind == STRING and token.text[0] in "\"'":
            self.advance()
        elif token.is_op("{"):
            self.table_type()
        elif token.is_op("("):
            self.parenthesized_type()
        elif token.is_op("<"):  # a generic function type, <T>(T) -> T
            self.skip_group()
            if not self.tok.is_op("("):
                got = self.tok.describe()
                raise self.error(self.tok, f"Expected '(' when parsing function type, got {got}")
            self.parenthesized_type(function_only=True)
        elif token.is_op("..."):  # a variadic pack, ...T
            self.advance()
            self.simple_type()
        else:
            raise self.error(token, f"Expected type, got {token.describe()}")

    def type_arguments(self) -> None:
        opener = self.advance()
        while not self.tok.is_op(">"):
            self.type_()
            if not self.tok.is_op(","):
                break
            self.advance()
        self.expect_op(">", opener)

    def parenthesized_type(self, function_only: bool = False) -> None:
        """A function type `(a: T, ...U) -> R`, a parenthesized type or a type pack."""
        opener = self.advance()
        while not self.tok.is_op(")"):
            if self.tok.kind == NAME and self.peek().is_op(":"):
                self.advance()
                self.advance()
            self.type_()
            if not self.tok.is_op(","):
                break
            self.advance()
        self.expect_op(")", opener)
        if self.tok.is_op("->"):
            self.advance()
            self.type_()
        elif function_only:
            raise self.error(self.tok, f"Expected '->' when parsing function type, got {self.tok.describe()}")

    def table_type(self) -> None:
        opener = self.advance()
        while not self.tok.is_op("}"):
            if self.tok.is_keyword("read", "write") and (self.peek().kind == NAME or self.peek().is_op("[")):
                self.advance()
            if self.tok.is_op("["):
                bracket = self.advance()
                self.type_()
                self.expect_op("]", bracket)
                self.expect_op(":")
                self.type_()
            elif self.tok.kind == NAME and self.peek().is_op(":"):
                self.advance()
                self.advance()
                self.type_()
            else:
                self.type_()
            if not self.tok.is_op(",", ";"):
                break
            self.advance()
        self.expect_op("}", opener)

    def skip_group(self) -> None:
        """Skips a bracketed group (`(...)`, `<...>`), whatever is inside; reports a missing closer."""
        opener = self.advance()
        stack = [opener]
        while stack:
            token = self.tok
            if token.kind == EOF:
                opened = stack[-1]
                self.expect_op(_PAIRS[opened.text], opened)
            if token.kind == OP:
                if token.text in _PAIRS and (token.text != "<" or opener.text == "<"):
                    stack.append(token)
                elif token.text == _PAIRS[stack[-1].text]:
                    stack.pop()
            self.advance()

    # Output -----------------------------------------------------------------------------------------

    def blank_from(self, start: Token, semicolon: bool = False) -> None:
        """Blanks from ``start`` to the end of the last token consumed."""
        end = self.tokens[self.i - 1].end
        self.blanks.append((start.start, end))
        if semicolon:
            self.semicolons.append(start.start)

    def result(self) -> str:
        """The source with the blanks and zeros applied; blank ranges never overlap."""
        if not self.blanks and not self.zeros:
            return self.source
        source = self.source
        semicolons = set(self.semicolons)
        zeros = [(index, index + 1, True) for index in self.zeros]
        edits = sorted([*((start, end, False) for start, end in self.blanks), *zeros])
        pieces = []
        position = 0
        for start, end, is_zero in edits:
            pieces.append(source[position:start])
            if is_zero:
                pieces.append("0")
            else:
                # Spaces for everything but line breaks, so that lines and columns stay put.
                blank = "\n".join(" " * len(line) for line in source[start:end].split("\n"))
                pieces.append(";" + blank[1:] if start in semicolons else blank)
            position = end
        pieces.append(source[position:])
        return "".join(pieces)

    def erased_tokens(self) -> list[Token]:
        """The tokens outside the blanked ranges, with a ``;`` token where ``result`` put one."""
        if not self.blanks:
            return self.tokens
        semicolons = set(self.semicolons)
        kept: list[Token] = []
        blanks = iter(self.blanks)
        blank = next(blanks, None)
        for token in self.tokens:
            while blank is not None and token.start >= blank[1]:
                blank = next(blanks, None)
            if blank is None or token.start < blank[0]:
                kept.append(token)
            elif token.start == blank[0] and token.start in semicolons:
                kept.append(Token(OP, ";", token.start, token.start + 1))
        return kept


# Words after which an expression is expected, so a following `type` is a name, not an alias.
_KEYWORDS_BEFORE_EXPRESSION = frozenset(
    {"and", "or", "not", "if", "elseif", "while", "until", "return", "local", "in", "for", "function"}
)
