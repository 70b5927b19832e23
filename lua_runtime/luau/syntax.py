"""The syntax check: is a token stream (type annotations erased) a Luau program, and if not, at which
token does it stop being one? It also bounds how deeply the program nests.

Why tree-sitter does not do this alone: it parses valid code in linear time, but its error recovery
is quadratic on a long run of errors (65,000 commas take 14 s; `x x x ...`, `then then ...` and
many other runs behave the same). So tree-sitter only ever sees code this check accepts (see
``parser.py``), and the check reports the first error itself, in Luau's words: a recursive-descent
recognizer of the language tree-sitter-luau 1.2.0 accepts, in one pass over the tokens, without
backtracking. Where tree-sitter is more lenient than Luau it follows Luau (a keyword is never a
name: tree-sitter reads ``local then = 1``; ``...`` is the last parameter); where it is stricter,
it follows tree-sitter (a statement cannot begin with the name ``type`` or ``export``), since
tree-sitter must parse whatever the check accepts.

Nesting is counted the way Lua 5.4's own parser counts it (one level per statement inside a block,
per expression inside another, per unary operator, per operand of a right-associative chain), plus
the levels the translation adds around what it rewrites (``translator.py``). A program deeper than
``MAX_NESTING`` would make Lua refuse the translation with "C stack overflow"; it is refused here,
with a message that says why. The recursion of this module is bounded by the same count (a few
Python frames per level), so no source can exhaust the Python stack.
"""

from __future__ import annotations

from dataclasses import dataclass

from lua_runtime.luau.lexer import (
    EOF,
    INTERP_BEGIN,
    INTERP_END,
    INTERP_MID,
    KEYWORDS,
    NAME,
    NUMBER,
    OP,
    STRING,
    Token,
)
from lua_runtime.luau.limits import MAX_NESTING
from lua_runtime.luau.translator import interpolation_levels

# Luau's own words (its limit is higher: see limits.py).
TOO_DEEP = "Exceeded allowed recursion depth; simplify your code to make it compile"

# Levels the translation adds on top of what Lua counts for the source as written.
#: An if-then-else expression becomes ``(function() if c then return (a) else return (b) end end)()``.
_IF_EXPRESSION_LEVELS = 4
#: ``x op= v`` becomes ``do local t = ...; t.k = t.k op (v) end``.
_COMPOUND_VALUE_LEVELS = 3
#: A loop body may gain a ``do ... end`` (around a trailing return, or after a ``continue``).
_LOOP_BODY_LEVELS = 1
#: ``#x`` becomes ``(#x * 1.0)``.
_LENGTH_LEVELS = 1

_BLOCK_ENDS = frozenset({"end", "else", "elseif", "until"})
# Lua 5.4's bitwise operators (`<<` and `>>` are read as two tokens), which Luau does not have.
_BITWISE = frozenset({"&", "|", "~"})
_NO_BITWISE = "Luau has no bitwise operators; use the bit32 library"
_BINARY_OPERATORS = frozenset({"+", "-", "*", "/", "//", "%", "^", "..", "==", "~=", "<", "<=", ">", ">="})
_COMPOUND_OPERATORS = frozenset({"+=", "-=", "*=", "/=", "//=", "%=", "^=", "..="})
_VARIABLE, _CALL, _PARENTHESIZED = "variable", "call", "parenthesized"


@dataclass(frozen=True, slots=True)
class SyntaxProblem:
    """Where a token stream stops being Luau: the index of the token to report, and why.

    ``conclusive`` problems (nesting too deep) are reported as they are; for the others, a block or
    bracket left open earlier is the better explanation, when there is one (see ``parser.py``).
    """

    index: int
    message: str
    conclusive: bool = False


def find_syntax_problem(tokens: list[Token], source: str) -> SyntaxProblem | None:
    """The first place where ``tokens`` (of ``source``, ending with EOF) stop being a Luau
    program, or None."""
    checker = _Checker(tokens, source)
    try:
        checker.chunk()
    except _Stop as stop:
        return stop.problem
    except RecursionError:
        # The recursion is bounded by MAX_NESTING at a few frames per level, far inside Python's
        # limit; this is only for a caller that was already deep in its stack.
        return SyntaxProblem(checker.i, TOO_DEEP, conclusive=True)
    return None


class _Stop(Exception):
    def __init__(self, problem: SyntaxProblem) -> None:
        super().__init__(problem.message)
        self.problem = problem


class _Checker:
    def __init__(self, tokens: list[Token], source: str) -> None:
        self.tokens = tokens
        self.source = source
        self.i = 0
        # The Lua level the token being read sits at, and the deepest level reached inside the
        # expression being read (the translation may wrap what was already read in more levels).
        self.level = 0
        self.peak = 0

    # Tokens -------------------------------------------------------------------------------------

    @property
    def tok(self) -> Token:
        return self.tokens[self.i]

    def advance(self) -> Token:
        token = self.tokens[self.i]
        if token.kind != EOF:
            self.i += 1
        return token

    def at_op(self, *texts: str) -> bool:
        token = self.tokens[self.i]
        return token.kind == OP and token.text in texts

    def at_word(self, *words: str) -> bool:
        token = self.tokens[self.i]
        return token.kind == NAME and token.text in words

    def at_name(self) -> bool:
        token = self.tokens[self.i]
        return token.kind == NAME and token.text not in KEYWORDS

    def at_block_end(self) -> bool:
        token = self.tokens[self.i]
        return token.kind == EOF or (token.kind == NAME and token.text in _BLOCK_ENDS)

    def stop(self, message: str, at: int | None = None) -> _Stop:
        return _Stop(SyntaxProblem(self.i if at is None else at, message))

    def expected(self, what: str, context: str = "") -> _Stop:
        """'Expected X when parsing Y, got Z', as Luau words it."""
        when = f" when parsing {context}" if context else ""
        return self.stop(f"Expected {what}{when}, got {self.tok.describe()}")

    def unclosed(self, closer: str, opener: Token) -> _Stop:
        line = self.source.count("\n", 0, opener.start) + 1
        got = self.tok.describe()
        return self.stop(f"Expected '{closer}' (to close '{opener.text}' at line {line}), got {got}")

    def expect_op(self, text: str, context: str = "") -> None:
        if not self.at_op(text):
            raise self.expected(f"'{text}'", context)
        self.advance()

    def expect_word(self, word: str, context: str = "") -> None:
        if not self.at_word(word):
            raise self.expected(f"'{word}'", context)
        self.advance()

    def close(self, closer: str, opener: Token) -> None:
        """Reads ``closer`` (an operator or a keyword), which ends what ``opener`` began."""
        token = self.tok
        if token.text != closer or token.kind not in (OP, NAME):
            raise self.unclosed(closer, opener)
        self.advance()

    def expect_name(self, context: str) -> None:
        token = self.tok
        if token.kind != NAME or token.text in KEYWORDS:
            raise self.expected("identifier", context)
        self.advance()

    # Levels ---------------------------------------------------------------------------------------

    def deeper(self, levels: int) -> None:
        """Moves the level by ``levels`` (negative to come back) and checks it."""
        self.set_level(self.level + levels)

    def set_level(self, level: int) -> None:
        self.level = level
        if level > self.peak:
            self.peak = level
            if level > MAX_NESTING:
                raise _Stop(SyntaxProblem(self.i, TOO_DEEP, conclusive=True))

    def wrap_read(self, levels: int) -> None:
        """The translation wraps what was read of the current expression in ``levels`` more."""
        self.peak += levels
        if self.peak > MAX_NESTING:
            raise _Stop(SyntaxProblem(self.i, TOO_DEEP, conclusive=True))

    # Blocks and statements ------------------------------------------------------------------------

    def chunk(self) -> None:
        self.block()
        if self.tok.kind != EOF:
            raise self.expected("<eof>")

    def block(self, extra_levels: int = 0) -> None:
        self.deeper(extra_levels)
        while not self.at_block_end():
            if self.at_word("return"):
                self.return_statement()
                break
            self.statement()
        self.deeper(-extra_levels)

    def return_statement(self) -> None:
        self.deeper(1)
        self.advance()
        if not self.at_block_end() and not self.at_op(";"):
            self.expression_list()
        if self.at_op(";"):
            self.advance()
        if not self.at_block_end():
            raise self.expected("'end' or <eof> after return")
        self.deeper(-1)

    def statement(self) -> None:
        self.deeper(1)
        token = self.tok
        if token.kind == NAME and token.text in _STATEMENTS:
            _STATEMENTS[token.text](self)
        elif token.kind == OP and token.text == ";":
            self.advance()
        elif token.kind == OP and token.text in _BITWISE:
            raise self.stop(f"Unexpected '{token.text}' ({_NO_BITWISE})")
        elif token.kind == NAME and token.text == "goto" and self.tokens[self.i + 1].kind == NAME:
            raise self.stop("Luau has no goto statement")
        elif token.kind == NAME and token.text in ("type", "export"):
            # Left after erasure, it is not a type alias: a call or an assignment, which
            # tree-sitter-luau cannot read (it takes the word for the start of an alias).
            raise self.stop(f"A statement cannot begin with '{token.text}' here; use another name")
        else:
            self.expression_statement()
        self.deeper(-1)

    def if_statement(self) -> None:
        opener = self.advance()
        self.expression()
        self.expect_word("then", "if statement")
        self.block()
        while self.at_word("elseif"):
            self.advance()
            self.expression()
            self.expect_word("then", "if statement")
            self.block()
        if self.at_word("else"):
            opener = self.advance()  # Luau names the `else` as what `end` closes
            self.block()
        self.close("end", opener)

    def while_statement(self) -> None:
        self.advance()
        self.expression()
        opener = self.tok
        self.expect_word("do", "while loop")
        self.block(_LOOP_BODY_LEVELS)
        self.close("end", opener)

    def do_statement(self) -> None:
        opener = self.advance()
        self.block()
        self.close("end", opener)

    def for_statement(self) -> None:
        self.advance()
        self.expect_name("for loop")
        if self.at_op("="):
            self.advance()
            self.expression()
            self.expect_op(",", "for loop")
            self.expression()
            if self.at_op(","):
                self.advance()
                self.expression()
        else:
            while self.at_op(","):
                self.advance()
                self.expect_name("for loop")
            if not self.at_word("in"):
                raise self.expected("'=' or 'in'", "for loop")
            self.advance()
            self.expression_list()
        opener = self.tok
        self.expect_word("do", "for loop")
        self.block(_LOOP_BODY_LEVELS)
        self.close("end", opener)

    def repeat_statement(self) -> None:
        opener = self.advance()
        self.block(_LOOP_BODY_LEVELS)
        self.close("until", opener)
        self.expression()

    def function_statement(self) -> None:
        opener = self.advance()
        self.expect_name("function name")
        while self.at_op("."):
            self.advance()
            self.expect_name("function name")
        if self.at_op(":"):
            self.advance()
            self.expect_name("method name")
        self.function_body(opener)

    def local_statement(self) -> None:
        self.advance()
        if self.at_word("function"):
            opener = self.advance()
            self.expect_name("variable name")
            self.function_body(opener)
            return
        while True:
            self.expect_name("variable name")
            if self.at_op("<"):  # a Lua 5.4 attribute: the translator explains that Luau has none
                self.advance()
                self.expect_name("attribute")
                self.expect_op(">", "attribute")
            if not self.at_op(","):
                break
            self.advance()
        if self.at_op("="):
            self.advance()
            self.expression_list()

    def simple_statement(self) -> None:
        """`break`, and `continue` where a statement starts (as tree-sitter-luau reads it)."""
        self.advance()

    def expression_statement(self) -> None:
        """A call, an assignment `a, b.c = ...` or a compound assignment `a += ...`."""
        start = self.i
        kind = self.suffixed_expression()
        if not self.at_op("=", ",", *_COMPOUND_OPERATORS):
            if kind != _CALL:
                raise self.stop("Incomplete statement: expected assignment or a function call", at=start)
            return
        while True:
            if kind != _VARIABLE:
                raise self.stop("Assigned expression must be a variable or a field", at=start)
            if not self.at_op(","):
                break
            self.advance()
            start = self.i
            kind = self.suffixed_expression()
        compound = self.at_op(*_COMPOUND_OPERATORS)
        if not compound and not self.at_op("="):
            raise self.expected("'='", "assignment")
        self.advance()
        levels = _COMPOUND_VALUE_LEVELS if compound else 0
        self.deeper(levels)
        self.expression_list()
        self.deeper(-levels)

    # Expressions ----------------------------------------------------------------------------------

    def expression_list(self) -> None:
        self.expression()
        while self.at_op(","):
            self.advance()
            self.expression()

    def expression(self, extra_levels: int = 0) -> None:
        """exp ::= {unop} operand {binop {unop} operand}, one level down (Lua's subexpr), plus
        ``extra_levels`` the translation puts around it."""
        outer_peak, start_level = self.peak, self.level
        self.peak = start_level
        base = start_level + 1 + extra_levels
        # Levels that stay open for the rest of the expression: each `..` or `^` nests what
        # follows it (right-associative); each `%` becomes a call, in parentheses, around what
        # came before it, and an argument of that call.
        open_levels = 0
        operands = 0
        concatenated = False
        while True:
            unary = 0
            while True:
                token = self.tok
                if token.kind == OP and token.text in ("-", "#"):
                    unary += 1 + (_LENGTH_LEVELS if token.text == "#" else 0)
                elif token.kind == NAME and token.text == "not":
                    unary += 1
                else:
                    break
                self.advance()
            # A right operand is one level down: Lua reads it with a recursive subexpr.
            self.set_level(base + (1 if operands else 0) + open_levels + unary)
            self.operand()
            operands += 1
            token = self.tok
            if not (
                (token.kind == OP and token.text in _BINARY_OPERATORS)
                or (token.kind == NAME and token.text in ("and", "or"))
            ):
                break
            self.advance()
            if token.text in ("..", "^", "%"):
                open_levels += 1
            if token.text == "%":
                self.wrap_read(2)  # (__luau_mod(<what was read>, ...))
            elif token.text == ".." and not concatenated:
                concatenated = True
                self.wrap_read(1)  # __luau_cat(<operand>)
        self.level = start_level
        self.peak = max(outer_peak, self.peak)

    def operand(self) -> None:
        token = self.tok
        kind = token.kind
        if kind == OP and (
            token.text in _BITWISE or (token.text in ("<", ">") and self.tokens[self.i - 1].is_op(token.text))
        ):
            raise self.stop(f"Unexpected '{token.text}' ({_NO_BITWISE})")
        if kind == NAME:
            word = token.text
            if word in ("nil", "true", "false"):
                self.advance()
            elif word == "function":
                self.function_body(self.advance())
            elif word == "if":
                self.if_expression()
            else:
                self.suffixed_expression()
        elif kind in (NUMBER, STRING) or token.is_op("..."):
            self.advance()
        elif kind == INTERP_BEGIN:
            self.interpolated_string()
        elif token.is_op("{"):
            self.table()
        else:
            self.suffixed_expression()

    def suffixed_expression(self) -> str:
        """A name or a parenthesized expression, then any `.name`, `[key]`, `:method(...)`, calls."""
        token = self.tok
        if token.kind == NAME and token.text not in KEYWORDS:
            self.advance()
            kind = _VARIABLE
        elif token.is_op("("):
            self.advance()
            self.expression()
            self.close(")", token)
            kind = _PARENTHESIZED
        else:
            raise self.expected("expression")
        while True:
            token = self.tok
            if token.kind == OP and token.text == ".":
                self.advance()
                self.expect_name("field name")
                kind = _VARIABLE
            elif token.kind == OP and token.text == "[":
                self.advance()
                self.expression()
                self.close("]", token)
                kind = _VARIABLE
            elif token.kind == OP and token.text == ":":
                self.advance()
                self.expect_name("method name")
                self.call_arguments()
                kind = _CALL
            elif token.kind in (STRING, INTERP_BEGIN) or (token.kind == OP and token.text in ("(", "{")):
                self.call_arguments()
                kind = _CALL
            else:
                return kind

    def call_arguments(self) -> None:
        token = self.tok
        if token.is_op("("):
            self.advance()
            if not self.at_op(")"):
                self.expression_list()
            self.close(")", token)
        elif token.is_op("{"):
            self.table()
        elif token.kind == STRING:
            self.advance()
        elif token.kind == INTERP_BEGIN:
            self.interpolated_string()  # the translator explains that it needs parentheses
        else:
            raise self.expected("'(', '{' or <string> when parsing function call")

    def table(self) -> None:
        opener = self.advance()
        while not self.at_op("}"):
            if self.at_op("["):
                bracket = self.advance()
                self.expression()
                self.close("]", bracket)
                self.expect_op("=", "table field")
            elif self.at_name() and self.tokens[self.i + 1].is_op("="):  # name = value
                self.advance()
                self.advance()
            self.expression()
            if not self.at_op(",", ";"):
                break
            self.advance()
        self.close("}", opener)

    def function_body(self, opener: Token) -> None:
        """`(params) block end` (generic parameters and types are erased)."""
        parenthesis = self.tok
        self.expect_op("(", "function")
        while not self.at_op(")"):
            if self.at_op("..."):
                self.advance()
                break
            self.expect_name("function parameter")
            if not self.at_op(","):
                break
            self.advance()
        self.close(")", parenthesis)
        self.block()
        self.close("end", opener)

    def if_expression(self) -> None:
        """`if c then a {elseif c then a} [else b]`; the translator requires the `else`."""
        self.advance()
        self.expression(_IF_EXPRESSION_LEVELS)
        self.expect_word("then", "if then else expression")
        self.expression(_IF_EXPRESSION_LEVELS)
        while self.at_word("elseif"):
            self.advance()
            self.expression(_IF_EXPRESSION_LEVELS)
            self.expect_word("then", "if then else expression")
            self.expression(_IF_EXPRESSION_LEVELS)
        if self.at_word("else"):
            self.advance()
            self.expression(_IF_EXPRESSION_LEVELS)

    def interpolated_string(self) -> None:
        """`` `text{expression}text{expression}text` ``, which the translation turns into a
        concatenation of its pieces, wrapping its expressions in a few levels."""
        outer_peak = self.peak
        self.peak = self.level
        self.advance()
        pieces = 2
        while True:
            self.expression()
            token = self.tok
            if token.kind == INTERP_END:
                self.advance()
                break
            if token.kind != INTERP_MID:
                raise self.stop("Malformed interpolated string; did you forget to add a '}'?")
            self.advance()
            pieces += 2
        self.wrap_read(interpolation_levels(pieces + 1))
        self.peak = max(outer_peak, self.peak)


_STATEMENTS = {
    "if": _Checker.if_statement,
    "while": _Checker.while_statement,
    "do": _Checker.do_statement,
    "for": _Checker.for_statement,
    "repeat": _Checker.repeat_statement,
    "function": _Checker.function_statement,
    "local": _Checker.local_statement,
    "break": _Checker.simple_statement,
    "continue": _Checker.simple_statement,
}
